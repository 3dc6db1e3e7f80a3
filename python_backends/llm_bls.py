"""The streaming front of an LLM pipeline (decoupled): preprocessing, the engine's stream, incremental text.

Preprocessing runs in this process (``llm_prompt``, the same code as ``<name>_preprocessing``), so a
request costs one hop, to the engine.

Each request is served on a worker thread, so one instance keeps many streams open at once and
the engine can batch them (upstream's BLS serves one request per instance at a time). Every client
input reaches the model that reads it (routes in the ``preprocessing_inputs`` and ``engine_inputs``
parameters, written by tritonkit from its contract). Text is detokenised incrementally over each
whole sequence, so streamed deltas keep their leading spaces and never split a UTF-8 character;
every engine output but the ids (log probs, ``batch_index``, ``sequence_index``, ``finish_reason``,
metrics) goes to the client as the engine sent it. A request carrying a batch of prompts goes to the
engine as one request with that batch, and each prompt's responses come back with its ``batch_index``, as
from NVIDIA's BLS. When the client cancels, the BLS sends the engine ``stop`` with the same request id, as
TensorRT-LLM's backend expects.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common
import llm_prompt
import llm_request
import llm_triton


class TritonPythonModel:
    """The ``<name>_bls`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read the engine's name, the routes of client inputs, and load the tokenizer and preprocessing's limits."""
        config = json.loads(args["model_config"])
        params = llm_common.read_parameters(config)
        self.engine_name = params["engine_model"]
        self.engine_decoupled = llm_common.parse_bool(params.get("engine_decoupled", "true"), True)
        self.outputs = [t["name"] for t in config.get("output", [])]
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])
        self.router = llm_prompt.Router(params, self.tokenizer, "BLS")
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrency") or 8),
                                       thread_name_prefix="tritonkit-bls")
        self.streams = llm_prompt.StreamKeeper()

    def execute(self, requests: list[Any]) -> None:
        """Hand each request to a worker thread; responses go out through its response sender."""
        for request in requests:
            self.pool.submit(self._serve, request, request.get_response_sender())

    def finalize(self) -> None:
        """Wait for the streams still running."""
        self.pool.shutdown(wait=True)

    def _serve(self, request: Any, sender: Any) -> None:
        try:
            _Stream(self, request, sender).run()
        except Exception as exc:  # any failure must reach this client, and only it (if it is still there)
            text = str(exc) if isinstance(exc, llm_common.RequestError) else llm_triton.failure_text(exc)
            llm_triton.send(sender, llm_triton.error(text))

    def stop_engine(self, request_id: str, client_request: Any) -> None:
        """Stop the engine's request ``request_id``: TensorRT-LLM's ``stop`` input, which both engines read."""
        inputs = [pb_utils.Tensor("stop", np.array([[True]])),
                  pb_utils.Tensor("input_lengths", np.array([[1]], dtype=np.int32)),
                  pb_utils.Tensor("request_output_len", np.array([[1]], dtype=np.int32))]
        stop = pb_utils.InferenceRequest(model_name=self.engine_name, request_id=request_id, inputs=inputs,
                                         requested_output_names=["output_ids"])
        stream = stop.exec(decoupled=True)
        for _ in stream:
            pass
        self.streams.keep(stream, client_request)


class _Stream:
    """One client request: generate, stream text deltas per sequence, send the final response."""

    def __init__(self, model: TritonPythonModel, request: Any, sender: Any) -> None:
        self.model = model
        self.request = request
        self.sender = sender
        self.inputs = llm_triton.inputs(request)  # read once: the routes look up some 70 names per request
        self.stream = llm_request.stream_flag(self.inputs)
        self.text = llm_request.TextOutput(model.tokenizer, self.stream)
        self.cancelled = False
        self.pending: Optional[Any] = None
        self.request_id = request.request_id() or uuid.uuid4().hex

    def engine_tensors(self) -> dict[str, np.ndarray[Any, Any]]:
        """The engine request: each prompt of the client's batch tokenised, then stacked as one batch.

        The engine answers each prompt on its own, with its ``batch_index``, as NVIDIA's BLS expects.
        """
        stream = self.stream and self.model.engine_decoupled
        rows = [self.model.router.engine_tensors(row, stream) for row in llm_request.split_prompts(self.inputs)]
        return llm_prompt.stack_requests(rows, self.model.router.pre.pad_id)

    def run(self) -> None:
        engine_request = pb_utils.InferenceRequest(
            model_name=self.model.engine_name, request_id=self.request_id,
            inputs=[pb_utils.Tensor(name, value) for name, value in self.engine_tensors().items()],
            requested_output_names=[n for n in self.model.outputs if n != "text_output"] + ["output_ids",
                                                                                          "sequence_length"])
        responses = (engine_request.exec(decoupled=True) if self.model.engine_decoupled
                     else [engine_request.exec()])
        failure: Optional[Exception] = None
        for response in responses:  # read to the end whatever happens, so that the stub clears the stream
            if failure is None and not self.cancelled:
                try:
                    self._on_response(response)
                except Exception as exc:  # raised once the stream is read (to this client only)
                    failure = exc
        self.model.streams.keep(responses, self.request)  # not dropped here: see llm_prompt.StreamKeeper
        if failure is not None:
            raise failure
        if self.pending is not None:
            llm_triton.send(self.sender, self.pending)  # a cancelled client may be gone
        elif not self.cancelled:
            llm_triton.send(self.sender)

    def _send(self, response: Any) -> None:
        """Send the response held back, and hold this one: the last one goes out with the final flag."""
        if self.pending is not None and not llm_triton.send(self.sender, self.pending, final=False):
            self._cancel()  # the client has gone away: stop generating for it
            response = None
        self.pending = response

    def _cancel(self) -> None:
        self.cancelled = True
        self.model.stop_engine(self.request_id, self.request)

    def _on_response(self, response: Any) -> None:
        failed = llm_triton.error_message(response)
        if failed is not None:
            raise llm_common.RequestError(failed)
        # A whole (not streamed) answer comes as one response: nothing is left to stop when it arrives.
        if self.stream and self.model.streams.is_cancelled(self.request):
            self._cancel()
            return
        outputs = self.text.outputs(llm_triton.outputs(response))
        if outputs is not None:
            self._send(llm_triton.response(outputs))
