"""NVIDIA's TensorRT-LLM templates (``all_models/inflight_batcher_llm``): which ``${...}`` may stay unfilled.

NVIDIA ships each model's config.pbtxt with ``${name}`` placeholders that ``tools/fill_template.py``
replaces (``string.Template.safe_substitute``: what is not given stays as it is, except
``max_queue_size`` and ``max_queue_delay_microseconds``, which it sets to 0). Its README fills only the
mandatory ones, so a repository set up as documented keeps dozens of ``parameters`` whose
``string_value`` is still ``"${name}"``. NVIDIA's code reads such a value as unset and applies its
default: the Python models' ``read_parameter_as_type`` returns None for a value that starts with
``${`` and ends with ``}``, and the C++ backend parses each optional parameter inside a try/catch
that falls back to the default (``inflight_batcher_llm/src/model_instance_state.cc``).

The optional names per model are those of ``docs/model_config.md`` of
triton-inference-server/tensorrtllm_backend ("The optional parameters are not required but can be
set to customize the model"), plus the few the templates carry that the code reads with a default
but the table leaves out (``kv_cache_onboard_blocks``, the ``lookahead_*`` trio,
``speculative_decoding_fast_logits``, ``max_num_images``, ``multimodal_encoders_name``).
A model is recognised as one of NVIDIA's by a parameter key only that model's template has.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["nvidia_template", "optional_placeholders"]

#: (NVIDIA's model, a parameter key only its template has, the placeholders it treats as optional).
_TEMPLATES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("tensorrt_llm", "gpt_model_type", frozenset({
        "encoder_engine_dir", "max_attention_window_size", "sink_token_length", "exclude_input_in_output",
        "cancellation_check_period_ms", "stats_check_period_ms", "recv_poll_period_ms",
        "iter_stats_max_iterations", "request_stats_max_iterations", "normalize_log_probs", "gpu_device_ids",
        "participant_ids", "num_nodes", "gpu_weights_percent", "max_tokens_in_paged_kv_cache",
        "kv_cache_free_gpu_mem_fraction", "cross_kv_cache_fraction", "kv_cache_host_memory_bytes",
        "enable_kv_cache_reuse", "lora_cache_optimal_adapter_size", "lora_cache_max_adapter_size",
        "lora_cache_gpu_memory_fraction", "lora_cache_host_memory_bytes", "lora_prefetch_dir", "max_beam_width",
        "decoding_mode", "enable_chunked_context", "multi_block_mode", "enable_context_fmha_fp32_acc",
        "cuda_graph_mode", "cuda_graph_cache_size", "batch_scheduler_policy", "medusa_choices", "eagle_choices",
        "guided_decoding_backend", "tokenizer_dir", "xgrammar_tokenizer_info_path",
        # read with a default, not in the table
        "kv_cache_onboard_blocks", "lookahead_window_size", "lookahead_ngram_size",
        "lookahead_verification_set_size", "speculative_decoding_fast_logits",
    })),
    ("preprocessing", "add_special_tokens", frozenset({
        "add_special_tokens", "multimodal_model_path", "engine_dir", "max_num_images",
    })),
    ("postprocessing", "skip_special_tokens", frozenset({"skip_special_tokens"})),
    ("tensorrt_llm_bls", "accumulate_tokens", frozenset({
        "accumulate_tokens", "tensorrt_llm_model_name", "tensorrt_llm_draft_model_name", "multimodal_encoders_name",
    })),
)


def nvidia_template(config: Any) -> Optional[str]:
    """Return the NVIDIA model whose template ``config`` was filled from, by its parameter keys, or None."""
    if config is None:
        return None
    keys = set(config.parameters)
    return next((model for model, key, _ in _TEMPLATES if key in keys), None)


def optional_placeholders(config: Any) -> frozenset[str]:
    """Return the placeholder names that may stay unfilled in ``config``'s parameters (NVIDIA's optional ones).

    A name counts only where a parameter's ``string_value`` is exactly ``${name}``; the same name left
    in a data_type or a mandatory field is no less a mistake.
    """
    model = nvidia_template(config)
    if model is None:
        return frozenset()
    optional = next(names for name, _, names in _TEMPLATES if name == model)
    left = {value.string_value[2:-1] for value in config.parameters.values()
            if value.string_value.startswith("${") and value.string_value.endswith("}")}
    return frozenset(optional & left)
