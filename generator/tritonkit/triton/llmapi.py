"""The text-in, text-out interface of TensorRT-LLM's LLM-API Triton model, as typed tensor definitions.

One definition serves three uses: the ``config.pbtxt`` of a ``tensorrt_llm_api`` model (written by
``tritonkit.model.llmapi``), the same interface served locally by tritonkit's PyTorch engine
(``layout: llmapi``), and the clients (``chat``, ``bench``, the OpenAI gateway) that speak it. Names,
dtypes, dims and ``optional`` flags are those of NVIDIA's
``triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt`` (TensorRT-LLM 1.2.x, the release in NGC's
-trtllm-python-py3 images up to 26.07); ``since`` marks tensors added on TensorRT-LLM's main branch after it.
See https://github.com/triton-inference-server/common/blob/main/protobuf/model_config.proto.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["EXTENSION_INPUTS", "EXTENSION_OUTPUTS", "LLMAPI_INPUTS", "LLMAPI_OUTPUTS", "LOCAL_INPUTS",
           "LOCAL_OUTPUTS", "REQUEST_NAMES", "TEMPLATE_INPUT", "Tensor", "declared_inputs", "declared_outputs",
           "interface_of"]


@dataclass(frozen=True)
class Tensor:
    """One input or output of the interface (``model_config.proto`` ``ModelInput``/``ModelOutput``)."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    optional: bool = True
    #: The first TensorRT-LLM release that declares it; None for those in 1.2.x already.
    since: Optional[str] = None


def _in(name: str, dtype: str, dims: tuple[int, ...] = (1,), since: Optional[str] = None) -> Tensor:
    return Tensor(name, dtype, dims, True, since)


LLMAPI_INPUTS: tuple[Tensor, ...] = (
    Tensor("text_input", "STRING", (-1,), optional=False),
    _in("image_url", "STRING", (-1,), since="1.3"),
    _in("streaming", "BOOL"),
    _in("sampling_param_best_of", "INT32"),
    _in("sampling_param_temperature", "FP32"),
    _in("sampling_param_top_k", "INT32"),
    _in("sampling_param_top_p", "FP32"),
    _in("sampling_param_frequency_penalty", "FP32"),
    _in("sampling_param_presence_penalty", "FP32"),
    _in("sampling_param_max_tokens", "INT32"),
    _in("sampling_param_stop", "STRING", (-1,)),
    _in("sampling_param_seed", "UINT64"),
    _in("sampling_param_exclude_input_from_output", "BOOL"),
    _in("sampling_param_return_perf_metrics", "BOOL"),
    _in("return_finish_reason", "BOOL"),
    _in("return_stop_reason", "BOOL"),
    _in("return_cumulative_logprob", "BOOL"),
    _in("stop", "BOOL"),
    _in("lora_id", "UINT64", since="1.3"),
    _in("lora_name", "STRING", since="1.3"),
    _in("lora_path", "STRING", since="1.3"),
    _in("lora_ckpt_source", "STRING", since="1.3"),
)

LLMAPI_OUTPUTS: tuple[Tensor, ...] = (
    Tensor("text_output", "STRING", (-1,), False),
    Tensor("finish_reason", "STRING", (-1,), False),
    Tensor("stop_reason", "STRING", (-1,), False),
    Tensor("cumulative_logprob", "FP32", (-1,), False),
    Tensor("kv_cache_reused_block", "INT32", (-1,), False),
    Tensor("kv_cache_missed_block", "INT32", (-1,), False),
    Tensor("kv_cache_alloc_new_blocks", "INT32", (-1,), False),
    Tensor("kv_cache_alloc_total_blocks", "INT32", (-1,), False),
    Tensor("kv_cache_hit_rate", "FP32", (-1,), False),
    Tensor("arrival_time_ns", "INT64", (1,), False),
    Tensor("first_scheduled_time_ns", "INT64", (1,), False),
    Tensor("first_token_time_ns", "INT64", (1,), False),
    Tensor("last_token_time_ns", "INT64", (1,), False),
    Tensor("acceptance_rate", "FP32", (1,), False),
    Tensor("total_accepted_draft_tokens", "INT32", (1,), False),
    Tensor("total_draft_tokens", "INT32", (1,), False),
)

#: tritonkit's additions to the interface, served by its LLM-API model on either engine (TensorRT-LLM's own
#: model has none of them). The guided-decoding inputs are named after TensorRT-LLM's ``GuidedDecodingParams``
#: fields (``json``, ``json_object``, ``regex``, ``grammar``; one per request), which the model passes on under
#: TensorRT-LLM; the sampling ones after ``SamplingParams``' ``n`` and ``logprobs`` (alternatives per token)
#: and OpenAI's ``logit_bias`` (a JSON object of token id -> bias). ``logprobs`` (output) holds, per
#: sequence, a JSON list of OpenAI's token entries (token, logprob, bytes, top_logprobs).
EXTENSION_INPUTS: tuple[Tensor, ...] = (
    _in("sampling_param_n", "INT32"),
    _in("sampling_param_logprobs", "INT32"),
    _in("sampling_param_logit_bias", "STRING"),
    _in("guided_decoding_param_json", "STRING"),
    _in("guided_decoding_param_json_object", "BOOL"),
    _in("guided_decoding_param_regex", "STRING"),
    _in("guided_decoding_param_grammar", "STRING"),
)
EXTENSION_OUTPUTS: tuple[Tensor, ...] = (Tensor("logprobs", "STRING", (-1,), False),)

