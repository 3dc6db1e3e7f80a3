"""Preprocessing of an LLM pipeline: text to token ids for the whole request batch in one tokenizer call.

Applies the chat template when enabled (rendered once at start-up, then filled by string
concatenation), turns stop/bad words into TensorRT-LLM's word-list tensors and embedding-bias words
into a vocabulary-sized bias, and refuses ``max_tokens`` outside 1..``max_output_len`` and prompts
longer than ``max_input_len``. A malformed request gets an error response of its own, naming the
client's input and the limit.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common

#: Preprocessing input -> the client input of the ensemble and BLS that feeds it (for error messages).
_CLIENT = {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "BAD_WORDS_DICT": "bad_words",
           "STOP_WORDS_DICT": "stop_words", "END_ID": "end_id", "PAD_ID": "pad_id",
           "EMBEDDING_BIAS_WORDS": "embedding_bias_words", "EMBEDDING_BIAS_WEIGHTS": "embedding_bias_weights",
           "DECODER_QUERY": "decoder_text_input", "PROMPT_TABLE_EXTRA_ID": "prompt_table_extra_id"}
_SENTINEL = "\x00tritonkit-user\x00"


def _texts(request: Any, name: str) -> Optional[list[str]]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    texts = []
    for item in tensor.as_numpy().reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise llm_common.RequestError(f"input {_CLIENT.get(name, name)!r} is not valid UTF-8 ({exc.reason} "
                                          f"at byte {exc.start})") from None
    return texts


def _ints(request: Any, name: str, rows: int) -> Optional[list[int]]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = [int(v) for v in tensor.as_numpy().reshape(-1)]
    if len(values) != rows:
        raise llm_common.RequestError(f"input {_CLIENT.get(name, name)!r} has {len(values)} values for {rows} "
                                      "prompt(s)")
    return values


def _pad_rows(rows: list[np.ndarray[Any, Any]], fill: int, dims: int) -> np.ndarray[Any, Any]:
    width = max((r.shape[-1] for r in rows), default=0)
    shape = (len(rows), *(rows[0].shape[:-1] if dims > 1 else ()), width)
    out = np.full(shape, fill, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, ..., : row.shape[-1]] = row
    return out


class TritonPythonModel:
    """The ``<name>_preprocessing`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the tokenizer and the limits written into config.pbtxt by tritonkit."""
        params = llm_common.read_parameters(json.loads(args["model_config"]))
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])
        self.chat = llm_common.parse_bool(params.get("chat_template", "true"), True)
        self.chat = self.chat and bool(getattr(self.tokenizer, "chat_template", None))
        self.system_prompt = params.get("system_prompt", "")
        self.max_input_len = int(params["max_input_len"])
        self.max_output_len = int(params["max_output_len"])
        self.default_stops: list[str] = json.loads(params.get("stop_words") or "[]")
        self.unsupported: dict[str, str] = json.loads(params.get("unsupported_inputs") or "{}")
        self.vocab_size = len(self.tokenizer)
        self.template = self._split_template()
        ends = llm_common.end_ids(self.tokenizer)
        self.end_id = ends[0] if ends else 0
        self.extra_end_tokens = [[t] for t in ends[1:]]
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.end_id
        self.default_stop_ids = self.extra_end_tokens + llm_common.encode_words(self.tokenizer, self.default_stops)

    def _render(self, text: str) -> str:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": text})
        return str(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def _split_template(self) -> Optional[tuple[str, str]]:
        """The chat template's text before and after the user's message, when it inserts the message verbatim.

        Rendering the Jinja template costs more than the rest of preprocessing; a template that only
        places the message is rendered once here and filled by concatenation after that.
        """
        if not self.chat:
            return None
        rendered = self._render(_SENTINEL)
        if rendered.count(_SENTINEL) != 1:
            return None
        before, after = rendered.split(_SENTINEL)
        probe = "Hello there, \u00e9t\u00e9 {x}"
        return (before, after) if self._render(probe) == before + probe + after else None

    def _format(self, text: str) -> str:
        if not text.strip():
            raise llm_common.RequestError("input 'text_input' is empty (a prompt needs at least one character "
                                          "that is not white space)")
        if not self.chat:
            return text
        if self.template is not None:
            return self.template[0] + text + self.template[1]
        return self._render(text)

    def _bias(self, request: Any, rows: int) -> np.ndarray[Any, Any]:
        words = _texts(request, "EMBEDDING_BIAS_WORDS") or []
        tensor = pb_utils.get_input_tensor_by_name(request, "EMBEDDING_BIAS_WEIGHTS")
        weights = [] if tensor is None else [float(w) for w in tensor.as_numpy().reshape(-1)]
        if len(words) != len(weights):
            raise llm_common.RequestError(f"input 'embedding_bias_weights' has {len(weights)} values for "
                                          f"{len(words)} embedding_bias_words (they pair up one to one)")
        if not words:
            return np.zeros((rows, 0), dtype=np.float32)
        bias = np.zeros(self.vocab_size, dtype=np.float32)
        for word, weight in zip(words, weights):
            for ids in llm_common.encode_words(self.tokenizer, [word]):
                bias[ids[0]] += weight
        return np.repeat(bias[np.newaxis], rows, axis=0)

    def _refuse_unsupported(self, request: Any) -> None:
        for name, why in self.unsupported.items():
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None and tensor.as_numpy().size:
                raise llm_common.RequestError(f"input {_CLIENT.get(name, name)!r} is not supported by tritonkit's "
                                              f"preprocessing: {why}")

    def _words(self, request: Any, name: str, rows: int, defaults: list[list[int]]) -> np.ndarray[Any, Any]:
        words = [w for w in _texts(request, name) or [] if w]
        sequences = defaults + [s for s in llm_common.encode_words(self.tokenizer, words) if s not in defaults]
        return np.repeat(llm_common.words_to_list(sequences)[np.newaxis], rows, axis=0)

    def _parse(self, request: Any) -> dict[str, Any]:
        self._refuse_unsupported(request)
        texts = _texts(request, "QUERY")
        if not texts:
            raise llm_common.RequestError("input 'text_input' is missing or empty")
        wanted = _ints(request, "REQUEST_OUTPUT_LEN", len(texts))
        if wanted is None:
            raise llm_common.RequestError("input 'max_tokens' is missing")
        for value in wanted:
            if not 1 <= value <= self.max_output_len:
                raise llm_common.RequestError(f"input 'max_tokens' must be between 1 and max_output_len "
                                              f"{self.max_output_len} (got {value})")
        return {
            "prompts": [self._format(t) for t in texts],
            "output_len": wanted,
            "bias": self._bias(request, len(texts)),
            "end_id": _ints(request, "END_ID", len(texts)) or [self.end_id] * len(texts),
            "pad_id": _ints(request, "PAD_ID", len(texts)) or [self.pad_id] * len(texts),
            "stop": self._words(request, "STOP_WORDS_DICT", len(texts), self.default_stop_ids),
            "bad": self._words(request, "BAD_WORDS_DICT", len(texts), []),
        }

    def _response(self, parsed: dict[str, Any], encoded: list[list[int]]) -> Any:
        for ids in encoded:
            if len(ids) > self.max_input_len:
                raise llm_common.RequestError(
                    f"input 'text_input' has {len(ids)} tokens, more than max_input_len {self.max_input_len}")
        rows = [np.array(ids, dtype=np.int32) for ids in encoded]
        column = [[n] for n in (len(ids) for ids in encoded)]
        tensors = {
            "INPUT_ID": _pad_rows(rows, parsed["pad_id"][0], 1),
            "REQUEST_INPUT_LEN": np.array(column, dtype=np.int32),
            "REQUEST_OUTPUT_LEN": np.array([[v] for v in parsed["output_len"]], dtype=np.int32),
            "STOP_WORDS_IDS": parsed["stop"],
            "BAD_WORDS_IDS": parsed["bad"],
            "EMBEDDING_BIAS": parsed["bias"],
            "OUT_END_ID": np.array([[v] for v in parsed["end_id"]], dtype=np.int32),
            "OUT_PAD_ID": np.array([[v] for v in parsed["pad_id"]], dtype=np.int32),
        }
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in tensors.items()])

    def execute(self, requests: list[Any]) -> list[Any]:
        """Tokenise the prompts of every request in one batched call, then answer each request."""
        parsed: list[Any] = []
        for request in requests:
            try:
                parsed.append(self._parse(request))
            except (llm_common.RequestError, ValueError) as exc:
                parsed.append(exc)
        prompts = [p for item in parsed if isinstance(item, dict) for p in item["prompts"]]
        special = not self.chat
        encoded = self.tokenizer(prompts, add_special_tokens=special)["input_ids"] if prompts else []
        responses, start = [], 0
        for item in parsed:
            if not isinstance(item, dict):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(item))))
                continue
            count = len(item["prompts"])
            try:
                responses.append(self._response(item, encoded[start:start + count]))
            except llm_common.RequestError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            start += count
        return responses
