"""``<name>`` of the streaming layout: the non-decoupled front of a decoupled engine.

Triton marks an ensemble decoupled as soon as one of its steps is, and decoupled models cannot be
called through HTTP ``infer`` or unary gRPC. So with a decoupled engine ``<name>`` is this model, with
the ensemble's inputs and outputs: it tokenises the client's inputs (``llm_prompt``, preprocessing's
code), sends the requests of a batch to ``<name>_engine`` with ``streaming`` off, merges the sequences
of each answer and decodes the text as postprocessing does. One Python hop before the engine, where
preprocessing, a forwarder and postprocessing would make three (and an ensemble around this model one
more).

Requests that ask the same of the engine (the same inputs set, outputs, and per-request flags) and
carry no request id go to the engine as one request with a batch of prompts, as TensorRT-LLM's
decoupled backend takes them: each prompt is answered on its own, with its ``batch_index``, so a short
answer still leaves first. One engine request per group costs one round trip through Triton where a
request each cost one per client. A request with an id goes alone, so that a ``stop`` naming it finds
it; a group the engine refuses as a whole is sent again one request at a time, so that only the
malformed request gets the error.
"""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common
import llm_prompt
import llm_request
import llm_triton

#: How long ``execute`` waits for its batch's answers before leaving them to the response senders.
_HOLD_S = 0.020


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
    llm_triton.send(request.get_response_sender(), response)


class _Rows:
    """The prompts of one client request that carries a batch of them, answered as one response, row by row.

    Stands in for the ``_Batch`` while its rows go to the engine (as one engine request, each prompt with
    its ``batch_index``); once every row is answered, the client gets their outputs stacked in the order it
    sent the prompts, or the first row's error.
    """

    def __init__(self, batch: _Batch, index: int, count: int) -> None:
        self.parent, self.index = batch, index
        self.requests = [batch.requests[index]] * count
        self._answers: list[Any] = [None] * count
        self._left = count
        self._lock = threading.Lock()

    def answer(self, row: int, response: Any) -> None:
        """Keep one row's answer; with the last one, answer the client."""
        with self._lock:
            self._answers[row] = response
            self._left -= 1
            done = not self._left
        if done:
            self.parent.answer(self.index, _stack_answers(self._answers))


def _stack_answers(responses: list[Any]) -> Any:
    failed = next((r for r in responses if r.has_error()), None)
    if failed is not None:
        return llm_triton.error(llm_triton.error_message(failed) or "")
    rows = [llm_triton.outputs(r) for r in responses]
    return llm_triton.response({name: np.concatenate([row[name] for row in rows], axis=0) for name in rows[0]})


