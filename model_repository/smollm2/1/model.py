"""tritonkit's LLM-API model: TensorRT-LLM's text-in, text-out interface, one Triton model per LLM.

Inputs and outputs are those of NVIDIA's ``all_models/llmapi/tensorrt_llm`` model (``text_input``,
``streaming``, ``sampling_param_*``, ``stop``, ``return_*`` -> ``text_output``, ``finish_reason``, ...),
so a client written for TensorRT-LLM's model works unchanged. What generates the tokens:

- with a ``model.yaml`` in the version folder, ``tensorrt_llm.LLM`` built from it (``llm_api_trtllm.py``,
  inside NGC's -trtllm-python-py3 image), exactly as NVIDIA's model reads that file;
- otherwise tritonkit's PyTorch engine (``llm_generate.py``), configured by ``parameters`` in
  config.pbtxt, on CPU or on the GPU of a ``KIND_GPU`` instance.

In decoupled mode ``execute`` hands the requests to the engine and returns; the engine batches them in
flight with whatever else runs and answers each request on its own response sender: one response per
step when it asked for ``streaming``, one at the end otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import triton_python_backend_utils as pb_utils
import yaml

import llm_common

_FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
#: Inputs the interface declares that this engine cannot honour, and which engine can.
_UNSUPPORTED = {"image_url": "TensorRT-LLM with triton_config.multimodal", "lora_id": "TensorRT-LLM",
                "lora_name": "TensorRT-LLM", "lora_path": "TensorRT-LLM", "lora_ckpt_source": "TensorRT-LLM"}


def _values(request: Any, name: str) -> Optional[list[Any]]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    return [item.item() if hasattr(item, "item") else item for item in tensor.as_numpy().reshape(-1)]


def _scalar(request: Any, name: str, default: Any = None) -> Any:
    values = _values(request, name)
    return values[0] if values else default


def _text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise llm_common.RequestError(
                f"input {name!r} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return str(value)


def model_yaml(model_dir: Path, version: str) -> Optional[Path]:
    """The ``model.yaml`` of TensorRT-LLM's layout, in the version folder or beside config.pbtxt."""
    for path in (model_dir / version / "model.yaml", model_dir / "model.yaml"):
        if path.is_file():
            return path
    return None


@dataclass
class Job:
    """One request, parsed: what to generate and which outputs it asked for."""

    request: Any
    sender: Any
    prompt: str
    max_tokens: int
    streaming: bool
    settings: dict[str, Any]
    stop_words: list[str] = field(default_factory=list)
    exclude_input: bool = True
    #: ``apply_chat_template``: False sends the prompt as it is; None leaves it to the model's parameter.
    chat_template: Optional[bool] = None
    want: frozenset[str] = frozenset()
    arrival_ns: int = field(default_factory=time.time_ns)
    first_scheduled_ns: int = 0
    first_token_ns: int = 0
    #: Filled by the engine: prompt token ids, whether the prompt was sent back, the final response.
    ids: list[int] = field(default_factory=list)
    prompt_sent: bool = False
    response: Any = None
    engine_request: Any = None


