"""The tensor contract of the ensemble layout: NVIDIA's ``inflight_batcher_llm`` models, as typed tables.

Names, types and shapes of the inputs and outputs of the preprocessing, engine, postprocessing, ensemble
and BLS models follow NVIDIA's TensorRT-LLM backend (``triton_backend/all_models/inflight_batcher_llm``),
so either engine fits behind the same preprocessing, postprocessing and BLS models; with them, how
NVIDIA's ensemble wires one model to the next, the parameters the ``tensorrtllm`` C++ backend reads, and
the inputs tritonkit's own models refuse. Pure data: ``tritonkit.model.llm_config`` writes it into
``ModelConfig`` messages.
See https://github.com/triton-inference-server/common/blob/main/protobuf/model_config.proto.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

__all__ = [
    "BLS_INPUTS",
    "BLS_UNSUPPORTED",
    "CLIENT_OUTPUTS",
    "ENGINE_INPUTS",
    "ENGINE_OUTPUTS",
    "ENSEMBLE_INPUTS",
    "PREPROCESSING_UNSUPPORTED",
    "PYTORCH_UNSUPPORTED",
    "TENSORS",
    "TRTLLM_PARAMETERS",
    "TRTLLM_VERSION",
    "EnsembleStep",
    "Tensor",
    "bls_routes",
    "client_to_engine",
    "declared",
    "ensemble_steps",
]

#: The TensorRT-LLM release whose ensemble, BLS and engine configs tritonkit declares: 1.2.1, the
#: release of every NGC -trtllm-python-py3 image up to 26.07 (the last with the C++ engine backend).
TRTLLM_VERSION = "1.2.1"


@dataclass(frozen=True)
class Tensor:
    """One input or output of a model of the pipeline (``model_config.proto`` ``ModelInput``/``ModelOutput``).

    Names, dtypes, dims and flags are NVIDIA's, from ``triton_backend/all_models/inflight_batcher_llm``;
    ``extension`` marks the few that tritonkit adds (a client written for NVIDIA's configs never sends
    or reads them); ``since`` marks tensors that appear after ``TRTLLM_VERSION``.
    """

    name: str
    dtype: str
    dims: tuple[int, ...] = (1,)
    optional: bool = True
    #: ``reshape: { shape: [ ] }``: the [1] per request arrives as a scalar per request.
    reshape: bool = False
    ragged: bool = False
    since: Optional[str] = None
    extension: bool = False


def _s(name: str, dtype: str, **kw: Any) -> Tensor:
    """A per-request scalar as the engine declares it: ``dims: [1]`` with ``reshape: []``."""
    return Tensor(name, dtype, (1,), reshape=True, **kw)


def _g(name: str, dtype: str, dims: tuple[int, ...] = (-1,), **kw: Any) -> Tensor:
    """A variable-length tensor that batches raggedly."""
    return Tensor(name, dtype, dims, ragged=True, **kw)


#: Client-facing inputs shared by the ensemble and the BLS, in NVIDIA's ensemble order.
_CLIENT_COMMON: tuple[Tensor, ...] = (
    Tensor("text_input", "STRING", optional=False), Tensor("decoder_text_input", "STRING"),
    Tensor("max_tokens", "INT32", optional=False), Tensor("num_return_sequences", "INT32"),
    Tensor("bad_words", "STRING", (-1,)), Tensor("stop_words", "STRING", (-1,)),
    Tensor("exclude_input_in_output", "BOOL"), Tensor("end_id", "INT32"), Tensor("pad_id", "INT32"),
    Tensor("top_k", "INT32"), Tensor("top_p", "FP32"), Tensor("temperature", "FP32"),
    Tensor("length_penalty", "FP32"), Tensor("repetition_penalty", "FP32"), Tensor("min_tokens", "INT32"),
    Tensor("presence_penalty", "FP32"), Tensor("frequency_penalty", "FP32"), Tensor("seed", "UINT64"),
    Tensor("return_log_probs", "BOOL"), Tensor("return_context_logits", "BOOL"),
    Tensor("return_generation_logits", "BOOL"), Tensor("return_perf_metrics", "BOOL"),
    Tensor("return_num_input_tokens", "BOOL", since="1.3"), Tensor("return_num_output_tokens", "BOOL", since="1.3"),
    Tensor("beam_width", "INT32"), Tensor("stream", "BOOL"),
    Tensor("prompt_embedding_table", "FP16", (-1, -1)), Tensor("prompt_table_extra_id", "UINT64"),
    Tensor("prompt_vocab_size", "INT32"), Tensor("embedding_bias_words", "STRING", (-1,)),
    Tensor("embedding_bias_weights", "FP32", (-1,)), Tensor("lora_task_id", "UINT64"),
    _g("lora_weights", "FP16", (-1, -1)), _g("lora_config", "INT32", (-1, 3)),
    Tensor("guided_decoding_guide_type", "STRING"), Tensor("guided_decoding_guide", "STRING"),
    # tritonkit's: false sends text_input as it is, templated already (the OpenAI gateway templates whole
    # conversations); left out, preprocessing applies the chat template to it as one user message.
    Tensor("apply_chat_template", "BOOL", extension=True),
)
#: The ensemble's inputs (NVIDIA's ``ensemble/config.pbtxt``; guided decoding is ragged there).
ENSEMBLE_INPUTS: tuple[Tensor, ...] = tuple(
    _g(t.name, t.dtype, t.dims) if t.name.startswith("guided_decoding") else t for t in _CLIENT_COMMON)
_BLS_ONLY: tuple[Tensor, ...] = (
    Tensor("image_input", "FP16", (-1, 3, -1, -1)), Tensor("image_bytes_input", "UINT8", (-1, -1, -1, -1)),
    Tensor("image_url_input", "STRING"), Tensor("video_bytes_input", "UINT8", (-1, -1, -1, -1)),
    Tensor("num_draft_tokens", "INT32"), _s("use_draft_logits", "BOOL"),
)
_BLS_RESHAPED = {"return_log_probs", "return_context_logits", "return_generation_logits", "num_return_sequences",
                 "lora_task_id", "return_perf_metrics", "return_num_input_tokens", "return_num_output_tokens"}
#: The BLS's inputs (NVIDIA's ``tensorrt_llm_bls/config.pbtxt``: the ensemble's plus multimodal and draft inputs).
BLS_INPUTS: tuple[Tensor, ...] = tuple(
    _s(t.name, t.dtype, since=t.since) if t.name in _BLS_RESHAPED else t for t in _CLIENT_COMMON) + _BLS_ONLY

_PERF_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("kv_cache_alloc_new_blocks", "INT32"), Tensor("kv_cache_reused_blocks", "INT32"),
    Tensor("kv_cache_alloc_total_blocks", "INT32"), Tensor("arrival_time_ns", "INT64"),
    Tensor("first_scheduled_time_ns", "INT64"), Tensor("first_token_time_ns", "INT64"),
    Tensor("last_token_time_ns", "INT64"), Tensor("acceptance_rate", "FP32"),
    Tensor("total_accepted_draft_tokens", "INT32"), Tensor("total_draft_tokens", "INT32"),
    Tensor("num_input_tokens", "INT32", since="1.3"), Tensor("num_output_tokens", "INT32", since="1.3"),
)
#: tritonkit's addition to every output list: why generation ended (``stop``, ``length``, ``cancelled``).
_FINISH_REASON = Tensor("finish_reason", "STRING", extension=True)
#: The ensemble's and the BLS's outputs (NVIDIA's, less the ensemble's duplicated kv_cache_alloc_total_blocks).
CLIENT_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("text_output", "STRING", (-1,)), Tensor("cum_log_probs", "FP32", (-1,)),
    Tensor("output_log_probs", "FP32", (-1, -1)), Tensor("context_logits", "FP32", (-1, -1)),
    Tensor("generation_logits", "FP32", (-1, -1, -1)), Tensor("batch_index", "INT32"),
    Tensor("sequence_index", "INT32"), *_PERF_OUTPUTS, _FINISH_REASON,
)

#: The engine's inputs (NVIDIA's ``tensorrt_llm/config.pbtxt``).
ENGINE_INPUTS: tuple[Tensor, ...] = (
    _g("input_ids", "INT32"), _g("encoder_input_features", "FP16", (-1, -1)),
    _s("encoder_output_lengths", "INT32"), _s("input_lengths", "INT32", optional=False),
    _s("request_output_len", "INT32", optional=False), _s("num_return_sequences", "INT32"),
    _g("draft_input_ids", "INT32"), _g("decoder_input_ids", "INT32"), _s("decoder_input_lengths", "INT32"),
    _g("draft_logits", "FP32", (-1, -1)), _s("draft_acceptance_threshold", "FP32"),
    _s("end_id", "INT32"), _s("pad_id", "INT32"), _g("stop_words_list", "INT32", (2, -1)),
    _g("bad_words_list", "INT32", (2, -1)), _g("embedding_bias", "FP32"), _s("beam_width", "INT32"),
    _s("temperature", "FP32"), _s("runtime_top_k", "INT32"), _s("runtime_top_p", "FP32"),
    _s("runtime_top_p_min", "FP32"), _s("runtime_top_p_decay", "FP32"), _s("runtime_top_p_reset_ids", "INT32"),
    _s("len_penalty", "FP32"), _s("early_stopping", "BOOL"), _s("repetition_penalty", "FP32"),
    _s("min_tokens", "INT32"), _s("beam_search_diversity_rate", "FP32"), _s("presence_penalty", "FP32"),
    _s("frequency_penalty", "FP32"), _s("seed", "UINT64"), _s("return_log_probs", "BOOL"),
    _s("return_context_logits", "BOOL"), _s("return_generation_logits", "BOOL"), _s("return_perf_metrics", "BOOL"),
    _s("return_num_input_tokens", "BOOL", since="1.3"), _s("return_num_output_tokens", "BOOL", since="1.3"),
    _s("exclude_input_in_output", "BOOL"), _s("stop", "BOOL"), _s("streaming", "BOOL"),
    _g("prompt_embedding_table", "FP16", (-1, -1)), _g("prompt_table_extra_ids", "UINT64"),
    _s("prompt_vocab_size", "INT32"), _g("cross_attention_mask", "BOOL", (-1, -1)),
    Tensor("mrope_rotary_cos_sin", "FP32", (-1,)), Tensor("mrope_position_deltas", "INT64"),
    _s("lora_task_id", "UINT64"), _g("lora_weights", "FP16", (-1, -1)), _g("lora_config", "INT32", (-1, 3)),
    _g("context_phase_params", "UINT8"), _g("skip_cross_attn_blocks", "BOOL", (1,)),
    _g("retention_token_range_starts", "INT32"), _g("retention_token_range_ends", "INT32"),
    _g("retention_token_range_priorities", "INT32"), _g("retention_token_range_durations_ms", "INT32"),
    _g("retention_decode_priority", "INT32", (1,)), _g("retention_decode_duration_ms", "INT32", (1,)),
    _g("guided_decoding_guide_type", "STRING", (1,)), _g("guided_decoding_guide", "STRING", (1,)),
    _g("lookahead_window_size", "INT32", (1,)), _g("lookahead_ngram_size", "INT32", (1,)),
    _g("lookahead_verification_set_size", "INT32", (1,)),
)
#: The engine's outputs (NVIDIA's, plus finish_reason).
ENGINE_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("output_ids", "INT32", (-1, -1)), Tensor("sequence_length", "INT32", (-1,)),
    Tensor("cum_log_probs", "FP32", (-1,)), Tensor("output_log_probs", "FP32", (-1, -1)),
    Tensor("context_logits", "FP32", (-1, -1)), Tensor("generation_logits", "FP32", (-1, -1, -1)),
    Tensor("batch_index", "INT32"), Tensor("sequence_index", "INT32"), Tensor("context_phase_params", "UINT8", (-1,)),
    *_PERF_OUTPUTS, _FINISH_REASON,
)

#: Preprocessing and postprocessing: NVIDIA's names for what tritonkit's models compute. Inputs that need
#: NVIDIA's own preprocessing (encoder-decoder, p-tuning) are declared so the ensemble can wire them, and refused.
_PRE_INPUTS: tuple[Tensor, ...] = (
    Tensor("QUERY", "STRING", optional=False), Tensor("DECODER_QUERY", "STRING"),
    Tensor("REQUEST_OUTPUT_LEN", "INT32", optional=False), Tensor("BAD_WORDS_DICT", "STRING", (-1,)),
    Tensor("STOP_WORDS_DICT", "STRING", (-1,)), Tensor("EMBEDDING_BIAS_WORDS", "STRING", (-1,)),
    Tensor("EMBEDDING_BIAS_WEIGHTS", "FP32", (-1,)), Tensor("END_ID", "INT32"), Tensor("PAD_ID", "INT32"),
    Tensor("PROMPT_TABLE_EXTRA_ID", "UINT64"), Tensor("APPLY_CHAT_TEMPLATE", "BOOL", extension=True),
)
_PRE_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("INPUT_ID", "INT32", (-1,)), Tensor("REQUEST_INPUT_LEN", "INT32"),
    # A decoder-only model's: one pad token and length 1 per prompt, as NVIDIA's preprocessing gives (its
    # clients pass them on to the engine, which ignores them).
    Tensor("DECODER_INPUT_ID", "INT32", (-1,)), Tensor("REQUEST_DECODER_INPUT_LEN", "INT32"),
    Tensor("REQUEST_OUTPUT_LEN", "INT32"), Tensor("STOP_WORDS_IDS", "INT32", (2, -1)),
    Tensor("BAD_WORDS_IDS", "INT32", (2, -1)),
    Tensor("EMBEDDING_BIAS", "FP32", (-1,)), Tensor("OUT_END_ID", "INT32"), Tensor("OUT_PAD_ID", "INT32"),
)
_POST_INPUTS: tuple[Tensor, ...] = (
    _g("TOKENS_BATCH", "INT32", (-1, -1), optional=False), _g("SEQUENCE_LENGTH", "INT32", optional=False),
)
_POST_OUTPUTS: tuple[Tensor, ...] = (Tensor("OUTPUT", "STRING", (-1,)),)

#: Inputs and outputs of each model of the pipeline, by role.
TENSORS: dict[str, tuple[tuple[Tensor, ...], tuple[Tensor, ...]]] = {
    "preprocessing": (_PRE_INPUTS, _PRE_OUTPUTS),
    "engine": (ENGINE_INPUTS, ENGINE_OUTPUTS),
    "front": (ENSEMBLE_INPUTS, CLIENT_OUTPUTS),
    "postprocessing": (_POST_INPUTS, _POST_OUTPUTS),
    "bls": (BLS_INPUTS, CLIENT_OUTPUTS),
    "ensemble": (ENSEMBLE_INPUTS, CLIENT_OUTPUTS),
}

#: Client input -> engine input where the names differ (NVIDIA's ensemble wiring); the others keep their
#: name or go to preprocessing (``_TO_PREPROCESSING``).
_RENAMED = {"top_k": "runtime_top_k", "top_p": "runtime_top_p", "length_penalty": "len_penalty",
            "stream": "streaming"}
_TO_PREPROCESSING = {"text_input": "QUERY", "decoder_text_input": "DECODER_QUERY",
                     "max_tokens": "REQUEST_OUTPUT_LEN", "bad_words": "BAD_WORDS_DICT",
                     "stop_words": "STOP_WORDS_DICT", "embedding_bias_words": "EMBEDDING_BIAS_WORDS",
                     "embedding_bias_weights": "EMBEDDING_BIAS_WEIGHTS", "end_id": "END_ID", "pad_id": "PAD_ID",
                     "prompt_table_extra_id": "PROMPT_TABLE_EXTRA_ID", "apply_chat_template": "APPLY_CHAT_TEMPLATE"}
#: The BLS-only inputs for multimodal encoders and draft models, which tritonkit's BLS does not call.
BLS_UNSUPPORTED = {
    "image_input": "multimodal input needs NVIDIA's multimodal BLS with engine kind tensorrt_llm",
    "image_bytes_input": "multimodal input needs NVIDIA's multimodal BLS with engine kind tensorrt_llm",
    "image_url_input": "multimodal input needs NVIDIA's multimodal BLS with engine kind tensorrt_llm",
    "video_bytes_input": "multimodal input needs NVIDIA's multimodal BLS with engine kind tensorrt_llm",
    "num_draft_tokens": "draft-model speculative decoding needs NVIDIA's BLS with a draft engine (engine kind "
                        "tensorrt_llm)",
    "use_draft_logits": "draft-model speculative decoding needs NVIDIA's BLS with a draft engine (engine kind "
                        "tensorrt_llm)",
}

_TRTLLM = "engine kind tensorrt_llm (TensorRT-LLM's C++ backend)"
#: Preprocessing inputs tritonkit's preprocessing refuses, with what supports them.
PREPROCESSING_UNSUPPORTED: dict[str, str] = {
    "DECODER_QUERY": f"encoder-decoder models (decoder_text_input) need NVIDIA's preprocessing and {_TRTLLM}",
    "PROMPT_TABLE_EXTRA_ID": f"prompt tables (prompt_table_extra_id) need NVIDIA's preprocessing and {_TRTLLM}",
}
#: Engine inputs tritonkit's PyTorch engine cannot honour, with the engine that can. A request that sets
#: one to anything but its neutral value gets an error response naming the input and this text.
PYTORCH_UNSUPPORTED: dict[str, str] = {
    "beam_width": f"beam search (beam_width > 1) needs {_TRTLLM}",
    "encoder_input_features": f"encoder-decoder models need {_TRTLLM}",
    "encoder_output_lengths": f"encoder-decoder models need {_TRTLLM}",
    "decoder_input_ids": f"encoder-decoder models need {_TRTLLM}",
    "decoder_input_lengths": f"encoder-decoder models need {_TRTLLM}",
    "draft_input_ids": f"speculative decoding needs {_TRTLLM}",
    "draft_logits": f"speculative decoding needs {_TRTLLM}",
    "draft_acceptance_threshold": f"speculative decoding needs {_TRTLLM}",
    "runtime_top_p_min": f"top-p decay needs {_TRTLLM}",
    "runtime_top_p_decay": f"top-p decay needs {_TRTLLM}",
    "runtime_top_p_reset_ids": f"top-p decay needs {_TRTLLM}",
    "early_stopping": f"beam search needs {_TRTLLM}",
    "beam_search_diversity_rate": f"beam search needs {_TRTLLM}",
    "return_context_logits": f"context logits need {_TRTLLM} (engine built with gather_context_logits)",
    "return_generation_logits": f"generation logits need {_TRTLLM} (engine built with gather_generation_logits)",
    "prompt_embedding_table": f"prompt tables (p-tuning) need {_TRTLLM}",
    "prompt_table_extra_ids": f"prompt tables (p-tuning) need {_TRTLLM}",
    "prompt_vocab_size": f"prompt tables (p-tuning) need {_TRTLLM}",
    "cross_attention_mask": f"multimodal (mllama) models need {_TRTLLM}",
    "mrope_rotary_cos_sin": f"multimodal (Qwen2-VL) models need {_TRTLLM}",
    "mrope_position_deltas": f"multimodal (Qwen2-VL) models need {_TRTLLM}",
    "skip_cross_attn_blocks": f"multimodal (mllama) models need {_TRTLLM}",
    "lora_task_id": f"LoRA adapters need {_TRTLLM}, or the LLM-API layout with engine kind tensorrt_llm_api",
    "lora_weights": f"LoRA adapters need {_TRTLLM}, or the LLM-API layout with engine kind tensorrt_llm_api",
    "lora_config": f"LoRA adapters need {_TRTLLM}, or the LLM-API layout with engine kind tensorrt_llm_api",
    "context_phase_params": f"disaggregated serving needs {_TRTLLM}",
    "retention_token_range_starts": f"KV-cache retention policies need {_TRTLLM}",
    "retention_token_range_ends": f"KV-cache retention policies need {_TRTLLM}",
    "retention_token_range_priorities": f"KV-cache retention policies need {_TRTLLM}",
    "retention_token_range_durations_ms": f"KV-cache retention policies need {_TRTLLM}",
    "retention_decode_priority": f"KV-cache retention policies need {_TRTLLM}",
    "retention_decode_duration_ms": f"KV-cache retention policies need {_TRTLLM}",
    "lookahead_window_size": f"lookahead decoding needs {_TRTLLM}",
    "lookahead_ngram_size": f"lookahead decoding needs {_TRTLLM}",
    "lookahead_verification_set_size": f"lookahead decoding needs {_TRTLLM}",
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


def _newer(since: Optional[str], version: str) -> bool:
    if since is None:
        return False
    as_tuple = [tuple(int(p) for p in v.split(".")[:2]) for v in (since, version)]
    return as_tuple[0] > as_tuple[1]


def declared(tensors: tuple[Tensor, ...], version: str = TRTLLM_VERSION) -> tuple[Tensor, ...]:
    """The tensors TensorRT-LLM ``version`` declares."""
    return tuple(t for t in tensors if not _newer(t.since, version))


def client_to_engine(name: str) -> Optional[str]:
    """The engine input a client input of the ensemble or BLS feeds directly (None: preprocessing's)."""
    if name in _TO_PREPROCESSING or name in BLS_UNSUPPORTED:
        return None
    return _RENAMED.get(name, name)


def bls_routes() -> dict[str, dict[str, str]]:
    """The BLS's routing of client inputs, as its ``preprocessing_inputs`` and ``engine_inputs`` parameters."""
    client = [t.name for t in declared(BLS_INPUTS)]
    return {"preprocessing": {c: _TO_PREPROCESSING[c] for c in client if c in _TO_PREPROCESSING},
            "engine": {c: client_to_engine(c) or c for c in client if client_to_engine(c)}}


#: Preprocessing outputs -> the ensemble's internal tensors -> engine inputs (NVIDIA's names).
_PRE_TO_ENGINE = (("INPUT_ID", "_INPUT_ID", "input_ids"), ("REQUEST_INPUT_LEN", "_REQUEST_INPUT_LEN", "input_lengths"),
                  ("REQUEST_OUTPUT_LEN", "_REQUEST_OUTPUT_LEN", "request_output_len"),
                  ("STOP_WORDS_IDS", "_STOP_WORDS_IDS", "stop_words_list"),
                  ("BAD_WORDS_IDS", "_BAD_WORDS_IDS", "bad_words_list"),
                  ("EMBEDDING_BIAS", "_EMBEDDING_BIAS", "embedding_bias"),
                  ("OUT_END_ID", "_PREPROCESSOR_END_ID", "end_id"), ("OUT_PAD_ID", "_PREPROCESSOR_PAD_ID", "pad_id"))


#: One step of the ensemble: the model, its inputs (model input -> ensemble tensor) and its outputs
#: (model output -> ensemble tensor), as ``ensemble_scheduling.step`` writes them.
EnsembleStep = tuple[str, dict[str, str], dict[str, str]]


def ensemble_steps(preprocessing: str, engine: str, postprocessing: str) -> tuple[EnsembleStep, ...]:
    """Preprocessing -> engine -> postprocessing, text in and text out, wired like NVIDIA's ensemble.

    Every client input reaches the model that reads it; every engine output but the token ids goes
    straight to the client. The arguments are the three models' names.
    """
    client = {t.name for t in declared(ENSEMBLE_INPUTS)}
    pre_in = {pre: c for c, pre in _TO_PREPROCESSING.items() if c in client}
    pre_out = {pre: internal for pre, internal, _ in _PRE_TO_ENGINE}
    engine_in = {eng: internal for _, internal, eng in _PRE_TO_ENGINE}
    engine_in.update({client_to_engine(c) or c: c for c in sorted(client) if client_to_engine(c)})
    engine_out = {t.name: t.name for t in declared(CLIENT_OUTPUTS) if t.name != "text_output"}
    engine_out.update({"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH"})
    post_in = {"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH"}
    return ((preprocessing, pre_in, pre_out), (engine, engine_in, engine_out),
            (postprocessing, post_in, {"OUTPUT": "text_output"}))
