"""What the request-facing LLM models decide from a request's tensors, without Triton.

Requests come in as dicts of numpy arrays (``llm_triton.inputs`` reads them), so this logic runs in
unit tests with real arrays and a real tokenizer:

- the LLM-API model's request (``llm_api.py``): its tensors parsed into a ``Job``, bad values refused;
- the streaming layout's unary front (``llm_unary.py``): a request's batch of prompts split into rows,
  and the key of the requests that may share one engine request;
- the BLS (``llm_bls.py``): the engine's token ids as the client's text, incremental while streaming.

This file is copied next to ``model.py``; of the other files it imports ``llm_common`` only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

import llm_common

Inputs = Mapping[str, np.ndarray[Any, Any]]

# -- the LLM-API model ---------------------------------------------------------------------------------

#: Inputs the LLM-API interface declares that the PyTorch engine cannot honour, and which engine can.
API_UNSUPPORTED = {"image_url": "TensorRT-LLM with triton_config.multimodal", "lora_id": "TensorRT-LLM",
                   "lora_name": "TensorRT-LLM", "lora_path": "TensorRT-LLM", "lora_ckpt_source": "TensorRT-LLM"}
#: The ``return_*`` flags of the LLM-API interface a job may set.
API_FLAGS = ("return_finish_reason", "return_stop_reason", "return_cumulative_logprob",
             "sampling_param_return_perf_metrics")
#: Sampling settings the LLM-API interface passes on as ``sampling_param_<key>``.
API_SETTINGS = ("temperature", "top_k", "top_p", "frequency_penalty", "presence_penalty", "seed")
#: The guided-decoding inputs (TensorRT-LLM's ``GuidedDecodingParams`` fields) -> the grammar kind each sets.
GUIDES = {"guided_decoding_param_json": "json_schema", "guided_decoding_param_json_object": "json_object",
          "guided_decoding_param_regex": "regex", "guided_decoding_param_grammar": "grammar"}


def text(value: Any, name: str) -> str:
    """A string input's value as text; bytes that are not UTF-8 are the request's fault."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise llm_common.RequestError(
                f"input {name!r} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return str(value)


@dataclass
class Job:
    """One LLM-API request, parsed: what to generate and which outputs it asked for."""

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
    #: Sequences to generate for the prompt (``sampling_param_n``).
    n: int = 1
    #: ``sampling_param_logprobs``: None for none; else each token's log probability and this many alternatives.
    logprobs: Optional[int] = None
    #: ``sampling_param_logit_bias``: token id -> bias, as sent (checked against the vocabulary by the engine).
    logit_bias: dict[int, float] = field(default_factory=dict)
    #: The one guided-decoding constraint: (kind, text), kind as ``GUIDES`` names them; the engine compiles it.
    guide: Optional[tuple[str, str]] = None
    arrival_ns: int = field(default_factory=time.time_ns)
    first_scheduled_ns: int = 0
    first_token_ns: int = 0
    #: Filled by the engine: prompt token ids, the compiled grammar, the final response, its engine requests.
    ids: list[int] = field(default_factory=list)
    grammar: Any = None
    response: Any = None
    engine_requests: list[Any] = field(default_factory=list)


def is_stop(inputs: Inputs) -> bool:
    """Whether the request is a ``stop`` naming another one (by its request id)."""
    return bool(llm_common.scalar(inputs, "stop", False))


