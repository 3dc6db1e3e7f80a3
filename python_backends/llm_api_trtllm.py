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
import json
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
        """TensorRT-LLM checks its own limits; what its ``SamplingParams`` cannot take is refused here."""
        if job.logit_bias:
            raise llm_common.RequestError("input 'sampling_param_logit_bias' is not supported by TensorRT-LLM's "
                                          "LLM API (tritonkit's PyTorch engine serves it)", llm_common.UNSUPPORTED)
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

    def _params(self, job: Any) -> Any:
        """The request's ``SamplingParams``; its guided-decoding input becomes ``GuidedDecodingParams``.

        The grammar backend is the LLM's (``guided_decoding_backend`` in model.yaml, which tritonkit writes).
        """
        kwargs: dict[str, Any] = {k: v for k, v in job.settings.items() if k in _SAMPLING}
        if job.guide is not None:
            from tensorrt_llm.sampling_params import GuidedDecodingParams

            kind, text = job.guide
            field = {"json_schema": "json", "json_object": "json_object", "regex": "regex", "grammar": "grammar"}[kind]
            kwargs["guided_decoding"] = GuidedDecodingParams(**{field: True if kind == "json_object" else text})
        if job.logprobs is not None:
            kwargs["logprobs"] = job.logprobs
        return self.sampling_params(max_tokens=job.max_tokens or None, stop=job.stop_words or None, n=job.n,
                                    exclude_input_from_output=job.exclude_input,
                                    return_perf_metrics="sampling_param_return_perf_metrics" in job.want, **kwargs)

    async def _one(self, job: Any, respond: Respond) -> None:
        try:
            result = self.llm.generate_async(job.prompt, sampling_params=self._params(job), streaming=job.streaming)
            self.futures[id(job)] = result
            async for output in result:
                pieces = output.outputs
                texts = [piece.text_diff if job.streaming else piece.text for piece in pieces]
                if output.finished:
                    respond(job, self._final(job, pieces, texts), True)
                elif any(texts):
                    respond(job, {"text_output": _strings(texts)}, False)
        except Exception as exc:
            respond(job, None, True, error=llm_common.error_text(exc))
        finally:
            self.futures.pop(id(job), None)

    def _final(self, job: Any, pieces: list[Any], texts: list[str]) -> dict[str, Any]:
        outputs: dict[str, Any] = {"text_output": _strings(texts)}
        if "return_finish_reason" in job.want:
            outputs["finish_reason"] = _strings([str(p.finish_reason or "") for p in pieces])
        if "return_stop_reason" in job.want:
            outputs["stop_reason"] = _strings([str(p.stop_reason or "") for p in pieces])
        if "return_cumulative_logprob" in job.want and all(p.cumulative_logprob is not None for p in pieces):
            outputs["cumulative_logprob"] = np.array([p.cumulative_logprob for p in pieces], dtype=np.float32)
        if job.logprobs is not None:
            outputs["logprobs"] = _strings([self._logprobs(p, job.logprobs) for p in pieces])
        return outputs

    def _logprobs(self, piece: Any, top: int) -> str:
        """One output's per-token log probabilities as OpenAI's entries (TensorRT-LLM gives id -> Logprob per step)."""
        texts = getattr(self, "_texts", None)
        if texts is None:
            texts = self._texts = llm_common.TokenTexts(self.llm.tokenizer)
        entries = []
        for token, step in zip(piece.token_ids, piece.logprobs or []):
            ranked = sorted(step.items(), key=lambda item: getattr(item[1], "rank", 0) or 0)
            chosen = step.get(token)
            entry = texts.entry(token, getattr(chosen, "logprob", chosen) if chosen is not None else float("-inf"))
            entry["top_logprobs"] = [texts.entry(t, getattr(lp, "logprob", lp)) for t, lp in ranked[:top]]
            entries.append(entry)
        return json.dumps(entries, separators=(",", ":"))


def _strings(texts: list[str]) -> Any:
    return np.array([t.encode() for t in texts], dtype=np.object_)
