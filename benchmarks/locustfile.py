"""Locust peer for ``tritonkit bench``: each user calls a Triton model with tritonclient over HTTP.

Run headless by ``bench_vs_locust.py``; settings come from the environment:
``TRITON_URL`` (host:port of HTTP), ``TRITON_MODEL``, ``TRITON_INPUT`` (name), ``TRITON_DIM`` (FP32 length),
``LOCUST_REPORT`` (a JSON file that gets requests, failures, client CPU seconds and wall seconds).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import tritonclient.http as httpclient
from locust import User, events, task

URL = os.environ.get("TRITON_URL", "localhost:8000")
MODEL = os.environ.get("TRITON_MODEL", "identity")
INPUT = os.environ.get("TRITON_INPUT", "INPUT0")
DIM = int(os.environ.get("TRITON_DIM", "16"))

_totals = {"requests": 0, "failures": 0}
_marks: dict[str, float] = {}


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@events.test_start.add_listener
def _started(**_: object) -> None:
    _marks["cpu"], _marks["wall"] = _cpu_s(), time.perf_counter()


@events.test_stop.add_listener
def _stopped(**_: object) -> None:
    report = os.environ.get("LOCUST_REPORT")
    if not report:
        return
    summary = dict(_totals, cpu_s=_cpu_s() - _marks["cpu"], wall_s=time.perf_counter() - _marks["wall"])
    with open(report, "w", encoding="utf-8") as handle:
        json.dump(summary, handle)


class TritonUser(User):
    """One closed-loop caller: the next request leaves when the last answer is in (no wait time)."""

    def on_start(self) -> None:
        self.client = httpclient.InferenceServerClient(URL)
        array = np.random.default_rng(0).standard_normal((1, DIM)).astype(np.float32)
        self.inputs = [httpclient.InferInput(INPUT, list(array.shape), "FP32")]
        self.inputs[0].set_data_from_numpy(array, binary_data=True)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def infer(self) -> None:
        start = time.perf_counter()
        error = None
        try:
            self.client.infer(MODEL, self.inputs)
        except Exception as exc:  # counted as a Locust failure, as a load test should
            error = exc
            _totals["failures"] += 1
        _totals["requests"] += 1
        events.request.fire(request_type="infer", name=MODEL, response_time=(time.perf_counter() - start) * 1000,
                            response_length=0, exception=error, context={})
