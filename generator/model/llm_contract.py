"""The tensor contract of the LLM pipeline and the engine parameters, as ``model_config.proto`` messages.

Names, types and shapes follow NVIDIA's TensorRT-LLM backend (``inflight_batcher_llm``), so
either engine fits behind the same preprocessing, postprocessing and BLS models.
See https://github.com/triton-inference-server/common/blob/main/protobuf/model_config.proto.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Union

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.model.classic import fill_parameters
from tritonkit.spec.llm import LLMSpec

__all__ = [
    "TENSORS",
    "TRTLLM_PARAMETERS",
    "add_instances",
    "add_pytorch_instances",
    "add_tensors",
    "fill_ensemble",
    "fill_trtllm_engine",
    "pytorch_parameters",
    "set_parameters",
]

# (name, type, dims, flags): flags hold "o" optional, "r" reshape to a scalar, "g" ragged batch.
_Tensor = tuple[str, str, tuple[int, ...], str]

_ENGINE_IN: tuple[_Tensor, ...] = (
    ("input_ids", "INT32", (-1,), "og"), ("input_lengths", "INT32", (1,), "r"),
    ("request_output_len", "INT32", (1,), "r"), ("end_id", "INT32", (1,), "or"), ("pad_id", "INT32", (1,), "or"),
    ("stop_words_list", "INT32", (2, -1), "og"), ("bad_words_list", "INT32", (2, -1), "og"),
    ("embedding_bias", "FP32", (-1,), "og"), ("beam_width", "INT32", (1,), "or"),
    ("temperature", "FP32", (1,), "or"), ("runtime_top_k", "INT32", (1,), "or"),
    ("runtime_top_p", "FP32", (1,), "or"), ("len_penalty", "FP32", (1,), "or"),
    ("repetition_penalty", "FP32", (1,), "or"), ("min_tokens", "INT32", (1,), "or"),
    ("presence_penalty", "FP32", (1,), "or"), ("frequency_penalty", "FP32", (1,), "or"),
    ("seed", "UINT64", (1,), "or"), ("return_log_probs", "BOOL", (1,), "or"),
    ("exclude_input_in_output", "BOOL", (1,), "or"), ("stop", "BOOL", (1,), "or"),
    ("streaming", "BOOL", (1,), "or"), ("num_return_sequences", "INT32", (1,), "or"),
)
_ENGINE_OUT: tuple[_Tensor, ...] = (
    ("output_ids", "INT32", (-1, -1), ""), ("sequence_length", "INT32", (-1,), ""),
    ("cum_log_probs", "FP32", (-1,), ""), ("output_log_probs", "FP32", (-1, -1), ""),
)
_CLIENT_IN: tuple[_Tensor, ...] = (
    ("text_input", "STRING", (1,), ""), ("max_tokens", "INT32", (1,), ""),
    ("stream", "BOOL", (1,), "o"), ("temperature", "FP32", (1,), "o"), ("top_k", "INT32", (1,), "o"),
    ("top_p", "FP32", (1,), "o"), ("repetition_penalty", "FP32", (1,), "o"), ("seed", "UINT64", (1,), "o"),
    ("stop_words", "STRING", (-1,), "o"), ("bad_words", "STRING", (-1,), "o"),
    ("end_id", "INT32", (1,), "o"), ("pad_id", "INT32", (1,), "o"),
)
_CLIENT_OUT: tuple[_Tensor, ...] = (("text_output", "STRING", (-1,), ""), ("finish_reason", "STRING", (1,), ""))

#: Inputs and outputs of each model of the pipeline, by role.
TENSORS: dict[str, tuple[tuple[_Tensor, ...], tuple[_Tensor, ...]]] = {
    "preprocessing": (
        (("QUERY", "STRING", (1,), ""), ("REQUEST_OUTPUT_LEN", "INT32", (1,), ""),
         ("BAD_WORDS_DICT", "STRING", (-1,), "o"), ("STOP_WORDS_DICT", "STRING", (-1,), "o"),
         ("END_ID", "INT32", (1,), "o"), ("PAD_ID", "INT32", (1,), "o"), ("STREAM", "BOOL", (1,), "o")),
        (("INPUT_ID", "INT32", (-1,), ""), ("REQUEST_INPUT_LEN", "INT32", (1,), ""),
         ("REQUEST_OUTPUT_LEN", "INT32", (1,), ""), ("STOP_WORDS_IDS", "INT32", (2, -1), ""),
         ("BAD_WORDS_IDS", "INT32", (2, -1), ""), ("OUT_END_ID", "INT32", (1,), ""),
         ("OUT_PAD_ID", "INT32", (1,), "")),
    ),
    "engine": (_ENGINE_IN, _ENGINE_OUT),
    "engine_unary": (_ENGINE_IN, _ENGINE_OUT),
    "postprocessing": (
        (("TOKENS_BATCH", "INT32", (-1, -1), ""), ("SEQUENCE_LENGTH", "INT32", (-1,), ""),
         ("REQUEST_OUTPUT_LEN", "INT32", (1,), "o")),
        (("OUTPUT", "STRING", (-1,), ""), ("FINISH_REASON", "STRING", (1,), "")),
    ),
    "bls": (_CLIENT_IN, _CLIENT_OUT),
    "ensemble": (_CLIENT_IN, _CLIENT_OUT),
}

#: Every parameter the tensorrtllm C++ backend reads (tensorrtllm_backend docs/model_config.md).
TRTLLM_PARAMETERS = (
    "max_beam_width", "FORCE_CPU_ONLY_INPUT_TENSORS", "gpt_model_type", "gpt_model_path", "encoder_model_path",
    "max_tokens_in_paged_kv_cache", "max_attention_window_size", "sink_token_length", "batch_scheduler_policy",
    "kv_cache_free_gpu_mem_fraction", "cross_kv_cache_fraction", "kv_cache_host_memory_bytes",
    "kv_cache_onboard_blocks", "exclude_input_in_output", "cancellation_check_period_ms",
    "stats_check_period_ms", "iter_stats_max_iterations", "request_stats_max_iterations",
    "enable_kv_cache_reuse", "normalize_log_probs", "enable_chunked_context", "gpu_device_ids",
    "participant_ids", "num_nodes", "lora_cache_optimal_adapter_size", "lora_cache_max_adapter_size",
    "lora_cache_gpu_memory_fraction", "lora_cache_host_memory_bytes", "lora_prefetch_dir", "decoding_mode",
    "executor_worker_path", "lookahead_window_size", "lookahead_ngram_size", "lookahead_verification_set_size",
    "medusa_choices", "eagle_choices", "gpu_weights_percent", "enable_context_fmha_fp32_acc",
    "multi_block_mode", "cuda_graph_mode", "cuda_graph_cache_size", "speculative_decoding_fast_logits",
    "tokenizer_dir", "guided_decoding_backend", "xgrammar_tokenizer_info_path", "recv_poll_period_ms",
)


def _add(fields: object, tensor: _Tensor, is_input: bool) -> None:
    name, dtype, dims, flags = tensor
    item = fields.add()  # type: ignore[attr-defined]
    item.name = name
    item.data_type = pb.DataType.Value(f"TYPE_{dtype}")
    item.dims.extend(dims)
    if is_input:
        item.optional = "o" in flags
        item.allow_ragged_batch = "g" in flags
        if "r" in flags:
            item.reshape.SetInParent()


def add_tensors(config: pb.ModelConfig, role: str) -> None:
    """Declare the inputs and outputs of one model of the pipeline."""
    inputs, outputs = TENSORS[role]
    for tensor in inputs:
        _add(config.input, tensor, True)
    for tensor in outputs:
        _add(config.output, tensor, False)


def set_parameters(config: pb.ModelConfig, params: Mapping[str, Union[str, int, float, bool]]) -> None:
    """Write backend parameters, every one as a ``string_value`` as the backends expect."""
    fill_parameters(config, params)


def add_instances(config: pb.ModelConfig, kind: str, count: int, gpus: tuple[int, ...] = ()) -> None:
    """Append one instance group with an explicit kind."""
    group = config.instance_group.add()
    group.kind = pb.ModelInstanceGroup.Kind.Value(kind)
    group.count = count
    group.gpus.extend(gpus)


#: The PyTorch engine's instance kind for each ``engine.device`` when a group leaves the kind to it.
_ENGINE_KINDS = {"cuda": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}


def add_pytorch_instances(config: pb.ModelConfig, llm: LLMSpec) -> None:
    """The PyTorch engine: one instance by default, or the spec's groups (GPU ones by id).

    ``device: auto`` renders ``KIND_AUTO``: Triton makes it one ``KIND_GPU`` instance per visible GPU
    on a GPU host and ``KIND_CPU`` elsewhere, and the engine follows the kind it is given, so one
    repository serves on a laptop and on a GPU host unchanged.
    """
    if not llm.instance_group:
        add_instances(config, _ENGINE_KINDS[llm.engine.device], 1)
        return
    for group in llm.instance_group:
        if group.kind == "gpu" or group.gpus:
            kind = "KIND_GPU"
        elif group.kind == "auto":
            kind = _ENGINE_KINDS[llm.engine.device]
        else:
            kind = "KIND_CPU"
        add_instances(config, kind, group.count, tuple(group.gpus or ()))


def pytorch_parameters(llm: LLMSpec, source: str) -> dict[str, Union[str, int, float, bool]]:
    """Parameters of tritonkit's PyTorch engine: the model, where it runs, and sampling defaults."""
    sampling = llm.sampling
    params: dict[str, Union[str, int, float, bool]] = {
        "model": source, "device": llm.engine.device, "dtype": llm.engine.dtype,
        "temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
        "repetition_penalty": sampling.repetition_penalty, "trust_remote_code": llm.trust_remote_code,
        "enable_reuse": llm.kv_cache.enable_reuse, "kv_cache_tokens": llm.kv_cache.max_tokens or 0,
    }
    if sampling.seed is not None:
        params["seed"] = sampling.seed
    params.update(llm.engine.parameters)
    return params


