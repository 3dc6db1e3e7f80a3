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
from pathlib import Path
from typing import Any, Optional

import numpy as np
import triton_python_backend_utils as pb_utils
import yaml

import llm_common
import llm_request
import llm_triton

#: One parsed request (``llm_request.parse_api`` makes it from the request's arrays).
Job = llm_request.Job


def model_yaml(model_dir: Path, version: str) -> Optional[Path]:
    """The ``model.yaml`` of TensorRT-LLM's layout, in the version folder or beside config.pbtxt."""
    for path in (model_dir / version / "model.yaml", model_dir / "model.yaml"):
        if path.is_file():
            return path
    return None


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
        #: vLLM's metrics, from tritonkit's PyTorch engine only.
        self.metrics: Optional[llm_triton.EngineMetrics] = None
        if path is not None:
            import llm_api_trtllm

            self.engine: Any = llm_api_trtllm.TrtllmEngine(path, config, args)
        else:
            llm_common.report_step(args["model_name"], "starting the PyTorch engine (importing torch and "
                                                       "transformers)")
            import llm_api_local

            self.engine = llm_api_local.LocalEngine(params, args)
            self.metrics = llm_triton.engine_metrics(self.engine.scheduler.stats, args, params)
        #: Live requests by Triton request id, for the ``stop`` input.
        self.live = llm_triton.LiveRequests()

    # -- requests ------------------------------------------------------------------------------

    def _stop(self, request: Any) -> Any:
        """``stop: true`` cancels the live request with the same id; this request gets an empty answer."""
        self.live.cancel(request.request_id(), self.engine.cancel)
        return llm_triton.response({"text_output": np.array([b""], dtype=np.object_)})

    def execute(self, requests: list[Any]) -> Optional[list[Any]]:
        """Queue (decoupled) or generate (not decoupled) every valid request; bad ones get their own error."""
        jobs: list[Job] = []
        responses: list[Any] = [None] * len(requests)
        for slot, request in enumerate(requests):
            sender = request.get_response_sender() if self.decoupled else None
            try:
                inputs = llm_triton.inputs(request)
                if llm_request.is_stop(inputs):
                    responses[slot] = self._stop(request)
                else:
                    job = llm_request.parse_api(inputs, self.decoupled, request, sender)
                    jobs.append(self.engine.prepare(job))
                    continue
            except (llm_common.RequestError, ValueError, TypeError, OverflowError) as exc:
                responses[slot] = llm_triton.error(exc)
            if sender is not None:
                llm_triton.send(sender, responses[slot])
        for job in jobs:
            self.live.add(job.request.request_id(), job)
        if jobs:
            self.engine.run(jobs, self._respond)
        if self.decoupled:
            return None
        for job in jobs:
            responses[requests.index(job.request)] = job.response
        return responses

    # -- responses -----------------------------------------------------------------------------

    def _respond(self, job: Job, outputs: Optional[dict[str, Any]], final: bool, error: Optional[str] = None) -> None:
        """Send (decoupled) or keep (not decoupled) one response of ``job``."""
        if error is not None:
            response = llm_triton.error(error)
        elif outputs is not None:
            response = llm_triton.response(outputs)
        else:
            response = None
        if final:
            self.live.discard(job.request.request_id(), job)
        if job.sender is None:
            if final:
                job.response = response
            return
        llm_triton.send(job.sender, response, final)

    def finalize(self) -> None:
        """Stop the engine's thread."""
        stop = getattr(self.engine, "stop", None)
        if stop is not None:
            stop()
        if self.metrics is not None:
            self.metrics.stop()
