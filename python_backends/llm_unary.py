"""``<name>`` of the streaming layout: the non-decoupled front of a decoupled engine.

Triton marks an ensemble decoupled as soon as one of its steps is, and decoupled models cannot be
called through HTTP ``infer`` or unary gRPC. So with a decoupled engine ``<name>`` is this model, with
the ensemble's inputs and outputs: it tokenises the client's inputs (``llm_prompt``, preprocessing's
code), sends every request of a batch to ``<name>_engine`` at once (so the engine still batches them)
with ``streaming`` off, merges the sequences of each answer and decodes the text as postprocessing
does. One Python hop before the engine, where preprocessing, a forwarder and postprocessing would make
three (and an ensemble around this model one more).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common
import llm_prompt

#: How long ``execute`` waits for its batch's answers before leaving them to the response senders.
_HOLD_S = 0.020


def _error(message: str) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))


class _Batch:
    """The requests of one ``execute`` and their answers: returned together, or each sent on its own."""

    def __init__(self, requests: list[Any]) -> None:
        self.requests = requests
        self.responses: list[Any] = [None] * len(requests)
        self._left = len(requests)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._detached = False

    def answer(self, index: int, response: Any) -> None:
        """Keep ``response`` for ``execute`` to return, or send it if ``execute`` has returned without it."""
        with self._lock:
            if not self._detached:
                self.responses[index] = response
                self._left -= 1
                if not self._left:
                    self._done.set()
                return
        _send(self.requests[index], response)

    def wait(self, timeout_s: float) -> bool:
        """True when every answer came within ``timeout_s``; else they go out on their senders."""
        if self._done.wait(timeout_s):
            return True
        with self._lock:
            if not self._left:
                return True
            self._detached = True
            ready = [(r, a) for r, a in zip(self.requests, self.responses) if a is not None]
        for request, response in ready:
            _send(request, response)
        return False


def _send(request: Any, response: Any) -> None:
    try:
        request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    except pb_utils.TritonModelException as exc:  # the client went away: nothing waits for this answer
        pb_utils.Logger.log_verbose(f"response not sent: {exc}")


class TritonPythonModel:
    """The ``<name>`` model of the streaming layout."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read which engine to call, the routes of client inputs, and load the tokenizer."""
        config = json.loads(args["model_config"])
        params = llm_common.read_parameters(config)
        self.engine_name = params["engine_model"]
        self.outputs = [t["name"] for t in config.get("output", [])]
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])
        self.router = llm_prompt.Router(params, self.tokenizer, "ensemble")
        self.pad_id = self.router.pre.pad_id
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrency") or 8),
                                       thread_name_prefix="tritonkit-unary")
        self.streams = llm_prompt.StreamKeeper()

    def finalize(self) -> None:
        """Stop the worker threads."""
        self.pool.shutdown(wait=True)

    def execute(self, requests: list[Any]) -> Optional[list[Any]]:
        """Send every request to the engine concurrently; return the answers if they all come within the hold.

        Answers that take longer (the engine is generating) go out later, each on its request's response
        sender, which a model that is not decoupled may use too (one response, with the final flag;
        Triton 24.07 and later). So a request that arrives meanwhile waits at most the hold (20 ms), not
        until a whole batch of generations is done; and quick answers still go back together, in one
        message, as returning them costs less than sending each.
        """
        batch = _Batch(requests)
        for index in range(len(requests)):
            self.pool.submit(self._answer, batch, index)
        return batch.responses if batch.wait(_HOLD_S) else None

    def _answer(self, batch: _Batch, index: int) -> None:
        batch.answer(index, self._serve(batch.requests[index]))

    def _serve(self, request: Any) -> Any:
        try:
            return self._forward(request)
        except llm_common.RequestError as exc:
            return _error(str(exc))
        except Exception as exc:  # any failure must reach this client, and only it
            return _error(f"{type(exc).__name__}: {exc}")

    def _forward(self, request: Any) -> Any:
        client = {t.name(): t.as_numpy() for t in request.inputs()}
        inputs = [pb_utils.Tensor(k, v) for k, v in self.router.engine_tensors(client, False).items()]
        wanted = set(request.requested_output_names()) or set(self.outputs)
        asked = [n for n in self.outputs if n in wanted and n != "text_output"]
        asked += [n for n in ("output_ids", "sequence_length") if n not in asked]
        engine_request = pb_utils.InferenceRequest(model_name=self.engine_name, inputs=inputs,
                                                   request_id=request.request_id(), requested_output_names=asked)
        parts: list[dict[str, Any]] = []
        stream = engine_request.exec(decoupled=True)
        responses = list(stream)  # read to the end, errors too, so that the stub clears the stream
        self.streams.keep(stream, request)  # not dropped here: see llm_prompt.StreamKeeper
        for response in responses:
            if response.has_error():
                return _error(response.error().message())
            tensors = {t.name(): t.as_numpy() for t in response.output_tensors()}
            if tensors:
                parts.append(tensors)
        merged = llm_common.merge_sequences(parts, self.pad_id) if parts else {}
        if "output_ids" not in merged:
            return _error(f"{self.engine_name} answered without output_ids")
        sequences = llm_common.engine_sequences(merged.pop("output_ids"), merged.pop("sequence_length", None))
        texts = llm_common.decode_batch(self.tokenizer, sequences)
        merged["text_output"] = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(k, v) for k, v in merged.items() if k in wanted])
