"""The OpenAI gateway's cost over direct gRPC streaming on a GPU host (16 cores: the gateway, the server
and the load each get cores of their own, which the 2-core development machine cannot give them).

    bash benchmarks/gpu/device.sh .carry OUT gateway.py

Serves the default example with its LLM swapped for a SmolLM2-135M-shaped model with random weights on
the GPU (the GGUF does not travel), and runs benchmarks/openai_gateway.py against it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from run_suite import make_random_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, required=True)
    args, rest = parser.parse_known_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = Path("/tmp/tritonkit-gateway-model")
    make_random_model(args.arch, model)
    subprocess.run([sys.executable, str(HERE.parent / "openai_gateway.py"), "--model", str(model),
                    "--out", str(args.out / "gateway.json"), *rest], check=True, timeout=900)


if __name__ == "__main__":
    main()
