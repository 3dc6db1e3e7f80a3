"""The Triton side of the LLM models, in one place: reading a request, answering it, the requests in flight.

Every request-facing model (``llm_api``, ``llm_engine``, ``llm_unary``, ``llm_bls``, preprocessing and
postprocessing) goes through these helpers for what touches ``triton_python_backend_utils``:

- ``inputs``: a request's input tensors as a dict of numpy arrays, read once (the logic after that is
  plain numpy, testable without a server);
- ``response`` and ``error``: a response from output arrays, or an error response whose text carries its
  code (``llm_common.error_text`` for an exception, ``llm_common.tag_error`` for a text);
- ``send``: a response, or the final flag, on a response sender, tolerating a client that has gone away
  (Triton raises ``TritonModelException`` then; nothing is waiting for the answer, so it is logged, not
  raised);
- ``LiveRequests``: the requests in flight by Triton request id, for the ``stop`` input that names one;
- ``EngineMetrics``: the PyTorch engine's statistics (``llm_metrics.py``, vLLM's metric names) as Triton
  metrics on ``/metrics``, published by a thread of its own.

This file is copied next to ``model.py``; of the other files it imports ``llm_common`` only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common

#: The flag of a request's last response.
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
Arrays = dict[str, np.ndarray[Any, Any]]


def inputs(request: Any) -> Arrays:
    """The request's input tensors by name, as numpy arrays."""
    return {tensor.name(): tensor.as_numpy() for tensor in request.inputs()}


def outputs(response: Any) -> Arrays:
    """The output tensors of a response (a BLS call's answer) by name, as numpy arrays."""
    return {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}


def error_message(response: Any) -> Optional[str]:
    """The error text of a response (a BLS call's answer), or None when it carries none."""
    return response.error().message() if response.has_error() else None


def response(arrays: Optional[Mapping[str, np.ndarray[Any, Any]]] = None) -> Any:
    """A response carrying ``arrays`` as its output tensors (none when None)."""
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in (arrays or {}).items()])


def error(failure: Union[BaseException, str], code: Optional[str] = None) -> Any:
    """An error response: an exception's text with its code, or ``failure``'s text after ``code`` (as it is if None).

    A text that already starts with a code (an engine's error passed on) keeps it.
    """
    if isinstance(failure, BaseException):
        text = llm_common.error_text(failure)
    else:
        text = failure if code is None else llm_common.tag_error(code, failure)
    return pb_utils.InferenceResponse(output_tensors=[], error=triton_error(text))


#: tritonkit's error codes -> Triton's error codes, so HTTP and gRPC clients see 400 (INVALID_ARG) for a
#: request the model refuses, 503 (UNAVAILABLE) for an engine that is full, and 500 for the engine's faults.
_TRITON_CODES = {llm_common.INVALID_ARGUMENT: "INVALID_ARG", llm_common.CONTEXT_LENGTH_EXCEEDED: "INVALID_ARG",
                 llm_common.UNSUPPORTED: "UNSUPPORTED", llm_common.OVERLOADED: "UNAVAILABLE",
                 llm_common.ENGINE_ERROR: "INTERNAL"}


def triton_error(text: str) -> Any:
    """A ``TritonError`` for ``text`` with the Triton code its ``[code]`` tag maps to (INTERNAL without one)."""
    found = llm_common.error_code(text)
    code = getattr(pb_utils.TritonError, _TRITON_CODES.get(found or "", "INTERNAL"), None)
    return pb_utils.TritonError(text) if code is None else pb_utils.TritonError(text, code)


def failure_text(exc: BaseException) -> str:
    """The text for an unexpected failure while serving a request: an engine error naming the exception's type."""
    return llm_common.tag_error(llm_common.ENGINE_ERROR, f"{type(exc).__name__}: {exc}")


def send(sender: Any, answer: Any = None, final: bool = True) -> bool:
    """Send ``answer`` (only the final flag when None) on ``sender``; False when the client has gone away."""
    try:
        if answer is None:
            sender.send(flags=FINAL)
        else:
            sender.send(answer, flags=FINAL if final else 0)
    except pb_utils.TritonModelException as exc:  # nothing is waiting for this response
        pb_utils.Logger.log_verbose(f"response not sent: {exc}")
        return False
    return True