def parse_api(inputs: Inputs, decoupled: bool, request: Any = None, sender: Any = None) -> Job:
    """The LLM-API request these inputs make; RequestError (or ValueError, TypeError) names a bad one.

    ``decoupled``: whether the model answers on response senders (only then may a request stream).
    """
    for name, engine in API_UNSUPPORTED.items():
        if llm_common.values(inputs, name):
            raise llm_common.RequestError(f"input {name!r} is not supported by tritonkit's PyTorch engine; "
                                          f"{engine} serves it", llm_common.UNSUPPORTED)
    texts = llm_common.values(inputs, "text_input")
    if texts is None:
        raise llm_common.RequestError(llm_common.MISSING_PROMPT)
    if len(texts) != 1:
        raise llm_common.RequestError(f"input 'text_input' must hold exactly one prompt (got {len(texts)})")
    best_of = int(llm_common.scalar(inputs, "sampling_param_best_of", 1))
    if best_of != 1:
        raise llm_common.RequestError(f"input 'sampling_param_best_of' is {best_of}; this engine generates one "
                                      "sequence per request (TensorRT-LLM supports best_of > 1)")
    streaming = bool(llm_common.scalar(inputs, "streaming", False))
    if streaming and not decoupled:
        raise llm_common.RequestError("Streaming is only supported in decoupled mode.")
    stops = [text(v, "sampling_param_stop") for v in llm_common.values(inputs, "sampling_param_stop") or []]
    want = {name for name in API_FLAGS if llm_common.scalar(inputs, name, False)}
    settings = {key: llm_common.scalar(inputs, f"sampling_param_{key}") for key in API_SETTINGS}
    template = llm_common.scalar(inputs, "apply_chat_template")
    n = int(llm_common.check_number("sampling_param_n", llm_common.scalar(inputs, "sampling_param_n", 1), 1, 2**31 - 1))
    logprobs = llm_common.scalar(inputs, "sampling_param_logprobs")
    if logprobs is not None:
        logprobs = int(llm_common.check_number("sampling_param_logprobs", logprobs, 0, MAX_TOP_LOGPROBS))
    return Job(request=request, sender=sender, prompt=text(texts[0], "text_input"),
               max_tokens=api_max_tokens(llm_common.scalar(inputs, "sampling_param_max_tokens")), streaming=streaming,
               settings={k: v for k, v in settings.items() if v is not None}, stop_words=stops,
               exclude_input=bool(llm_common.scalar(inputs, "sampling_param_exclude_input_from_output", True)),
               chat_template=None if template is None else bool(template), want=frozenset(want), n=n,
               logprobs=logprobs, logit_bias=logit_bias(llm_common.scalar(inputs, "sampling_param_logit_bias")),
               guide=guide(inputs))


def api_max_tokens(value: Any) -> int:
    """``sampling_param_max_tokens`` as sent (at least 1), or 0 when the request leaves it to the model's limit.

    A value sent is checked as the ensemble layout checks ``max_tokens``: 0 and below are refused, not read
    as "no limit given".
    """
    if value is None:
        return 0
    return int(llm_common.check_number("sampling_param_max_tokens", value, 1))


#: The most alternatives per token ``sampling_param_logprobs`` may ask for (OpenAI's ``top_logprobs`` limit).
MAX_TOP_LOGPROBS = 20


def logit_bias(value: Any) -> dict[int, float]:
    """``sampling_param_logit_bias``: a JSON object of token id -> bias in [-100, 100] (OpenAI's range)."""
    if value is None:
        return {}
    name = "sampling_param_logit_bias"
    raw = text(value, name)
    if not raw.strip():
        return {}
    try:
        found = json.loads(raw)
    except ValueError as exc:
        raise llm_common.RequestError(f"input {name!r} is not valid JSON: {exc}") from None
    if not isinstance(found, dict):
        raise llm_common.RequestError(f"input {name!r} must be a JSON object of token id -> bias "
                                      f"(got {type(found).__name__})")
    bias = {}
    for key, amount in found.items():
        try:
            token = int(key)
        except ValueError:
            raise llm_common.RequestError(f"input {name!r}: key {key!r} is not a token id") from None
        if token < 0:
            raise llm_common.RequestError(f"input {name!r}: token id {token} is negative")
        bias[token] = float(llm_common.check_number(f"{name}[{key}]", amount, -100, 100))
    return bias


def guide(inputs: Inputs) -> Optional[tuple[str, str]]:
    """The request's one guided-decoding constraint (kind, text); RequestError if it sets more than one."""
    found = []
    for name, kind in GUIDES.items():
        value = llm_common.scalar(inputs, name)
        if value is None or value is False or (isinstance(value, bytes) and not value.strip()):
            continue
        found.append((name, kind, "" if kind == "json_object" else text(value, name)))
    if len(found) > 1:
        names = ", ".join(repr(name) for name, _, _ in found)
        raise llm_common.RequestError(f"inputs {names} each set a guided-decoding constraint; send one")
    return (found[0][1], found[0][2]) if found else None


# -- the unary front ---------------------------------------------------------------------------------

#: Engine inputs read once per request, not per prompt: requests that differ in them do not share one.
PER_REQUEST = ("streaming", "return_perf_metrics", "stop")


