"""Issue 25 on a GPU: constrained against free decoding in the engine, and the grammar libraries' step cost.

    bash benchmarks/gpu/device.sh CARRY OUT structured.py [--skip-grammar-step]

Runs, each as its own process so one failure leaves the others' figures:

1. ``benchmarks/structured_output.py --device cuda`` at concurrency 64 and 8 on SmolLM2-135M's shape with
   random weights (``--arch``): static KV slots and CUDA graphs, the masks applied after the captured step;
2. ``benchmarks/grammar_step.py --device cuda`` for the libraries importable on the host.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(command: list[str], log: Path) -> None:
    print("$", " ".join(command), flush=True)
    with log.open("a") as out:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        out.write(done.stdout)
    print(done.stdout[-6000:], flush=True)
    if done.returncode:
        print(f"(exit {done.returncode})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, required=True)
    parser.add_argument("--skip-grammar-step", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "structured.log"
    for concurrency in (64, 8):
        _run([sys.executable, str(ROOT / "benchmarks" / "structured_output.py"), "--device", "cuda",
              "--concurrency", str(concurrency), "--tokens", "192", "--rounds", "5", "--arch", str(args.arch),
              "--out", str(args.out)], log)
    if not args.skip_grammar_step:
        libraries = [name for name, module in (("llguidance", "llguidance"), ("xgrammar", "xgrammar"),
                                               ("outlines-core", "outlines_core"))
                     if importlib.util.find_spec(module) is not None]
        _run([sys.executable, str(ROOT / "benchmarks" / "grammar_step.py"), "--device", "cuda", "--libraries",
              ",".join(libraries), "--tokenizer", str(args.arch), "--repeats", "3"], log)


if __name__ == "__main__":
    main()
