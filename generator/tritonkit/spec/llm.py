"""The ``llms:`` entries of the spec: one LLM served as a tokenizer -> engine -> detokenizer pipeline."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator

from tritonkit.spec.schema import (
    InstanceGroup,
    ModelName,
    NonNegative,
    ParameterValue,
    Positive,
    StrictModel,
    VersionPolicy,
)

__all__ = ["EngineSpec", "InstanceCounts", "KVCacheSpec", "LLMSpec", "SamplingDefaults"]


class EngineSpec(StrictModel):
    """Which engine generates tokens.

    ``pytorch``: tritonkit's PyTorch engine (any layout, CPU or GPU); ``tensorrt_llm_api``: TensorRT-LLM's
    LLM API (``tensorrt_llm.LLM``) in the LLM-API layout; ``tensorrt_llm``: TensorRT-LLM's C++ engine
    backend (ensemble layout, NGC images up to 26.07); ``vllm``: Triton's vLLM backend (its own
    one-model layout, NGC's -vllm-python-py3 images).
    """

    kind: Literal["pytorch", "tensorrt_llm_api", "tensorrt_llm", "vllm"]
    #: pytorch: a Hugging Face model folder, a GGUF file, ``pkg:<distribution>/<file>``, or
    #: ``hf:<org>/<name>``, a Hugging Face hub id (the engine loads it into the Hugging Face cache);
    #: tensorrt_llm_api: a Hugging Face id or a path as the server sees it (ModelOpt FP8/NVFP4/AWQ
    #: checkpoints load as they are).
    model: Optional[str] = None
    #: tensorrt_llm: the engine folder as the server sees it (inside the container).
    path: Optional[str] = None
    #: tensorrt_llm: the Hugging Face checkpoint the engine is built from (docker engine-build service).
    checkpoint: Optional[str] = None
    tensor_parallel_size: Positive = 1
    pipeline_parallel_size: Positive = 1
    #: tensorrt_llm_api: experts are split over this many ranks (MoE models).
    moe_expert_parallel_size: Optional[Positive] = None
    #: tensorrt_llm_api: tokens in one scheduled batch (prefill chunks included).
    max_num_tokens: Optional[Positive] = None
    #: tensorrt_llm_api: any other ``tensorrt_llm.LLM()`` argument, written into model.yaml as given;
    #: vllm: any other vLLM engine argument (``AsyncEngineArgs``), written into model.json.
    llm_args: dict[str, Any] = {}
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batching_strategy: Literal["inflight_fused_batching", "inflight_batching", "V1"] = "inflight_fused_batching"
    parameters: dict[str, ParameterValue] = {}

    @model_validator(mode="after")
    def _source_given(self) -> EngineSpec:
        if self.kind == "pytorch" and not self.model:
            raise ValueError("engine kind pytorch needs `model:` (a Hugging Face folder, a GGUF file, "
                             "pkg:<distribution>/<file>, or hf:<org>/<name> for a Hugging Face hub id)")
        if self.kind in ("tensorrt_llm_api", "vllm") and not self.model:
            raise ValueError(f"engine kind {self.kind} needs `model:` (a Hugging Face id, or a checkpoint "
                             "folder as the server sees it)")
        if self.kind == "tensorrt_llm" and not self.path:
            raise ValueError("engine kind tensorrt_llm needs `path:` (the engine folder inside the container)")
        return self


class KVCacheSpec(StrictModel):
    """Paged KV-cache sizing and prefix reuse."""

    free_gpu_memory_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    #: Prefix caching (TensorRT-LLM's ``enable_block_reuse``).
    enable_reuse: bool = False
    max_tokens: Optional[Positive] = None
    #: tensorrt_llm_api: the KV cache's element type; fp8 needs compute capability 8.9 or newer.
    dtype: Literal["auto", "fp8", "nvfp4", "float16", "bfloat16"] = "auto"
    #: tensorrt_llm_api: bytes of host memory for offloaded KV blocks.
    host_cache_size: Optional[Positive] = None


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
    #: ``llmapi``: one text-in, text-out model with TensorRT-LLM's LLM-API interface (the default);
    #: ``ensemble``: preprocessing -> engine -> postprocessing plus a streaming BLS, NVIDIA's older layout.
    #: ``vllm``: Triton's vLLM backend model (engine kind vllm only).
    #: Left out: ``ensemble`` for engine kind tensorrt_llm, ``vllm`` for vllm, else ``llmapi``.
    layout: Optional[Literal["llmapi", "ensemble", "vllm"]] = None
    #: ``layout: ensemble`` only: ``nvidia`` names the five models as NVIDIA's TensorRT-LLM templates do
    #: (``ensemble``, ``preprocessing``, ``tensorrt_llm``, ``postprocessing``, ``tensorrt_llm_bls``), so scripts,
    #: dashboards and alerts written for those names work unchanged; one entry per repository can.
    model_names: Literal["tritonkit", "nvidia"] = "tritonkit"
    tokenizer: Optional[str] = None
    chat_template: bool = True
    system_prompt: Optional[str] = None
    #: How the model writes a tool call, so the OpenAI gateway can read it back (``tools`` in a request):
    #: ``hermes`` (``<tool_call>{...}</tool_call>``: Qwen, Hermes, SmolLM3), ``llama3_json`` (a JSON object with
    #: ``name`` and ``parameters``), ``mistral`` (``[TOOL_CALLS][...]``). Left out: read from the chat template
    #: when it names one of these; a template that knows no tools gets the tools in a ``hermes`` system prompt
    #: only when this is set.
    tool_parser: Optional[Literal["hermes", "llama3_json", "mistral"]] = None
    max_batch_size: Positive = 8
    max_input_len: Positive = 2048
    max_output_len: Positive = 512
    #: 0: no request waits for company (the PyTorch engine batches in flight anyway, and requests that
    #: queue while a model is busy still batch); 1000 cost about 1 ms per model at concurrency 1 (issue 13).
    max_queue_delay_microseconds: NonNegative = 0
    streaming: bool = True
    sampling: SamplingDefaults = SamplingDefaults()
    stop_words: list[str] = []
    kv_cache: KVCacheSpec = KVCacheSpec()
    instance_group: list[InstanceGroup] = []
    instances: InstanceCounts = InstanceCounts()
    trust_remote_code: bool = False
    #: Triton's ``version_policy``, for every model of the entry. Left out: ``latest: {num_versions: 1}``,
    #: since each loaded version holds its own weights and KV cache (two loaded cost twice the memory).
    version_policy: Optional[VersionPolicy] = None

    @property
    def resolved_layout(self) -> str:
        """The layout this entry renders: the spec's, or the engine kind's default."""
        if self.layout is not None:
            return self.layout
        return {"tensorrt_llm": "ensemble", "vllm": "vllm"}.get(self.engine.kind, "llmapi")