class LiveRequests:
    """The requests in flight by Triton request id, for a ``stop`` request that names one.

    Several requests may carry the same id; a ``stop`` cancels every one of them, as TensorRT-LLM's
    backend does. Requests without an id are not tracked (nothing can name them).
    """

    def __init__(self) -> None:
        self._jobs: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def add(self, request_id: Optional[str], job: Any) -> None:
        """Track ``job`` under ``request_id``."""
        if request_id:
            with self._lock:
                self._jobs.setdefault(request_id, []).append(job)

    def discard(self, request_id: Optional[str], job: Any) -> None:
        """Forget ``job`` (done, or never started); nothing happens when it is not tracked."""
        if not request_id:
            return
        with self._lock:
            jobs = self._jobs.get(request_id, [])
            if any(item is job for item in jobs):
                jobs[:] = [item for item in jobs if item is not job]
            if not jobs:
                self._jobs.pop(request_id, None)

    def find(self, request_id: Optional[str]) -> list[Any]:
        """The jobs in flight under ``request_id``."""
        with self._lock:
            return list(self._jobs.get(request_id or "", []))

    def cancel(self, request_id: Optional[str], how: Callable[[Any], None]) -> int:
        """Cancel (``how(job)``) every job in flight under ``request_id``; the number cancelled."""
        found = self.find(request_id)
        for job in found:
            how(job)
        return len(found)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(jobs) for jobs in self._jobs.values())


def metric_labels(args: Mapping[str, str]) -> dict[str, str]:
    """The labels of an engine's metrics: vLLM's ``model_name`` and ``engine``, Triton's ``model`` and ``version``.

    ``engine`` tells the instances of one model apart (``0_0`` for the first instance of the first group),
    as vLLM's tells its data-parallel engines apart; each instance runs an engine of its own.
    """
    name, instance = args["model_name"], args.get("model_instance_name", "")
    engine = instance[len(name) + 1:] if instance.startswith(name + "_") else "0"
    return {"model_name": name, "engine": engine or "0", "model": name, "version": str(args["model_version"])}


def engine_metrics(stats: Any, args: Mapping[str, str], params: Mapping[str, str]) -> Optional[EngineMetrics]:
    """The publisher of an engine's statistics, or None when the model's ``metrics`` parameter is false."""
    if not llm_common.parse_bool(params.get("metrics", ""), True):
        return None
    return EngineMetrics(stats, args)


class EngineMetrics:
    """An engine's statistics (``llm_metrics.EngineStats``) as Triton metrics on ``/metrics``, kept fresh by a thread.

    Every ``period_s`` the thread takes a reading: gauges are set when they changed, counters grow by what
    they grew, and each new histogram sample is observed. A call into Triton's metrics API is a message to
    the server process (about 60 us each on a 2-core CPU), so the engine's own thread never makes one.
    """

    def __init__(self, stats: Any, args: Mapping[str, str], period_s: float = 0.5) -> None:
        self.stats, self.period_s, self.labels = stats, period_s, metric_labels(args)
        kinds = {"counter": pb_utils.MetricFamily.COUNTER, "gauge": pb_utils.MetricFamily.GAUGE,
                 "histogram": getattr(pb_utils.MetricFamily, "HISTOGRAM", None)}
        self.families = {f.name: (f, pb_utils.MetricFamily(name=f.name, description=f.description, kind=kinds[f.kind]))
                         for f in stats.families if kinds[f.kind] is not None}
        self.metrics: dict[Any, Any] = {}
        self.last: dict[Any, float] = {}
        self.publish()  # every series is on /metrics from the start, at zero
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="llm-metrics", daemon=True)
        self.thread.start()

    def _metric(self, series: tuple[str, tuple[tuple[str, str], ...]]) -> Any:
        metric = self.metrics.get(series)
        if metric is None:
            spec, family = self.families[series[0]]
            labels = {**self.labels, **dict(series[1])}
            metric = family.Metric(labels=labels, buckets=list(spec.buckets)) if spec.buckets else family.Metric(
                labels=labels)
            self.metrics[series] = metric
        return metric

    def publish(self) -> None:
        """Take a reading and hand what changed to Triton."""
        reading = self.stats.take()
        for series, value in reading.levels.items():
            if series[0] not in self.families:
                continue
            metric, last = self._metric(series), self.last.get(series)
            if self.families[series[0]][0].kind == "gauge":
                if value != last:
                    metric.set(float(value))
            elif value > (last or 0):
                metric.increment(float(value - (last or 0)))
            self.last[series] = value
        for name, values in reading.samples.items():
            if name in self.families:
                metric = self._metric((name, ()))
                for value in values:
                    metric.observe(value)

    def _loop(self) -> None:
        while not self.stopping.wait(self.period_s):
            try:
                self.publish()
            except Exception as exc:  # metrics must never take the model down; the next reading tries again
                pb_utils.Logger.log_warn(f"tritonkit engine: metrics not published: {exc!r}")

    def stop(self) -> None:
        """Publish a last time, end the thread, and drop the metrics before their families (Triton's order)."""
        self.stopping.set()
        self.thread.join(timeout=10)
        try:
            self.publish()
        finally:
            self.metrics.clear()
            self.families.clear()
