"""Soak the default example: classic load, greedy LLM streams checked against their answers alone, and poison.

```
python benchmarks/soak.py [--duration 600] [--add-sub-clients 16] [--streams 4] [--malformed-per-s 5]
```

Generates the default example (examples/tritonkit.yaml) into a temporary folder and serves it with
`tritonkit serve`, as a user would. Then, for ``--duration`` seconds, at once:

- ``--add-sub-clients`` threads call ``add_sub`` over gRPC in a closed loop and check every SUM and DIFF;
- ``--streams`` threads each stream greedy answers from ``smollm2`` over gRPC, one prompt after another,
  and compare each whole text with the answer the same prompt got alone before the load began;
- one thread sends a malformed LLM request ``--malformed-per-s`` times a second, cycling through every
  kind (a NaN or infinite sampling value, an empty prompt, invalid UTF-8, negative max tokens, a 1.2 MB
  prompt, a missing ``text_input``) and one valid oddity (``max_tokens`` of 2^31-1, to be clamped and
  answered): each must get an error naming its input (or, for the oddity, an answer).

It samples the memory of the server and its backend processes after warm-up and after the load, checks
readiness throughout, and ends ``serve`` with Ctrl-C (SIGINT), which must exit 0. Prints one JSON report;
``run_soak`` is what tests/server/test_soak.py runs for a shorter time.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import tritonclient.grpc as grpcclient

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["What is the capital of France?", "Name three colours.", "Say hello in French.", "What is 2 + 2?"]
#: Each malformed kind: its inputs (besides a valid prompt unless it replaces it) and the words its error names.
MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "nan temperature": ({"sampling_param_temperature": np.float32("nan")}, "'sampling_param_temperature'"),
    "inf top_p": ({"sampling_param_top_p": np.float32("inf")}, "'sampling_param_top_p'"),
    "-inf presence": ({"sampling_param_presence_penalty": np.float32("-inf")}, "'sampling_param_presence_penalty'"),
    "empty prompt": ({"text_input": b""}, "'text_input' is empty"),
    "invalid utf-8": ({"text_input": b"\xff\xfe caf\xe9"}, "'text_input' is not valid UTF-8"),
    "negative max tokens": ({"sampling_param_max_tokens": np.int32(-5)}, "'sampling_param_max_tokens'"),
    "1.2 MB prompt": ({"text_input": b"word " * 240_000}, "'text_input' has 1200000 bytes"),
    "missing text_input": ({"text_input": None}, "text_input"),
}
CLAMPED = ({"sampling_param_max_tokens": np.int32(2**31 - 1)}, "")
_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.bool_): "BOOL",
          np.dtype(np.object_): "BYTES"}


def _inputs(values: dict[str, Any]) -> list[Any]:
    tensors = []
    for name, value in values.items():
        if value is None:
            continue
        array = np.array([value], dtype=np.object_ if isinstance(value, bytes) else type(value))
        tensor = grpcclient.InferInput(name, list(array.shape), _TYPES[array.dtype])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


class _Streamer:
    """One gRPC stream to the LLM: send one request, collect its text until the final response."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.replies: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.replies.put((result, error)))

    def ask(self, values: dict[str, Any], timeout_s: float) -> tuple[Optional[str], Optional[str]]:
        """(text, None) for an answer, (None, error) for an error; raises queue.Empty when nothing came."""
        self.client.async_stream_infer("smollm2", _inputs(values), enable_empty_final_response=True)
        pieces = []
        while True:
            result, error = self.replies.get(timeout=timeout_s)
            if error is not None:
                return None, str(error)
            text = result.as_numpy("text_output")
            if text is not None:
                pieces.append(b"".join(text.reshape(-1)).decode())
            if result.get_response().parameters["triton_final_response"].bool_param:
                return "".join(pieces), None

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


def _greedy(prompt: str, stream: bool = True) -> dict[str, Any]:
    return {"text_input": prompt.encode(), "streaming": np.bool_(stream), "sampling_param_max_tokens": np.int32(32),
            "sampling_param_temperature": np.float32(0.0)}