class TritonPythonModel:
    """One LLM with TensorRT-LLM's LLM-API interface."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config: Any) -> Any:
        """Take ``max_batch_size`` and ``decoupled`` from model.yaml's ``triton_config``, as NVIDIA's model does."""
        get_dir = getattr(pb_utils, "get_model_dir", None)
        path = model_yaml(Path(get_dir()), "1") if get_dir else None
        if path is not None:
            triton = yaml.safe_load(path.read_text()).get("triton_config", {})
            auto_complete_model_config.set_max_batch_size(int(triton["max_batch_size"]))
            auto_complete_model_config.set_model_transaction_policy({"decoupled": bool(triton["decoupled"])})
        return auto_complete_model_config

    def initialize(self, args: dict[str, Any]) -> None:
        """Build the engine: TensorRT-LLM when model.yaml is there, else the PyTorch engine."""
        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        params = llm_common.read_parameters(config)
        path = model_yaml(Path(args["model_repository"]), args["model_version"])
        if path is not None:
            import llm_api_trtllm

            self.engine: Any = llm_api_trtllm.TrtllmEngine(path, config, args)
        else:
            llm_common.report_step(args["model_name"], "starting the PyTorch engine (importing torch and "
                                                       "transformers)")
            import llm_api_local

            self.engine = llm_api_local.LocalEngine(params, args)
        self.live: dict[str, Job] = {}
        self.lock = threading.Lock()

    # -- requests ------------------------------------------------------------------------------

    def _parse(self, request: Any, sender: Any) -> Job:
        for name, engine in _UNSUPPORTED.items():
            if _values(request, name):
                raise llm_common.RequestError(f"input {name!r} is not supported by tritonkit's PyTorch engine; "
                                              f"{engine} serves it", llm_common.UNSUPPORTED)
        texts = _values(request, "text_input") or []
        if len(texts) != 1:
            raise llm_common.RequestError(f"input 'text_input' must hold exactly one prompt (got {len(texts)})")
        best_of = int(_scalar(request, "sampling_param_best_of", 1))
        if best_of != 1:
            raise llm_common.RequestError(f"input 'sampling_param_best_of' is {best_of}; this engine generates one "
                                          "sequence per request (TensorRT-LLM supports best_of > 1)")
        streaming = bool(_scalar(request, "streaming", False))
        if streaming and not self.decoupled:
            raise llm_common.RequestError("Streaming is only supported in decoupled mode.")
        stops = [_text(v, "sampling_param_stop") for v in _values(request, "sampling_param_stop") or []]
        want = {name for name in ("return_finish_reason", "return_stop_reason", "return_cumulative_logprob",
                                  "sampling_param_return_perf_metrics") if _scalar(request, name, False)}
        settings = {key: _scalar(request, f"sampling_param_{key}") for key in
                    ("temperature", "top_k", "top_p", "frequency_penalty", "presence_penalty", "seed")}
        template = _scalar(request, "apply_chat_template")
        return Job(request=request, sender=sender, prompt=_text(texts[0], "text_input"),
                   max_tokens=int(_scalar(request, "sampling_param_max_tokens", 0) or 0), streaming=streaming,
                   settings={k: v for k, v in settings.items() if v is not None}, stop_words=stops,
                   exclude_input=bool(_scalar(request, "sampling_param_exclude_input_from_output", True)),
                   chat_template=None if template is None else bool(template), want=frozenset(want))

    def _stop(self, request: Any) -> Any:
        """``stop: true`` cancels the live request with the same id; this request gets an empty answer."""
        with self.lock:
            job = self.live.get(request.request_id())
        if job is not None:
            self.engine.cancel(job)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("text_output", np.array([b""], dtype=np.object_))])

    def execute(self, requests: list[Any]) -> Optional[list[Any]]:
        """Queue (decoupled) or generate (not decoupled) every valid request; bad ones get their own error."""
        jobs: list[Job] = []
        responses: list[Any] = [None] * len(requests)
        for slot, request in enumerate(requests):
            sender = request.get_response_sender() if self.decoupled else None
            try:
                if _scalar(request, "stop", False):
                    responses[slot] = self._stop(request)
                else:
                    jobs.append(self.engine.prepare(self._parse(request, sender)))
                    continue
            except (llm_common.RequestError, ValueError, TypeError, OverflowError) as exc:
                responses[slot] = pb_utils.InferenceResponse(output_tensors=[],
                                                             error=pb_utils.TritonError(llm_common.error_text(exc)))
            if sender is not None:
                sender.send(responses[slot], flags=_FINAL)
        for job in jobs:
            self._track(job)
        if jobs:
            self.engine.run(jobs, self._respond)
        if self.decoupled:
            return None
        for job in jobs:
            responses[requests.index(job.request)] = job.response
        return responses

    def _track(self, job: Job) -> None:
        request_id = job.request.request_id()
        if request_id:
            with self.lock:
                self.live[request_id] = job

    # -- responses -----------------------------------------------------------------------------

    def _respond(self, job: Job, outputs: Optional[dict[str, Any]], final: bool, error: Optional[str] = None) -> None:
        """Send (decoupled) or keep (not decoupled) one response of ``job``."""
        if error is not None:
            response = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(error))
        elif outputs is not None:
            response = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])
        else:
            response = None
        if final:
            with self.lock:
                self.live.pop(job.request.request_id() or "", None)
        if job.sender is None:
            if final:
                job.response = response
            return
        try:
            if response is None:
                job.sender.send(flags=_FINAL)
            else:
                job.sender.send(response, flags=_FINAL if final else 0)
        except pb_utils.TritonModelException as exc:
            # The client went away: nothing is waiting for this response.
            pb_utils.Logger.log_verbose(f"response not sent: {exc}")

    def finalize(self) -> None:
        """Stop the engine's thread."""
        stop = getattr(self.engine, "stop", None)
        if stop is not None:
            stop()
