"""tritonkit's PyTorch engine: token ids in, token ids out, behind TensorRT-LLM's tensor contract.

Requests go to the in-flight scheduler (``llm_scheduler.py``): they join the running batch at the
next step and leave it when done. In decoupled mode a request with ``streaming`` set gets one
response per step; the others get one response when they finish. Configured by ``parameters`` in
config.pbtxt (written by tritonkit).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common
import llm_generate
import llm_scheduler

_FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _scalar(request: Any, name: str, default: Any = None) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    array = tensor.as_numpy().reshape(-1)
    if array.size == 0:
        return default
    return array[0].item()


def _error_response(message: str) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def _ids_response(tokens: list[int]) -> Any:
    ids = np.array(tokens, dtype=np.int32).reshape(1, 1, len(tokens))
    length = np.array([[len(tokens)]], dtype=np.int32)
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("output_ids", ids),
                                                      pb_utils.Tensor("sequence_length", length)])


class TritonPythonModel:
    """The ``<name>_engine`` model of an LLM pipeline with ``engine.kind: pytorch``."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the model (through the GGUF conversion cache) and read the sampling defaults."""
        config = json.loads(args["model_config"])
        params = llm_common.read_parameters(config)
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        device_setting = "cuda" if args.get("model_instance_kind") == "GPU" else params.get("device", "auto")
        device = llm_generate.pick_device(device_setting, device_id)
        if device.type == "cpu":
            llm_generate.set_threads(params.get("num_threads", ""))
        dtype = llm_generate.pick_dtype(params.get("dtype", "auto"), device)
        source = llm_common.resolve_source(params["model"], args["model_repository"])
        trust = llm_common.parse_bool(params.get("trust_remote_code", ""))
        self.model = llm_generate.load_model(source, device, dtype, trust)
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.default_end_ids = [int(params["end_id"])] if params.get("end_id") else []
        self.default_pad_id = int(params.get("pad_id") or 0)
        self.defaults = {
            "temperature": float(params.get("temperature") or 0.0),
            "top_k": int(params.get("top_k") or 0),
            "top_p": float(params.get("top_p") or 1.0),
            "repetition_penalty": float(params.get("repetition_penalty") or 1.0),
            "seed": int(params["seed"]) if params.get("seed") else None,
        }
        self.cancel_dir = llm_common.cancel_dir(args["model_name"])
        self.cancel_dir.mkdir(parents=True, exist_ok=True)
        max_batch = int(config.get("max_batch_size") or 8)
        budget = int(params.get("kv_cache_tokens") or 0) or max_batch * self.max_context_or(4096)
        self.scheduler = llm_scheduler.Engine(
            self.model, self.default_pad_id, max_batch=max_batch, num_blocks=-(-budget // 16), block_tokens=16,
            prefill_chunk=int(params.get("prefill_chunk") or 256), max_queue=int(params.get("max_queue") or 256),
            prefix_cache=llm_common.parse_bool(params.get("enable_reuse", "")))

    def max_context_or(self, default: int) -> int:
        """The model's context length, or ``default`` when its config does not say."""
        return self.max_context or default

    def _read_prompt(self, request: Any) -> list[int]:
        tensor = pb_utils.get_input_tensor_by_name(request, "input_ids")
        if tensor is None:
            raise llm_common.RequestError("input 'input_ids' is missing")
        ids = tensor.as_numpy()
        if ids.shape[0] != 1:
            raise llm_common.RequestError(f"send one sequence per request (got a batch of {ids.shape[0]})")
        length = _scalar(request, "input_lengths", ids.shape[-1])
        prompt = [int(t) for t in ids.reshape(-1)[: int(length)]]
        if not prompt:
            raise llm_common.RequestError("the prompt is empty (input_lengths is 0)")
        return prompt

    def _row(self, request: Any) -> llm_generate.Row:
        prompt = self._read_prompt(request)
        wanted = _scalar(request, "request_output_len")
        if wanted is None or int(wanted) <= 0:
            raise llm_common.RequestError(f"request_output_len must be at least 1 (got {wanted})")
        max_new = int(wanted)
        if self.max_context:
            if len(prompt) >= self.max_context:
                raise llm_common.RequestError(
                    f"the prompt has {len(prompt)} tokens; the model's context is {self.max_context}")
            max_new = min(max_new, self.max_context - len(prompt))
        end_id = _scalar(request, "end_id")
        stop = pb_utils.get_input_tensor_by_name(request, "stop_words_list")
        bad = pb_utils.get_input_tensor_by_name(request, "bad_words_list")
        return llm_generate.Row(
            prompt=prompt, max_new_tokens=max_new,
            end_ids=[int(end_id)] if end_id is not None else list(self.default_end_ids),
            stop_words=llm_common.list_to_words(stop.as_numpy() if stop is not None else None),
            bad_words=llm_common.list_to_words(bad.as_numpy() if bad is not None else None),
            temperature=float(_scalar(request, "temperature", self.defaults["temperature"])),
            top_k=int(_scalar(request, "runtime_top_k", self.defaults["top_k"])),
            top_p=float(_scalar(request, "runtime_top_p", self.defaults["top_p"])),
            repetition_penalty=float(_scalar(request, "repetition_penalty", self.defaults["repetition_penalty"])),
            seed=_scalar(request, "seed", self.defaults["seed"]),
        )

    def execute(self, requests: list[Any]) -> Optional[list[Any]]:
        """Hand every valid request to the in-flight scheduler; malformed ones get an error of their own.

        Decoupled: responses go out on each request's sender as tokens come, and ``execute`` returns at
        once. Otherwise ``execute`` waits for its requests and returns their responses.
        """
        responses: list[Any] = [None] * len(requests)
        streams: list[_Stream] = []
        for slot, request in enumerate(requests):
            try:
                stream = _Stream(self, request, slot, responses)
                self.scheduler.submit(stream.request)
                streams.append(stream)
            except (llm_common.RequestError, ValueError, TypeError, llm_scheduler.QueueFullError) as exc:
                responses[slot] = _error_response(str(exc))
                if self.decoupled:
                    request.get_response_sender().send(responses[slot], flags=_FINAL)
        if self.decoupled:
            return None
        for stream in streams:
            stream.request.done.wait()
        return responses

    def finalize(self) -> None:
        """Stop the scheduler's thread."""
        self.scheduler.stop()


class _Stream:
    """Delivers one request's tokens: one response per step when streaming, else one at the end."""

    def __init__(self, engine: TritonPythonModel, request: Any, slot: int, responses: list[Any]) -> None:
        self.engine, self.slot, self.responses = engine, slot, responses
        self.sender = request.get_response_sender() if engine.decoupled else None
        self.streaming = engine.decoupled and bool(_scalar(request, "streaming", False))
        self.request_id = request.request_id()
        self.request = llm_scheduler.Request(engine._row(request), self.on_tokens)
        self.steps = 0

    def _cancel_requested(self) -> bool:
        self.steps += 1
        if self.request_id:
            marker = self.engine.cancel_dir / self.request_id
            if marker.exists():
                marker.unlink(missing_ok=True)
                return True
        return self.sender is not None and self.steps % 4 == 0 and self.sender.is_cancelled()

    def on_tokens(self, request: Any, new_tokens: list[int]) -> None:
        row = request.row
        done = row.finish_reason is not None
        if not done and self._cancel_requested():
            self.engine.scheduler.cancel(request)
        if request.error:
            response: Any = _error_response(request.error)
        elif self.streaming:
            response = _ids_response(new_tokens) if new_tokens else None
        else:
            response = _ids_response(row.tokens) if done else None
        if self.sender is None:
            if done:
                self.responses[self.slot] = response
            return
        if response is None and not done:
            return
        try:
            if response is None:
                self.sender.send(flags=_FINAL)
            else:
                self.sender.send(response, flags=_FINAL if done else 0)
        except pb_utils.TritonModelException as exc:
            # The client went away (cancelled stream): nothing is waiting for this response.
            pb_utils.Logger.log_verbose(f"response not sent: {exc}")