def _trtllm_parameters(llm: LLMSpec) -> dict[str, Union[str, int, float, bool]]:
    engine, kv = llm.engine, llm.kv_cache
    params: dict[str, Union[str, int, float, bool]] = {
        "gpt_model_type": engine.batching_strategy, "gpt_model_path": engine.path or "",
        "max_beam_width": 1, "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        "kv_cache_free_gpu_mem_fraction": kv.free_gpu_memory_fraction, "enable_kv_cache_reuse": kv.enable_reuse,
        "exclude_input_in_output": True, "batch_scheduler_policy": "guaranteed_no_evict",
        "decoding_mode": "top_k_top_p", "enable_chunked_context": False, "normalize_log_probs": True,
        "cancellation_check_period_ms": 100, "stats_check_period_ms": 100,
        "executor_worker_path": "/opt/tritonserver/backends/tensorrtllm/trtllmExecutorWorker",
    }
    if kv.max_tokens is not None:
        params["max_tokens_in_paged_kv_cache"] = kv.max_tokens
    instances = [g for g in llm.instance_group for _ in range(g.count) if g.gpus]
    if instances:
        params["gpu_device_ids"] = ";".join(",".join(str(i) for i in g.gpus or ()) for g in instances)
    params.update(llm.engine.parameters)
    return params