@dataclass
class SoakReport:
    """What one soak saw."""

    duration_s: float = 0.0
    add_sub_requests: int = 0
    add_sub_errors: list[str] = field(default_factory=list)
    llm_answers: int = 0
    llm_wrong: list[str] = field(default_factory=list)
    llm_lost: int = 0
    malformed: dict[str, list[float]] = field(default_factory=dict)
    malformed_wrong: list[str] = field(default_factory=list)
    clamped_answered: int = 0
    not_ready_seen: int = 0
    memory_after_warmup_mib: float = 0.0
    memory_after_load_mib: float = 0.0
    exit_code: Optional[int] = None

    def malformed_p99_ms(self) -> float:
        """p99 of every malformed request's time to its error, in milliseconds."""
        times = sorted(t for kind in self.malformed.values() for t in kind)
        if not times:
            return float("nan")
        return 1000 * times[min(len(times) - 1, int(0.99 * len(times)))]

    def summary(self) -> dict[str, Any]:
        """The figures as one JSON-ready dict."""
        return {
            "duration_s": round(self.duration_s, 1), "add_sub_requests": self.add_sub_requests,
            "add_sub_errors": len(self.add_sub_errors), "llm_answers": self.llm_answers,
            "llm_wrong": len(self.llm_wrong), "llm_lost": self.llm_lost,
            "malformed_requests": sum(len(v) for v in self.malformed.values()),
            "malformed_wrong": len(self.malformed_wrong),
            "malformed_p50_ms": round(1000 * statistics.median(t for v in self.malformed.values() for t in v), 1)
            if self.malformed else None,
            "malformed_p99_ms": round(self.malformed_p99_ms(), 1),
            "clamped_answered": self.clamped_answered, "not_ready_seen": self.not_ready_seen,
            "memory_after_warmup_mib": round(self.memory_after_warmup_mib, 1),
            "memory_after_load_mib": round(self.memory_after_load_mib, 1),
            "serve_exit_code": self.exit_code,
        }


def _group_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it (the backend stubs), in MiB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _add_sub_client(url: str, stop: threading.Event, report: SoakReport, lock: threading.Lock) -> None:
    client = grpcclient.InferenceServerClient(url)
    rng = np.random.default_rng()
    done = 0
    while not stop.is_set():
        a, b = rng.random((1, 4), dtype=np.float32), rng.random((1, 4), dtype=np.float32)
        inputs = []
        for name, array in (("INPUT0", a), ("INPUT1", b)):
            tensor = grpcclient.InferInput(name, [1, 4], "FP32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        try:
            result = client.infer("add_sub", inputs)
            if not (np.allclose(result.as_numpy("SUM"), a + b) and np.allclose(result.as_numpy("DIFF"), a - b)):
                with lock:
                    report.add_sub_errors.append("wrong SUM or DIFF")
        except Exception as exc:
            with lock:
                report.add_sub_errors.append(str(exc)[:200])
        done += 1
    with lock:
        report.add_sub_requests += done
    client.close()


def _llm_stream(url: str, expected: dict[str, str], stop: threading.Event, report: SoakReport,
                lock: threading.Lock) -> None:
    streamer = _Streamer(url)
    try:
        while not stop.is_set():
            prompt = random.choice(PROMPTS)
            try:
                text, error = streamer.ask(_greedy(prompt), timeout_s=120)
            except queue.Empty:
                with lock:
                    report.llm_lost += 1
                streamer.close()
                streamer = _Streamer(url)
                continue
            with lock:
                report.llm_answers += 1
                if text != expected[prompt]:
                    report.llm_wrong.append(f"{prompt!r}: {text!r} (alone: {expected[prompt]!r}; error {error})")
    finally:
        streamer.close()


def _malformed(url: str, per_s: float, stop: threading.Event, report: SoakReport, lock: threading.Lock) -> None:
    streamer = _Streamer(url)
    kinds = [*MALFORMED.items(), ("clamped max tokens", CLAMPED)]
    sent = 0
    try:
        while not stop.is_set():
            name, (values, words) = kinds[sent % len(kinds)]
            sent += 1
            started = time.monotonic()
            try:
                text, error = streamer.ask({**_greedy("What is the capital of France?", False), **values}, 120)
            except queue.Empty:
                text, error = None, "no answer in 120 s"
            took = time.monotonic() - started
            with lock:
                if name == "clamped max tokens":
                    if text is not None and "Paris" in text:
                        report.clamped_answered += 1
                    else:
                        report.malformed_wrong.append(f"{name}: {error or text}")
                else:
                    report.malformed.setdefault(name, []).append(took)
                    if error is None or words not in error:
                        report.malformed_wrong.append(f"{name}: {error or text!r}")
            stop.wait(max(0.0, 1.0 / per_s - took))
    finally:
        streamer.close()


def _ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=5) as reply:
            return int(reply.status) == 200
    except OSError:
        return False


