"""Requests/s per client core: ``tritonkit bench`` against Locust, same model, same server, same load.

Starts the local tritonserver on a trivial Python model, then, for each repeat, runs side by side
(order alternating): bench over HTTP, Locust (``locustfile.py``, tritonclient HTTP, gevent), and bench
over gRPC, each a separate process at the same concurrency for the same time. Every client reports the
requests it completed and the CPU seconds it used during the run; requests per CPU second is
"requests/s per client core". Prints every run and the medians, and the ratio bench/Locust.

    python benchmarks/bench_vs_locust.py [--concurrency 16] [--duration 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DIM = 16

CONFIG = """name: "identity"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1, DIM ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1, DIM ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
""".replace("DIM", str(DIM))

MODEL = '''import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
'''


def write_repo(root: Path) -> Path:
    model = root / "model_repository" / "identity"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG)
    (model / "1" / "model.py").write_text(MODEL)
    return model.parent


def client_bench(url: str, protocol: str, concurrency: int, duration_s: float, report: str) -> None:
    """Run in a child process: one bench level, with this process's CPU time around it."""
    from tritonkit.bench import BenchOptions, run_bench

    options = BenchOptions(model="identity", url=url, protocol=protocol, levels=(concurrency,),
                           duration_s=duration_s, warmup_s=0.0)
    cpu, wall = time.process_time(), time.perf_counter()
    level = run_bench(options).levels[0]
    summary = {"requests": level.requests, "failures": level.errors, "cpu_s": time.process_time() - cpu,
               "wall_s": time.perf_counter() - wall}
    Path(report).write_text(json.dumps(summary))


def run_bench_child(server_url: str, protocol: str, args: argparse.Namespace, report: Path) -> dict:
    subprocess.run([sys.executable, __file__, "--child", server_url, protocol, str(args.concurrency),
                    str(args.duration), str(report)], check=True)
    return json.loads(report.read_text())


def run_locust(http_url: str, args: argparse.Namespace, work: Path) -> dict:
    report = work / "locust.json"
    env = dict(os.environ, TRITON_URL=http_url, TRITON_MODEL="identity", TRITON_INPUT="INPUT0",
               TRITON_DIM=str(DIM), LOCUST_REPORT=str(report))
    locust = Path(sys.executable).with_name("locust")
    command = [str(locust), "-f", str(HERE / "locustfile.py"), "--headless", "-u", str(args.concurrency),
               "-r", str(args.concurrency), "-t", f"{int(args.duration)}s", "--csv", str(work / "locust"),
               "--only-summary", "--loglevel", "WARNING"]
    subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(report.read_text())


def per_core(run: dict) -> float:
    return run["requests"] / run["cpu_s"] if run["cpu_s"] else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tritonkit.runtime import Server

    runs: dict[str, list[dict]] = {"bench-http": [], "locust-http": [], "bench-grpc": []}
    with tempfile.TemporaryDirectory() as temp, Server(write_repo(Path(temp))) as server:
        work = Path(temp)
        for repeat in range(args.repeats):
            order = ["bench-http", "locust-http", "bench-grpc"]
            for name in order if repeat % 2 == 0 else list(reversed(order)):
                if name == "locust-http":
                    run = run_locust(server.http_url, args, work)
                else:
                    protocol = name.split("-")[1]
                    url = server.http_url if protocol == "http" else server.grpc_url
                    run = run_bench_child(url, protocol, args, work / f"{name}.json")
                runs[name].append(run)
                print(f"repeat {repeat + 1} {name:12s} requests {run['requests']:6d} failures {run['failures']:3d} "
                      f"req/s {run['requests'] / run['wall_s']:8.1f}  client CPU {run['cpu_s']:6.2f} s  "
                      f"req/s per client core {per_core(run):8.1f}", flush=True)
    print(f"\nmedians over {args.repeats} repeats, concurrency {args.concurrency}, {args.duration:g} s each:")
    medians = {name: statistics.median(per_core(r) for r in rs) for name, rs in runs.items()}
    for name, rs in runs.items():
        rps = statistics.median(r["requests"] / r["wall_s"] for r in rs)
        print(f"  {name:12s} req/s {rps:8.1f}   req/s per client core {medians[name]:8.1f}")
    print(f"  ratio bench-http / locust-http per client core: {medians['bench-http'] / medians['locust-http']:.2f}x")
    print(f"  ratio bench-grpc / locust-http per client core: {medians['bench-grpc'] / medians['locust-http']:.2f}x")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        client_bench(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
        sys.exit(0)
    sys.exit(main())
