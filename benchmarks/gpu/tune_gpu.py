"""``tune`` against brute force on a CUDA host: the PyTorch engine's LLM and a batched torch matmul.

    DEADLINE=480 bash benchmarks/gpu/device.sh CARRY_DIR OUT_DIR tune_gpu.py --cases llm-gpu [--recheck 2,1]
    DEADLINE=480 bash benchmarks/gpu/device.sh CARRY_DIR OUT_DIR tune_gpu.py --cases classic-gpu

(1.5 s windows after 0.5 s of warm-up, so each case fits one 10-minute device call; DEADLINE stops the
script in time for what it measured to come back.)

Makes the random-weight SmolLM2-shaped model from the carried architecture (as run_suite.py does), then
runs ``benchmarks/tune_vs_brute.py``'s GPU cases: ``llm-gpu`` (max_batch_size, instance count, prefill
chunk and KV fraction at concurrency 64 against TTFT and ITL p99 targets) and ``classic-gpu`` (queue delay,
instance count and max_batch_size of ``matmul`` at concurrency 64 against a p99 target; it prints the
batching gain of tune's winner over the best configuration with dynamic batching off). Each case prints
the runs tune needed to reach 95% of brute force's best, the ratio to brute force's runs, and the winner
measured again in a fresh server; the figures go to OUT/summary.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from run_suite import make_random_model  # noqa: E402 - the sibling scripts, importable once on the path
from tune_vs_brute import main as compare  # noqa: E402


def main() -> int:
    """Make the model, then run the GPU cases."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, default=HERE / "smollm2-arch",
                        help="folder with config.json + tokenizer of the LLM architecture")
    parser.add_argument("--cases", default="llm-gpu,classic-gpu")
    parser.add_argument("--gpu", help="the GPU as plan names it (default: found with nvidia-smi)")
    parser.add_argument("--duration", type=float, help="measurement window per run, s (default: the case's)")
    parser.add_argument("--warmup", type=float, help="warm-up after each load, s (default: the case's)")
    parser.add_argument("--recheck", default="4,2", help="BEST,RUNS: as tune_vs_brute.py's --recheck")
    args = parser.parse_args()
    model = Path("/tmp/tritonkit-tune-gpu/smollm2-random")
    if not (model / "config.json").is_file():
        make_random_model(args.arch, model)
    extra = ["--gpu", args.gpu] if args.gpu else []
    extra += ["--duration", str(args.duration)] if args.duration else []
    extra += ["--warmup", str(args.warmup)] if args.warmup else []
    extra += ["--recheck", args.recheck]
    return compare(["--cases", args.cases, "--out", str(args.out), "--llm-model", str(model), *extra])


if __name__ == "__main__":
    sys.exit(main())