def run_soak(grpc_url: str, http_url: str, server_pid: int, duration_s: float, add_sub_clients: int = 16,
             streams: int = 4, malformed_per_s: float = 5.0, warmup_s: float = 10.0) -> SoakReport:
    """Run the mix against a served default example; the report says what went wrong, if anything."""
    report = SoakReport()
    lock = threading.Lock()
    expected: dict[str, str] = {}
    streamer = _Streamer(grpc_url)
    try:
        for prompt in PROMPTS:  # each prompt's greedy answer alone, before any load
            text, error = streamer.ask(_greedy(prompt), timeout_s=300)
            assert text is not None, error
            expected[prompt] = text
    finally:
        streamer.close()
    stop = threading.Event()
    threads = [threading.Thread(target=_add_sub_client, args=(grpc_url, stop, report, lock))
               for _ in range(add_sub_clients)]
    threads += [threading.Thread(target=_llm_stream, args=(grpc_url, expected, stop, report, lock))
                for _ in range(streams)]
    threads.append(threading.Thread(target=_malformed, args=(grpc_url, malformed_per_s, stop, report, lock)))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(min(warmup_s, duration_s / 4))
    report.memory_after_warmup_mib = _group_rss_mib(server_pid)
    while time.monotonic() - started < duration_s:
        if not _ready(http_url):
            report.not_ready_seen += 1
        time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    report.duration_s = time.monotonic() - started
    time.sleep(3.0)
    report.memory_after_load_mib = _group_rss_mib(server_pid)
    return report


@contextmanager
def served_default_example(workdir: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``tritonkit serve`` of the default example, generated into ``workdir``; yields the process and endpoints."""
    shutil.copytree(ROOT / "examples", workdir, dirs_exist_ok=True)
    subprocess.run([sys.executable, "-m", "tritonkit", "generate", str(workdir / "tritonkit.yaml")], check=True,
                   capture_output=True)
    command = [sys.executable, "-m", "tritonkit", "serve", str(workdir / "model_repository"), "--http-port", "0",
               "--grpc-port", "0", "--metrics-port", "0", "--ready-timeout", "300"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        endpoints = dict(process.stdout.readline().strip().split(": ", 1) for _ in range(3))
        yield process, endpoints
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def stop_with_ctrl_c(process: subprocess.Popen[str], timeout_s: float = 90.0) -> int:
    """SIGINT to ``serve``, as Ctrl-C sends it; its exit code."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -1
    return int(process.returncode)


def _server_pid(serve_pid: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == serve_pid and "tritonserver" in (stat.parent / "cmdline").read_text():
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
    raise RuntimeError("no tritonserver process under serve")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--add-sub-clients", type=int, default=16)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--malformed-per-s", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tritonkit-soak-") as tmp, \
            served_default_example(Path(tmp)) as (process, endpoints):
        report = run_soak(endpoints["grpc"], endpoints["http"], _server_pid(process.pid), args.duration,
                          args.add_sub_clients, args.streams, args.malformed_per_s)
        report.exit_code = stop_with_ctrl_c(process)
    print(json.dumps({"load_average": os.getloadavg(), **report.summary(),
                      "malformed_p99_ms_by_kind": {k: round(1000 * sorted(v)[min(len(v) - 1, int(0.99 * len(v)))], 1)
                                                   for k, v in report.malformed.items()},
                      "first_problems": (report.add_sub_errors + report.llm_wrong + report.malformed_wrong)[:5]},
                     indent=1))


if __name__ == "__main__":
    main()