def split_prompts(client: Inputs) -> list[dict[str, np.ndarray[Any, Any]]]:
    """A client request carrying a batch of prompts (``text_input`` [n, 1]) as n requests of one prompt each.

    Inputs with the batch's first dimension are cut row by row; the others (a shared value) go to every row.
    """
    first = client.get("text_input")
    count = int(first.shape[0]) if first is not None and first.ndim >= 2 else 1
    if count == 1:
        return [dict(client)]
    return [{name: value[row:row + 1] if value.ndim >= 2 and value.shape[0] == count else value
             for name, value in client.items()} for row in range(count)]


def asked_outputs(requested: list[str], declared: list[str]) -> tuple[list[str], frozenset[str]]:
    """The engine outputs to ask for and the client outputs wanted, from the names the client requested.

    A client that names no output wants every output the model declares.
    """
    wanted = frozenset(requested) or frozenset(declared)
    asked = [n for n in declared if n in wanted and n != "text_output"]
    asked += [n for n in ("output_ids", "sequence_length") if n not in asked]
    return asked, wanted


def group_key(request_id: Optional[str], wanted: frozenset[str], tensors: Inputs) -> Any:
    """What requests must share to go to the engine as one request (None: this one goes alone).

    A request with an id goes alone, so that a ``stop`` naming it finds it. The others share an engine
    request when they want the same outputs and their engine tensors agree in names, types, shapes past
    the batch (the prompt's length aside) and in the values read once per request.
    """
    if request_id:
        return None
    return (wanted, tuple(
        (name, array.dtype.str, None if name == "input_ids" else array.shape[1:],
         array.tobytes() if name in PER_REQUEST else b"")
        for name, array in sorted(tensors.items())))


# -- the BLS -----------------------------------------------------------------------------------------


def stream_flag(client: Inputs) -> bool:
    """The BLS client's ``stream`` input (on when absent or empty)."""
    found = client.get("stream")
    return bool(found.reshape(-1)[0]) if found is not None and found.size else True


def strings(*texts: str) -> np.ndarray[Any, Any]:
    """Texts as a string tensor (UTF-8 bytes)."""
    return np.array([t.encode("utf-8") for t in texts], dtype=np.object_)


class TextOutput:
    """The engine's token ids as the client's ``text_output``, one response after another.

    Streaming, each sequence (by ``batch_index``, the prompt of a batch, and ``sequence_index``) is decoded
    incrementally over its whole length, so a delta keeps its leading space and never splits a UTF-8
    character; a delta that is not complete yet waits for the next tokens. Not streaming, each sequence's
    whole text comes with its final response.
    """

    def __init__(self, tokenizer: Any, stream: bool) -> None:
        self.tokenizer = tokenizer
        self.stream = stream
        self.decoders: dict[tuple[int, int], llm_common.IncrementalDecoder] = {}

    def outputs(self, engine: Inputs) -> Optional[dict[str, np.ndarray[Any, Any]]]:
        """The client's outputs for one engine response, or None when it has nothing to send yet.

        ``text_output`` first, then every engine output but the ids as the engine sent it.
        """
        if "output_ids" not in engine:
            return None
        rest = dict(engine)
        sequences = llm_common.engine_sequences(rest.pop("output_ids"), rest.pop("sequence_length", None))
        done = "finish_reason" in rest
        if len(sequences) > 1:  # a non-decoupled engine's merged answer: every sequence, whole
            found: Optional[np.ndarray[Any, Any]] = strings(*llm_common.decode_batch(self.tokenizer, sequences))
        else:
            index = tuple(int(rest[name].reshape(-1)[0]) if name in rest else 0
                          for name in ("batch_index", "sequence_index"))
            found = self.text(index, sequences[0], done)
        return None if found is None else {"text_output": found, **rest}

    def text(self, index: tuple[int, int], ids: list[int], done: bool) -> Optional[np.ndarray[Any, Any]]:
        """``text_output`` for sequence ``index`` (prompt, sequence) after these ids, or None when none is due yet."""
        if done and not self.stream and index not in self.decoders:  # one whole answer: decode it once
            return strings(llm_common.decode_text(self.tokenizer, ids))
        decoder = self.decoders.setdefault(index, llm_common.IncrementalDecoder(self.tokenizer))
        delta = decoder.push(ids)
        if done:
            delta += decoder.flush()
        if not done and (not self.stream or not delta):
            return None
        return strings(delta if self.stream else decoder.emitted)
