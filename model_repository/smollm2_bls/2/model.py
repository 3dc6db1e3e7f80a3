"""The streaming front of an LLM pipeline (decoupled): preprocessing, the engine's stream, incremental text.

Each request is served on a worker thread, so one instance keeps many streams open at once and
the engine can batch them (upstream's BLS serves one request per instance at a time). Text is
detokenised incrementally over the whole sequence, so streamed deltas keep their leading spaces
and never split a UTF-8 character. The last response carries ``finish_reason``. When the client
cancels, the engine is told to stop that request.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common

_FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
_PRE_OUTPUTS = ["INPUT_ID", "REQUEST_INPUT_LEN", "REQUEST_OUTPUT_LEN", "STOP_WORDS_IDS", "BAD_WORDS_IDS",
                "OUT_END_ID", "OUT_PAD_ID"]
#: Client input -> (engine input, numpy type) for the sampling settings passed straight through.
_PASSED = {"temperature": ("temperature", np.float32), "top_k": ("runtime_top_k", np.int32),
           "top_p": ("runtime_top_p", np.float32), "seed": ("seed", np.uint64)}


def _input(request: Any, name: str) -> Optional[np.ndarray[Any, Any]]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _text_response(text: str, reason: Optional[str] = None) -> Any:
    tensors = [pb_utils.Tensor("text_output", np.array([[text.encode("utf-8")]], dtype=np.object_))]
    if reason is not None:
        tensors.append(pb_utils.Tensor("finish_reason", np.array([[reason.encode()]], dtype=np.object_)))
    return pb_utils.InferenceResponse(output_tensors=tensors)


def _tokens(response: Any) -> list[int]:
    ids = pb_utils.get_output_tensor_by_name(response, "output_ids")
    if ids is None:
        return []
    lengths = pb_utils.get_output_tensor_by_name(response, "sequence_length")
    flat = ids.as_numpy().reshape(-1)
    count = int(lengths.as_numpy().reshape(-1)[0]) if lengths is not None else flat.size
    return [int(t) for t in flat[:count]]


class TritonPythonModel:
    """The ``<name>_bls`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read the names of the pipeline's models and load the tokenizer for detokenisation."""
        params = llm_common.read_parameters(json.loads(args["model_config"]))
        self.pre_name = params["preprocessing_model"]
        self.engine_name = params["engine_model"]
        self.engine_kind = params.get("engine_kind", "pytorch")
        self.engine_decoupled = llm_common.parse_bool(params.get("engine_decoupled", "true"), True)
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])
        self.cancel_dir = llm_common.cancel_dir(self.engine_name)
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrency") or 8),
                                       thread_name_prefix="tritonkit-bls")

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
        except Exception as exc:  # any failure must reach this client, and only it
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):  # the client may be gone; nothing left to tell then
                sender.send(pb_utils.InferenceResponse(error=error), flags=_FINAL)

    def preprocess(self, request: Any) -> dict[str, np.ndarray[Any, Any]]:
        """Call ``<name>_preprocessing`` for one request; raise its error message as RequestError."""
        text = _input(request, "text_input")
        max_tokens = _input(request, "max_tokens")
        if text is None or max_tokens is None:
            raise llm_common.RequestError("inputs 'text_input' and 'max_tokens' are required")
        inputs = [pb_utils.Tensor("QUERY", text.reshape(1, 1)),
                  pb_utils.Tensor("REQUEST_OUTPUT_LEN", max_tokens.astype(np.int32).reshape(1, 1))]
        for client, step in (("stop_words", "STOP_WORDS_DICT"), ("end_id", "END_ID"), ("pad_id", "PAD_ID")):
            value = _input(request, client)
            if value is not None:
                inputs.append(pb_utils.Tensor(step, value.reshape(1, -1)))
        response = pb_utils.InferenceRequest(model_name=self.pre_name, inputs=inputs,
                                             requested_output_names=_PRE_OUTPUTS).exec()
        if response.has_error():
            raise llm_common.RequestError(response.error().message())
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in _PRE_OUTPUTS}

    def engine_inputs(self, request: Any, pre: dict[str, np.ndarray[Any, Any]], stream: bool) -> list[Any]:
        """The engine request: TensorRT-LLM's tensor names, batch of one."""
        length = int(pre["REQUEST_INPUT_LEN"].reshape(-1)[0])
        tensors = [
            pb_utils.Tensor("input_ids", pre["INPUT_ID"].reshape(1, -1)[:, :length]),
            pb_utils.Tensor("input_lengths", pre["REQUEST_INPUT_LEN"].reshape(1, 1)),
            pb_utils.Tensor("request_output_len", pre["REQUEST_OUTPUT_LEN"].reshape(1, 1)),
            pb_utils.Tensor("end_id", pre["OUT_END_ID"].reshape(1, 1)),
            pb_utils.Tensor("pad_id", pre["OUT_PAD_ID"].reshape(1, 1)),
            pb_utils.Tensor("streaming", np.array([[stream]], dtype=np.bool_)),
        ]
        for name in ("STOP_WORDS_IDS", "BAD_WORDS_IDS"):
            if pre[name].shape[-1] > 0:
                engine_name = "stop_words_list" if name == "STOP_WORDS_IDS" else "bad_words_list"
                tensors.append(pb_utils.Tensor(engine_name, pre[name].reshape(1, 2, -1)))
        for client, (engine_name, dtype) in _PASSED.items():
            value = _input(request, client)
            if value is not None:
                tensors.append(pb_utils.Tensor(engine_name, value.astype(dtype).reshape(1, 1)))
        return tensors

    def cancel_engine(self, request_id: str) -> None:
        """Ask the engine to stop generating for ``request_id``."""
        if self.engine_kind == "tensorrt_llm":
            # TensorRT-LLM's backend cancels the request that has the same id when sent stop=true.
            stop = pb_utils.InferenceRequest(model_name=self.engine_name, request_id=request_id,
                                             inputs=[pb_utils.Tensor("stop", np.array([[True]]))],
                                             requested_output_names=["output_ids"])
            for _ in stop.exec(decoupled=True):
                pass
            return
        self.cancel_dir.mkdir(parents=True, exist_ok=True)
        (self.cancel_dir / request_id).write_text("cancel\n")


class _Stream:
    """One client request: generate, stream text deltas, send the final response."""

    def __init__(self, model: TritonPythonModel, request: Any, sender: Any) -> None:
        self.model = model
        self.request = request
        self.sender = sender
        stream = _input(request, "stream")
        self.stream = bool(stream.reshape(-1)[0]) if stream is not None and stream.size else True
        self.decoder = llm_common.IncrementalDecoder(model.tokenizer)
        self.cancelled = False

    def run(self) -> None:
        try:
            pre = self.model.preprocess(self.request)
        except llm_common.RequestError as exc:
            self.sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))), flags=_FINAL)
            return
        request_id = uuid.uuid4().hex
        engine_request = pb_utils.InferenceRequest(
            model_name=self.model.engine_name, request_id=request_id,
            inputs=self.model.engine_inputs(self.request, pre, self.stream and self.model.engine_decoupled),
            requested_output_names=["output_ids", "sequence_length"])
        responses = (engine_request.exec(decoupled=True) if self.model.engine_decoupled
                     else [engine_request.exec()])
        for response in responses:
            if response.has_error():
                self.sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(response.error().message())),
                                 flags=_FINAL)
                return
            self._on_tokens(_tokens(response), request_id)
        self._finish(int(pre["REQUEST_OUTPUT_LEN"].reshape(-1)[0]))

    def _on_tokens(self, tokens: list[int], request_id: str) -> None:
        if self.cancelled:
            return
        if self.request.is_cancelled():
            self.cancelled = True
            self.model.cancel_engine(request_id)
            return
        delta = self.decoder.push(tokens)
        if delta and self.stream:
            self.sender.send(_text_response(delta))

    def _finish(self, output_len: int) -> None:
        reason = "length" if len(self.decoder.ids) >= output_len else "stop"
        reason = "cancelled" if self.cancelled else reason
        rest = self.decoder.flush()
        text = rest if self.stream else self.decoder.emitted
        try:
            self.sender.send(_text_response(text, reason), flags=_FINAL)
        except pb_utils.TritonModelException:
            if not self.cancelled:
                raise
