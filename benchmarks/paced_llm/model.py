"""A Triton Python model with the LLM-API interface whose tokens come at a fixed pace: a yardstick for clients.

Two load generators compared on a real LLM sharing the client's CPU measure different servers: the one
that burns more CPU slows the model it measures (benchmarks/README.md). This model spends next to no CPU:
each request gets its first token ``paced_ttft_ms`` after it arrived and one more every ``paced_itl_ms``,
up to ``sampling_param_max_tokens`` (the word "the", one token each for SmolLM2's tokenizer), so whatever
two clients report differently comes from the clients. One thread keeps the schedule for every request.

Used by ``benchmarks/aiperf_vs_bench.py --paced``; it is not part of the product.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

_FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _scalar(request: Any, name: str, default: Any) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else tensor.as_numpy().reshape(-1)[0]


def _strings(text: str) -> Any:
    return pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))


class TritonPythonModel:
    """Paced answers: first token after ``paced_ttft_ms``, then one every ``paced_itl_ms``."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read the pace and start the thread that keeps it."""
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.ttft = float(parameters["paced_ttft_ms"]["string_value"]) / 1000
        self.itl = float(parameters["paced_itl_ms"]["string_value"]) / 1000
        self.due: list[tuple[float, int, dict[str, Any]]] = []
        self.order = itertools.count()
        self.wake = threading.Condition()
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def execute(self, requests: list[Any]) -> None:
        """Schedule every request's first token (decoupled: responses go through each request's sender)."""
        now = time.monotonic()
        with self.wake:
            for request in requests:
                job = {"sender": request.get_response_sender(), "text": "", "start": now + self.ttft,
                       "left": int(_scalar(request, "sampling_param_max_tokens", 16) or 16),
                       "streaming": bool(_scalar(request, "streaming", False)),
                       "reason": bool(_scalar(request, "return_finish_reason", False))}
                heapq.heappush(self.due, (job["start"], next(self.order), job))
            self.wake.notify()

    def _loop(self) -> None:
        while True:
            with self.wake:
                while self.running and (not self.due or self.due[0][0] > time.monotonic()):
                    self.wake.wait(None if not self.due else self.due[0][0] - time.monotonic())
                if not self.running:
                    return
                _, _, job = heapq.heappop(self.due)
            word = "the" if not job["text"] else " the"
            job["text"] += word
            job["left"] -= 1
            if job["left"] > 0:
                if job["streaming"]:
                    job["sender"].send(pb_utils.InferenceResponse(output_tensors=[_strings(word)]))
                with self.wake:
                    steps = len(job["text"].split())
                    heapq.heappush(self.due, (job["start"] + steps * self.itl, next(self.order), job))
                continue
            outputs = [_strings(word if job["streaming"] else job["text"])]
            if job["reason"]:
                outputs.append(pb_utils.Tensor("finish_reason", np.array([b"length"], dtype=np.object_)))
            job["sender"].send(pb_utils.InferenceResponse(output_tensors=outputs), flags=_FINAL)

    def finalize(self) -> None:
        """Stop the pacing thread."""
        with self.wake:
            self.running = False
            self.wake.notify()
        self.thread.join(timeout=5)
