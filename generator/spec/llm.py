"""The ``llms:`` entries of the spec: one LLM served as a tokenizer -> engine -> detokenizer pipeline."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from tritonkit.spec.schema import InstanceGroup, ModelName, NonNegative, ParameterValue, Positive, StrictModel

__all__ = ["EngineSpec", "InstanceCounts", "KVCacheSpec", "LLMSpec", "SamplingDefaults"]


class EngineSpec(StrictModel):
    """Which engine generates tokens: TensorRT-LLM's C++ backend, or tritonkit's PyTorch engine."""

    kind: Literal["pytorch", "tensorrt_llm"]
    #: pytorch: a Hugging Face model folder, a GGUF file, or ``pkg:<distribution>/<file>``.
    model: Optional[str] = None
    #: tensorrt_llm: the engine folder as the server sees it (inside the container).
    path: Optional[str] = None
    #: tensorrt_llm: the Hugging Face checkpoint the engine is built from (docker engine-build service).
    checkpoint: Optional[str] = None
    tensor_parallel_size: Positive = 1
    pipeline_parallel_size: Positive = 1
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batching_strategy: Literal["inflight_fused_batching", "inflight_batching", "V1"] = "inflight_fused_batching"
    parameters: dict[str, ParameterValue] = {}

    @model_validator(mode="after")
    def _source_given(self) -> EngineSpec:
        if self.kind == "pytorch" and not self.model:
            raise ValueError("engine kind pytorch needs `model:` (a Hugging Face folder, a GGUF file, "
                             "or pkg:<distribution>/<file>)")
        if self.kind == "tensorrt_llm" and not self.path:
            raise ValueError("engine kind tensorrt_llm needs `path:` (the engine folder inside the container)")
        return self


class KVCacheSpec(StrictModel):
    """Paged KV-cache sizing and prefix reuse."""

    free_gpu_memory_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    enable_reuse: bool = False
    max_tokens: Optional[Positive] = None


class SamplingDefaults(StrictModel):
    """Defaults applied when a request leaves a sampling input out. temperature 0 = greedy."""

    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    top_k: NonNegative = 0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    repetition_penalty: Annotated[float, Field(gt=0.0)] = 1.0
    seed: Optional[NonNegative] = None


class InstanceCounts(StrictModel):
    """How many CPU instances the Python models of the pipeline get."""

    preprocessing: Positive = 1
    postprocessing: Positive = 1
    bls: Positive = 1  # one instance serves many streams: each request runs on its own thread


class LLMSpec(StrictModel):
    """One LLM pipeline: ``<name>`` (ensemble), ``_preprocessing``, ``_engine``, ``_postprocessing``, ``_bls``."""

    name: ModelName
    engine: EngineSpec
    tokenizer: Optional[str] = None
    chat_template: bool = True
    system_prompt: Optional[str] = None
    max_batch_size: Positive = 8
    max_input_len: Positive = 2048
    max_output_len: Positive = 512
    max_queue_delay_microseconds: NonNegative = 1000
    streaming: bool = True
    sampling: SamplingDefaults = SamplingDefaults()
    stop_words: list[str] = []
    kv_cache: KVCacheSpec = KVCacheSpec()
    instance_group: list[InstanceGroup] = []
    instances: InstanceCounts = InstanceCounts()
    trust_remote_code: bool = False