def fill_trtllm_engine(config: pb.ModelConfig, llm: LLMSpec) -> None:
    """The ``tensorrtllm`` C++ backend: KIND_CPU instances placed by ``gpu_device_ids``, decoupled to stream."""
    add_tensors(config, "engine")
    config.dynamic_batching.preferred_batch_size.append(llm.max_batch_size)
    config.dynamic_batching.max_queue_delay_microseconds = llm.max_queue_delay_microseconds
    config.model_transaction_policy.decoupled = llm.streaming
    count = sum(g.count for g in llm.instance_group) or 1
    add_instances(config, "KIND_CPU", count)
    set_parameters(config, _trtllm_parameters(llm))


def _step(config: pb.ModelConfig, model: str, inputs: dict[str, str], outputs: dict[str, str]) -> None:
    step = config.ensemble_scheduling.step.add()
    step.model_name = model
    step.model_version = -1
    for key in sorted(inputs):
        step.input_map[key] = inputs[key]
    for key in sorted(outputs):
        step.output_map[key] = outputs[key]


def fill_ensemble(config: pb.ModelConfig, name: str, engine: str) -> None:
    """Preprocessing -> ``engine`` -> postprocessing, text in and text out, wired like upstream's ensemble.

    ``engine`` is ``<name>_engine``, or ``<name>_engine_unary`` when the engine is decoupled: a
    decoupled step would make Triton mark the whole ensemble decoupled (no HTTP ``infer``).
    """
    add_tensors(config, "ensemble")
    _step(config, f"{name}_preprocessing",
          {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "STOP_WORDS_DICT": "stop_words",
           "BAD_WORDS_DICT": "bad_words", "END_ID": "end_id", "PAD_ID": "pad_id", "STREAM": "stream"},
          {"INPUT_ID": "_INPUT_ID", "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN",
           "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN", "STOP_WORDS_IDS": "_STOP_WORDS_IDS",
           "BAD_WORDS_IDS": "_BAD_WORDS_IDS", "OUT_END_ID": "_PREPROCESSOR_END_ID",
           "OUT_PAD_ID": "_PREPROCESSOR_PAD_ID"})
    _step(config, engine,
          {"input_ids": "_INPUT_ID", "input_lengths": "_REQUEST_INPUT_LEN",
           "request_output_len": "_REQUEST_OUTPUT_LEN", "end_id": "_PREPROCESSOR_END_ID",
           "pad_id": "_PREPROCESSOR_PAD_ID", "stop_words_list": "_STOP_WORDS_IDS",
           "bad_words_list": "_BAD_WORDS_IDS", "temperature": "temperature", "runtime_top_k": "top_k",
           "runtime_top_p": "top_p", "repetition_penalty": "repetition_penalty", "seed": "seed"},
          {"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH"})
    _step(config, f"{name}_postprocessing",
          {"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH",
           "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN"},
          {"OUTPUT": "text_output", "FINISH_REASON": "finish_reason"})