class _Prepared(NamedTuple):
    """A client request made into the engine's tensors, and the outputs it wants."""

    tensors: dict[str, np.ndarray[Any, Any]]
    asked: list[str]
    wanted: frozenset[str]


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
        """Send the requests to the engine; return the answers if they all come within the hold.

        Answers that take longer (the engine is generating) go out later, each on its request's response
        sender, which a model that is not decoupled may use too (one response, with the final flag;
        Triton 24.07 and later). So a request that arrives meanwhile waits at most the hold (20 ms), not
        until a whole batch of generations is done; and quick answers still go back together, in one
        message, as returning them costs less than sending each.
        """
        batch = _Batch(requests)
        self.pool.submit(self._dispatch, batch)
        return batch.responses if batch.wait(_HOLD_S) else None

    def _dispatch(self, batch: _Batch) -> None:
        """Tokenise every request, answer the malformed ones, and send the others to the engine by group."""
        groups: dict[Any, list[int]] = {}
        prepared: dict[int, _Prepared] = {}
        calls: list[Any] = []
        for index, request in enumerate(batch.requests):
            try:
                rows = self._prepare(request)
            except Exception as exc:  # a malformed request: its own error, the others go on
                batch.answer(index, llm_triton.error(exc))
                continue
            if len(rows) > 1:  # a batch of prompts in one request: its rows go to the engine together
                calls.append((self._group, _Rows(batch, index, len(rows)), list(range(len(rows))),
                              dict(enumerate(rows))))
                continue
            prepared[index] = rows[0]
            key = llm_request.group_key(request.request_id(), prepared[index].wanted, prepared[index].tensors)
            groups.setdefault(key, []).append(index)
        for key, indices in groups.items():
            if key is None or len(indices) == 1:
                calls += [(self._single, batch, index, prepared[index]) for index in indices]
            else:
                calls.append((self._group, batch, indices, prepared))
        for call in calls[:-1]:
            self.pool.submit(*call)
        if calls:  # the last on this thread: one hand-over fewer
            calls[-1][0](*calls[-1][1:])

    def _prepare(self, request: Any) -> list[_Prepared]:
        """The engine tensors of each prompt the request carries (one per row of its batch, as NVIDIA's accepts)."""
        asked, wanted = llm_request.asked_outputs(list(request.requested_output_names()), self.outputs)
        return [_Prepared(self.router.engine_tensors(row, False), asked, wanted)
                for row in llm_request.split_prompts(llm_triton.inputs(request))]

    def _single(self, batch: _Batch | _Rows, index: int, prepared: _Prepared) -> None:
        request = batch.requests[index]
        try:
            response = self._call(request, prepared)
        except Exception as exc:  # any failure must reach this client, and only it
            response = llm_triton.error(llm_triton.failure_text(exc))
        batch.answer(index, response)

    def _call(self, request: Any, prepared: _Prepared) -> Any:
        inputs = [pb_utils.Tensor(k, v) for k, v in prepared.tensors.items()]
        engine_request = pb_utils.InferenceRequest(model_name=self.engine_name, inputs=inputs,
                                                   request_id=request.request_id(),
                                                   requested_output_names=prepared.asked)
        stream = engine_request.exec(decoupled=True)
        responses = list(stream)  # read to the end, errors too, so that the stub clears the stream
        self.streams.keep(stream, request)  # not dropped here: see llm_prompt.StreamKeeper
        parts: list[dict[str, Any]] = []
        for response in responses:
            failed = llm_triton.error_message(response)
            if failed is not None:
                return llm_triton.error(failed)
            tensors = llm_triton.outputs(response)
            if tensors:
                parts.append(tensors)
        return self._reply(parts, prepared.wanted)

    def _reply(self, parts: list[dict[str, Any]], wanted: frozenset[str]) -> Any:
        """One client's response from the engine's responses for its prompt (one per sequence)."""
        merged = llm_common.merge_sequences(parts, self.pad_id) if parts else {}
        if "output_ids" not in merged:
            return llm_triton.error(f"{self.engine_name} answered without output_ids", llm_common.ENGINE_ERROR)
        sequences = llm_common.engine_sequences(merged.pop("output_ids"), merged.pop("sequence_length", None))
        texts = llm_common.decode_batch(self.tokenizer, sequences)
        merged["text_output"] = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
        return llm_triton.response({k: v for k, v in merged.items() if k in wanted})

    def _group(self, batch: _Batch | _Rows, indices: list[int], prepared: dict[int, _Prepared]) -> None:
        """One engine request for the prompts of ``indices``; each client answered when its sequences are in."""
        first = prepared[indices[0]]
        expected = {i: int(prepared[i].tensors.get("num_return_sequences", np.ones(1)).reshape(-1)[0])
                    for i in indices}
        parts: dict[int, list[dict[str, Any]]] = {i: [] for i in indices}
        left = set(indices)
        held: Optional[tuple[int, Any]] = None  # the group's last answer waits until the stream is kept
        error, stream = None, None
        try:
            engine_request = pb_utils.InferenceRequest(  # batch_index tells whose prompt each response is
                model_name=self.engine_name, requested_output_names=list(dict.fromkeys([*first.asked, "batch_index"])),
                inputs=[pb_utils.Tensor(k, v) for k, v in llm_prompt.stack_requests(
                    [prepared[i].tensors for i in indices], self.pad_id).items()])
            stream = engine_request.exec(decoupled=True)
            for response in stream:  # read to the end, errors too, so that the stub clears the stream
                failed = llm_triton.error_message(response)
                found = {} if failed is not None else llm_triton.outputs(response)
                error = error or failed
                if not found or error:
                    continue
                index = indices[int(found["batch_index"].reshape(-1)[0])]
                found["batch_index"] = np.zeros((1, 1), dtype=np.int32)  # the client's own batch of one
                parts[index].append(found)
                if len(parts[index]) == expected[index]:
                    answer = self._reply(parts[index], first.wanted)
                    left.discard(index)
                    if left:
                        batch.answer(index, answer)
                    else:
                        held = (index, answer)
        except Exception as exc:  # a failed call: every client of the group still waiting hears of it
            error = llm_triton.failure_text(exc)
            with contextlib.suppress(Exception):  # read to the end all the same (see llm_prompt.StreamKeeper)
                for _ in stream or ():
                    pass
        self._settle(batch, indices, prepared, (stream, held, left, error))

    def _settle(self, batch: _Batch | _Rows, indices: list[int], prepared: dict[int, _Prepared], state: Any) -> None:
        """After a group's stream: keep it, send the held answer, and deal with an error."""
        stream, held, left, error = state
        if stream is not None:  # kept while one of the group's requests is still unanswered
            self.streams.keep(stream, batch.requests[held[0] if held else min(left)])
        if held:
            batch.answer(*held)
        if error and len(left) == len(indices):  # refused as a whole: each alone, so the error finds its request
            for index in indices:
                self.pool.submit(self._single, batch, index, prepared[index])
        elif error:
            for index in left:
                batch.answer(index, llm_triton.error(error))
