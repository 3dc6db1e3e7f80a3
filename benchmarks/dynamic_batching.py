"""What the generated batching config buys: one batched numpy matmul model, with and without dynamic batching.

Serves two copies of the same Python model (``max_batch_size: 64``, one CPU instance each) on the local
tritonserver: ``matmul_plain`` without ``dynamic_batching``, ``matmul_batched`` with
``dynamic_batching { max_queue_delay_microseconds: ... }``. Sweeps closed-loop concurrency with
``tritonkit.bench`` (both models at each level, order alternating, repeated), and prints the median
throughput and p99 of each, the throughput ratio, and the average batch Triton formed.

    python benchmarks/dynamic_batching.py [--concurrency 1,4,16,64] [--duration 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

DIM = 1024

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 64
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ {dim} ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ {dim} ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
{batching}"""

MODEL = '''import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.weights = np.random.default_rng(0).standard_normal(({dim}, {dim})).astype(np.float32)

    def execute(self, requests):
        # One matmul for the whole batch Triton formed, then split back into responses.
        inputs = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
        outputs = np.concatenate(inputs) @ self.weights
        responses, row = [], 0
        for x in inputs:
            y = outputs[row:row + len(x)]
            row += len(x)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("Y", y)]))
        return responses
'''


def write_repo(root: Path, delay_us: int) -> Path:
    repo = root / "model_repository"
    batching = f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}\n"
    variants = {"matmul_plain": "", "matmul_batched": batching}
    for name, batching in variants.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, dim=DIM, batching=batching))
        (repo / name / "1" / "model.py").write_text(MODEL.replace("{dim}", str(DIM)))
    return repo


def measure(url: str, model: str, concurrency: int, args: argparse.Namespace) -> tuple[float, float, float]:
    from tritonkit.bench import BenchOptions, run_bench

    options = BenchOptions(model=model, url=url, protocol="http", levels=(concurrency,),
                           duration_s=args.duration, warmup_s=args.warmup)
    level = run_bench(options).levels[0]
    if level.errors:
        raise SystemExit(f"{model} at concurrency {concurrency}: {level.errors} errors {level.errors_by_kind}")
    server = level.server_for(model)
    return level.throughput_rps, level.latency_ms["p99"], server.avg_batch if server else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--delay-us", type=int, default=500, help="max_queue_delay_microseconds")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    from tritonkit.runtime import Server

    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as temp, Server(write_repo(Path(temp), args.delay_us)) as server:
        for repeat in range(args.repeats):
            for concurrency in levels:
                models = ["matmul_plain", "matmul_batched"]
                for model in models if (repeat + concurrency) % 2 == 0 else reversed(models):
                    figures = measure(server.http_url, model, concurrency, args)
                    results.setdefault((model, concurrency), []).append(figures)
                    print(f"repeat {repeat + 1} c={concurrency:3d} {model:15s} {figures[0]:8.1f} req/s  "
                          f"p99 {figures[1]:8.2f} ms  avg batch {figures[2]:5.2f}", flush=True)
    print(f"\nmedians over {args.repeats} repeats ({args.duration:g} s per level, "
          f"max_queue_delay_microseconds {args.delay_us}):")
    print("ratio = median over repeats of (batched req/s / plain req/s), each pair measured back to back")
    print(f"{'conc':>5} {'plain req/s':>12} {'batched req/s':>14} {'ratio':>6} {'plain p99 ms':>13} "
          f"{'batched p99 ms':>15} {'avg batch':>10}")
    for concurrency in levels:
        pairs = list(zip(results[("matmul_plain", concurrency)], results[("matmul_batched", concurrency)]))
        ratio = statistics.median(b[0] / p[0] for p, b in pairs)
        plain = [statistics.median(v) for v in zip(*(p for p, _ in pairs))]
        batched = [statistics.median(v) for v in zip(*(b for _, b in pairs))]
        print(f"{concurrency:5d} {plain[0]:12.1f} {batched[0]:14.1f} {ratio:5.2f}x "
              f"{plain[1]:13.2f} {batched[1]:15.2f} {batched[2]:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
