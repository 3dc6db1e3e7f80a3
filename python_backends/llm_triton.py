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
- ``LiveRequests``: the requests in flight by Triton request id, for the ``stop`` input that names one.

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
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(text))


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