#: tritonkit's one addition to the interface on its PyTorch engine only: false sends ``text_input`` to the
#: engine as it is (a raw completion prompt, or a conversation already templated by the OpenAI gateway);
#: true or left out, the model applies its chat template as its ``chat_template`` parameter says. A client
#: written for TensorRT-LLM never sends it.
TEMPLATE_INPUT = "apply_chat_template"
LOCAL_INPUTS: tuple[Tensor, ...] = (_in(TEMPLATE_INPUT, "BOOL"),)

#: The outputs tritonkit's PyTorch engine computes; it declares all of LLMAPI_OUTPUTS so clients
#: written for TensorRT-LLM load it unchanged, and sends the others only when TensorRT-LLM drives it.
LOCAL_OUTPUTS = frozenset({"text_output", "finish_reason", "stop_reason", "cumulative_logprob",
                           "arrival_time_ns", "first_scheduled_time_ns", "first_token_time_ns",
                           "last_token_time_ns", "logprobs"})


def _newer(since: Optional[str], version: Optional[str]) -> bool:
    """True when a tensor added in ``since`` is missing from TensorRT-LLM ``version`` (None: newest)."""
    if since is None or version is None:
        return False
    as_tuple = [tuple(int(p) for p in v.split(".")[:2]) for v in (since, version)]
    return as_tuple[0] > as_tuple[1]


#: A request's fields (as ``chat``, ``bench`` and the OpenAI gateway name them) -> each interface's inputs.
REQUEST_NAMES: dict[str, dict[str, str]] = {
    "llmapi": {"prompt": "text_input", "max_tokens": "sampling_param_max_tokens", "stream": "streaming",
               "temperature": "sampling_param_temperature", "top_k": "sampling_param_top_k",
               "top_p": "sampling_param_top_p", "seed": "sampling_param_seed", "stop": "sampling_param_stop",
               "presence_penalty": "sampling_param_presence_penalty",
               "frequency_penalty": "sampling_param_frequency_penalty", "finish_reason": "return_finish_reason",
               "answer_only": "sampling_param_exclude_input_from_output", "n": "sampling_param_n",
               "logprobs": "sampling_param_logprobs", "logit_bias": "sampling_param_logit_bias",
               "json_schema": "guided_decoding_param_json", "json_object": "guided_decoding_param_json_object",
               "regex": "guided_decoding_param_regex", "grammar": "guided_decoding_param_grammar"},
    # Triton's vLLM backend: sampling settings travel as one JSON string (SamplingParams' keyword names).
    "vllm": {"prompt": "text_input", "stream": "stream", "finish_reason": "return_finish_reason",
             "sampling": "sampling_parameters", "answer_only": "exclude_input_in_output"},
    # ``answer_only``: NVIDIA's engines repeat the prompt in front of a whole answer unless asked not to;
    # tritonkit's own clients (chat, bench, the gateway) always ask, where the model has the input.
    "ensemble": {"prompt": "text_input", "max_tokens": "max_tokens", "stream": "stream",
                 "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "seed": "seed",
                 "stop": "stop_words", "answer_only": "exclude_input_in_output"},
}


def interface_of(input_names: frozenset[str]) -> str:
    """``llmapi`` (TensorRT-LLM's LLM-API model), ``vllm`` (Triton's vLLM backend) or ``ensemble``."""
    if "sampling_param_max_tokens" in input_names:
        return "llmapi"
    return "vllm" if "sampling_parameters" in input_names else "ensemble"


def declared_inputs(trtllm_version: Optional[str], local: bool = False) -> tuple[Tensor, ...]:
    """The interface's inputs as TensorRT-LLM ``trtllm_version`` declares them (None: the newest).

    tritonkit's model takes ``EXTENSION_INPUTS`` on either engine; ``local``: it is served by tritonkit's
    PyTorch engine, which also takes ``LOCAL_INPUTS``. Every version declares all of ``LLMAPI_OUTPUTS``.
    """
    extra = EXTENSION_INPUTS + (LOCAL_INPUTS if local else ())
    return tuple(t for t in LLMAPI_INPUTS + extra if not _newer(t.since, trtllm_version))


def declared_outputs() -> tuple[Tensor, ...]:
    """The outputs tritonkit's LLM-API model declares: TensorRT-LLM's, then ``EXTENSION_OUTPUTS``."""
    return LLMAPI_OUTPUTS + EXTENSION_OUTPUTS
