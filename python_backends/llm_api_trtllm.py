"""TensorRT-LLM behind tritonkit's LLM-API model: ``tensorrt_llm.LLM`` built from ``model.yaml``.

Copied next to ``llm_api.py``; imported only when the version folder holds a ``model.yaml``, inside
NGC's -trtllm-python-py3 image. It reads the file as NVIDIA's model does: every key but
``triton_config`` goes to ``LLM(...)``; ``gpu_device_ids`` (one ``;`` group per instance) picks this
instance's GPUs. Requests run on one asyncio loop through ``generate_async``, so TensorRT-LLM
batches them in flight. Not run in tritonkit's CI (TensorRT-LLM does not install there): see
docs/llm.md for what was and was not run.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

import llm_common

Respond = Callable[..., None]
_SAMPLING = ("temperature", "top_k", "top_p", "frequency_penalty", "presence_penalty", "seed")


def _instance_gpus(config: dict[str, Any], instance_name: str) -> list[str]:
    groups = ((config.get("parameters") or {}).get("gpu_device_ids") or {}).get("string_value", "")
    if not groups:
        return []
    index = int(instance_name.rsplit("_", 1)[-1]) if instance_name.rsplit("_", 1)[-1].isdigit() else 0
    chosen = groups.split(";")
    if index >= len(chosen):
        raise ValueError(f"gpu_device_ids has {len(chosen)} group(s) but this is instance {index}")
    return [g.strip() for g in chosen[index].split(",") if g.strip()]


class TrtllmEngine:
    """One ``tensorrt_llm.LLM`` and the event loop its requests run on."""

    def __init__(self, path: Path, config: dict[str, Any], args: dict[str, Any]) -> None:
        settings = yaml.safe_load(path.read_text())
        settings.pop("triton_config", None)
        gpus = _instance_gpus(config, args.get("model_instance_name", ""))
        if gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            settings.setdefault("gpus_per_node", len(gpus))
        from tensorrt_llm import LLM, SamplingParams

        self.sampling_params = SamplingParams
        self.llm = LLM(**settings)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="trtllm-loop", daemon=True).start()
        self.futures: dict[int, Any] = {}

    def prepare(self, job: Any) -> Any:
        """Nothing to check before TensorRT-LLM does: it reports its own limits."""
        return job

    def cancel(self, job: Any) -> None:
        """Abort ``job``'s generation."""
        future = self.futures.get(id(job))
        if future is not None:
            future.abort()

    def run(self, jobs: list[Any], respond: Respond) -> None:
        """Hand every job to the loop; TensorRT-LLM batches them with whatever else is running."""
        waits = [asyncio.run_coroutine_threadsafe(self._one(job, respond), self.loop) for job in jobs]
        if jobs and jobs[0].sender is None:
            for wait in waits:
                wait.result()

    async def _one(self, job: Any, respond: Respond) -> None:
        kwargs = {k: v for k, v in job.settings.items() if k in _SAMPLING}
        params = self.sampling_params(max_tokens=job.max_tokens or None, stop=job.stop_words or None,
                                      exclude_input_from_output=job.exclude_input,
                                      return_perf_metrics="sampling_param_return_perf_metrics" in job.want, **kwargs)
        try:
            result = self.llm.generate_async(job.prompt, sampling_params=params, streaming=job.streaming)
            self.futures[id(job)] = result
            async for output in result:
                piece = output.outputs[0]
                text = piece.text_diff if job.streaming else piece.text
                if output.finished:
                    respond(job, self._final(job, piece, text), True)
                elif text:
                    respond(job, {"text_output": np.array([text.encode()], dtype=np.object_)}, False)
        except Exception as exc:
            respond(job, None, True, error=llm_common.error_text(exc))
        finally:
            self.futures.pop(id(job), None)

    @staticmethod
    def _final(job: Any, piece: Any, text: str) -> dict[str, Any]:
        outputs: dict[str, Any] = {"text_output": np.array([text.encode()], dtype=np.object_)}
        if "return_finish_reason" in job.want:
            outputs["finish_reason"] = np.array([str(piece.finish_reason or "").encode()], dtype=np.object_)
        if "return_stop_reason" in job.want:
            outputs["stop_reason"] = np.array([str(piece.stop_reason or "").encode()], dtype=np.object_)
        if "return_cumulative_logprob" in job.want and piece.cumulative_logprob is not None:
            outputs["cumulative_logprob"] = np.array([piece.cumulative_logprob], dtype=np.float32)
        return outputs
