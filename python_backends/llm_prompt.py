"""Text to token ids for an LLM pipeline, shared by ``<name>_preprocessing``, the BLS and the unary front.

Applies the chat template when enabled (rendered once at start-up, then filled by string
concatenation), turns stop/bad words into TensorRT-LLM's word-list tensors and embedding-bias words
into a vocabulary-sized bias, and refuses ``max_tokens`` outside 1..``max_output_len`` and prompts
longer than ``max_input_len``. Requests are plain ``{preprocessing input name: array}`` mappings, so
the BLS tokenises in its own process (one hop fewer per request) exactly as preprocessing does.
``StreamKeeper`` holds the BLS and the unary front's finished engine streams until the stub may drop
them (a workaround for the Python backend's stub, see its docstring).

This file is copied next to ``model.py``; it imports nothing of tritonkit nor of Triton.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import numpy as np

import llm_common

#: Preprocessing input -> the client input of the ensemble and BLS that feeds it (for error messages).
_CLIENT = {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "BAD_WORDS_DICT": "bad_words",
           "STOP_WORDS_DICT": "stop_words", "END_ID": "end_id", "PAD_ID": "pad_id",
           "EMBEDDING_BIAS_WORDS": "embedding_bias_words", "EMBEDDING_BIAS_WEIGHTS": "embedding_bias_weights",
           "DECODER_QUERY": "decoder_text_input", "PROMPT_TABLE_EXTRA_ID": "prompt_table_extra_id",
           "APPLY_CHAT_TEMPLATE": "apply_chat_template"}
_SENTINEL = "\x00tritonkit-user\x00"
Inputs = Mapping[str, np.ndarray[Any, Any]]
Prepared = Union[dict[str, np.ndarray[Any, Any]], llm_common.RequestError]
#: Preprocessing output -> the engine input it feeds (NVIDIA's ensemble wiring).
_PRE_TO_ENGINE = {"INPUT_ID": "input_ids", "REQUEST_INPUT_LEN": "input_lengths",
                  "REQUEST_OUTPUT_LEN": "request_output_len", "STOP_WORDS_IDS": "stop_words_list",
                  "BAD_WORDS_IDS": "bad_words_list", "EMBEDDING_BIAS": "embedding_bias", "OUT_END_ID": "end_id",
                  "OUT_PAD_ID": "pad_id"}


def _texts(inputs: Inputs, name: str) -> Optional[list[str]]:
    array = inputs.get(name)
    if array is None:
        return None
    texts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise llm_common.RequestError(f"input {_CLIENT.get(name, name)!r} is not valid UTF-8 ({exc.reason} "
                                          f"at byte {exc.start})") from None
    return texts


def _ints(inputs: Inputs, name: str, rows: int) -> Optional[list[int]]:
    array = inputs.get(name)
    if array is None:
        return None
    values = [int(v) for v in array.reshape(-1)]
    if len(values) != rows:
        raise llm_common.RequestError(f"input {_CLIENT.get(name, name)!r} has {len(values)} values for {rows} "
                                      "prompt(s)")
    return values


def pad_rows(rows: list[np.ndarray[Any, Any]], fill: int) -> np.ndarray[Any, Any]:
    """Token-id rows of different lengths as one int32 ``[rows, longest]`` array, padded with ``fill``."""
    width = max((r.shape[-1] for r in rows), default=0)
    out = np.full((len(rows), width), fill, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : row.shape[-1]] = row
    return out


#: Engine inputs that are TensorRT-LLM word lists, ``[batch, 2, L]``: token ids, then end offsets (-1 past the end).
_WORD_LISTS = ("stop_words_list", "bad_words_list")


def stack_requests(requests: list[dict[str, np.ndarray[Any, Any]]], pad_id: int) -> dict[str, np.ndarray[Any, Any]]:
    """Engine requests of one prompt each as one request with a batch of prompts, as TensorRT-LLM takes them.

    Prompts are padded with ``pad_id`` (``input_lengths`` says where each ends) and word lists to the longest
    (ids 0, offsets -1); every other input is stacked as it is, so the requests must set the same inputs.
    """
    if len(requests) == 1:
        return requests[0]
    names = set(requests[0])
    if any(set(r) != names for r in requests):
        raise llm_common.RequestError("the prompts of one request must set the same inputs (stop_words, "
                                      "embedding_bias_words, ...) for all of them or for none")
    stacked = {"input_ids": pad_rows([r["input_ids"].reshape(-1) for r in requests], pad_id)}
    for name in sorted(names - {"input_ids"}):
        arrays = [r[name] for r in requests]
        if name in _WORD_LISTS:
            width = max(a.shape[-1] for a in arrays)
            arrays = [np.concatenate([a, np.tile(np.array([[[0], [-1]]], dtype=a.dtype), (1, 1, width - a.shape[-1]))],
                                     axis=-1) for a in arrays]
        if any(a.shape[1:] != arrays[0].shape[1:] for a in arrays):
            raise llm_common.RequestError(f"the prompts of one request give input {name!r} different shapes "
                                          f"({', '.join(str(a.shape[1:]) for a in arrays)})")
        stacked[name] = np.concatenate(arrays, axis=0)
    return stacked


class Preprocessor:
    """The tokenizer and the limits of one pipeline, from the parameters tritonkit writes into config.pbtxt."""

    def __init__(self, params: dict[str, str], tokenizer: Any, unsupported: dict[str, str]) -> None:
        self.tokenizer = tokenizer
        self.chat = llm_common.parse_bool(params.get("chat_template", "true"), True)
        self.chat = self.chat and bool(getattr(tokenizer, "chat_template", None))
        self.system_prompt = params.get("system_prompt", "")
        self.max_input_len = int(params["max_input_len"])
        self.max_output_len = int(params["max_output_len"])
        self.unsupported = unsupported
        self.vocab_size = len(tokenizer)
        self.token_bytes = llm_common.longest_token_bytes(tokenizer)
        self.template = self._split_template()
        ends = llm_common.end_ids(tokenizer)
        self.end_id = ends[0] if ends else 0
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.end_id
        stops: list[str] = json.loads(params.get("stop_words") or "[]")
        self.default_stop_ids = [[t] for t in ends[1:]] + llm_common.encode_words(tokenizer, stops)
        self._encode = self._fast_encoder()
        self._no_words = np.zeros((1, 2, 0), dtype=np.int32)
        self._default_stops = self._word_list(self.default_stop_ids)

    def _fast_encoder(self) -> Any:
        """The quickest encoder that gives the same ids as the tokenizer's ``__call__`` on every probe.

        The transformers wrapper costs about as much Python per call as the Rust tokenisation itself, so
        prompts go to the Rust tokenizer; and the chat template's fixed text around the message (the
        system turn, the assistant header: two thirds of a short prompt's tokens) is tokenised once.
        """
        slow = self._slow_encode
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return slow
        special = not self.chat
        messages = ["Hello there, \u00e9t\u00e9 {x}!", "  leading spaces\n\nand lines\t", "\u4f60\u597d 123",
                    "\n\n\nstarts with lines", "ends with spaces   ", "ends with a line\n", "\ttab", "x",
                    "emoji \U0001f600 and digits 20261130", f"a {self.tokenizer.eos_token or ''} inside"]
        formatted = [self._format(m) for m in messages]
        expected = slow(formatted)

        def whole(prompts: list[str]) -> list[list[int]]:  # one call each: no thread pool (see llm_common)
            return [backend.encode(p, add_special_tokens=special).ids for p in prompts]

        if whole(formatted) != expected or whole(messages) != slow(messages):
            return slow
        fixed = self._fixed_parts(backend)
        if fixed is None:
            return whole
        head, tail, head_ids, tail_ids = fixed

        def middle(prompts: list[str]) -> list[list[int]]:
            return [head_ids + backend.encode(p[head:len(p) - tail], add_special_tokens=False).ids + tail_ids
                    for p in prompts]

        return middle if middle(formatted) == expected else whole

    def _fixed_parts(self, backend: Any) -> Optional[tuple[int, int, list[int], list[int]]]:
        """The template's text that tokenises the same whatever the message, with its ids; None if there is none.

        That is the text up to the end of the last added token before the message, and from the first added
        token after it: a tokenizer splits its input at added tokens before anything else. Returns the two
        lengths in characters and the two id lists.
        """
        if self.template is None:
            return None
        before, after = self.template
        added = set(getattr(self.tokenizer, "added_tokens_decoder", {}) or {})
        found = backend.encode(before, add_special_tokens=False)
        head = max((end for token, (_, end) in zip(found.ids, found.offsets) if token in added), default=0)
        found = backend.encode(after, add_special_tokens=False)
        tail_start = next((start for token, (start, _) in zip(found.ids, found.offsets) if token in added), len(after))
        if not head and tail_start == len(after):
            return None
        return (head, len(after) - tail_start, backend.encode(before[:head], add_special_tokens=False).ids,
                backend.encode(after[tail_start:], add_special_tokens=False).ids)

    def _encode_as_is(self, prompts: list[str]) -> list[list[int]]:
        """Prompts templated already: the tokenizer's special tokens only where the text lacks them."""
        return [[int(t) for t in self.tokenizer.encode(p, add_special_tokens=llm_common.adds_special_tokens(
            self.tokenizer, p))] for p in prompts]

    def _slow_encode(self, prompts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(prompts, add_special_tokens=not self.chat)["input_ids"]]

    def _render(self, text: str) -> str:
        return llm_common.render_chat(self.tokenizer, self.system_prompt, text)

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
        llm_common.check_prompt_present(text)
        if not self.chat:
            return text
        if self.template is not None:
            return self.template[0] + text + self.template[1]
        return self._render(text)

    def _bias(self, inputs: Inputs, rows: int) -> np.ndarray[Any, Any]:
        words = _texts(inputs, "EMBEDDING_BIAS_WORDS") or []
        array = inputs.get("EMBEDDING_BIAS_WEIGHTS")
        weights = [] if array is None else [float(w) for w in array.reshape(-1)]
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

    def _refuse_unsupported(self, inputs: Inputs) -> None:
        for name, why in self.unsupported.items():
            array = inputs.get(name)
            if array is not None and array.size:
                raise llm_common.RequestError(f"input {_CLIENT.get(name, name)!r} is not supported by tritonkit's "
                                              f"preprocessing: {why}", llm_common.UNSUPPORTED)

    @staticmethod
    def _word_list(sequences: list[list[int]]) -> np.ndarray[Any, Any]:
        return llm_common.words_to_list(sequences)[np.newaxis]

    def _words(self, inputs: Inputs, name: str, rows: int, defaults: list[list[int]]) -> np.ndarray[Any, Any]:
        words = [w for w in _texts(inputs, name) or [] if w]
        if not words:  # the common case: the lists made at start-up
            single = self._default_stops if defaults else self._no_words
            return single if rows == 1 else np.repeat(single, rows, axis=0)
        sequences = defaults + [s for s in llm_common.encode_words(self.tokenizer, words) if s not in defaults]
        return np.repeat(self._word_list(sequences), rows, axis=0)

    def parse(self, inputs: Inputs) -> dict[str, Any]:
        """Check one request's inputs and format its prompts; raise RequestError naming the client's input."""
        self._refuse_unsupported(inputs)
        texts = _texts(inputs, "QUERY")
        if texts is None:
            raise llm_common.RequestError(llm_common.MISSING_PROMPT)
        if not texts:
            raise llm_common.RequestError("input 'text_input' holds no prompt")
        wanted = _ints(inputs, "REQUEST_OUTPUT_LEN", len(texts))
        if wanted is None:
            raise llm_common.RequestError("input 'max_tokens' is missing")
        for value in wanted:
            if value < 1:
                raise llm_common.RequestError(f"input 'max_tokens' must be at least 1 (got {value})")
        for text in texts:
            llm_common.check_prompt_bytes(text, self.max_input_len, self.token_bytes)
        # apply_chat_template false: the prompt is sent as it is (the OpenAI gateway templated the whole
        # conversation); a request may turn the template off, never on for a tokenizer that has none.
        as_is = self.chat and llm_common.scalar(inputs, "APPLY_CHAT_TEMPLATE") is False
        for text in texts if as_is else ():
            llm_common.check_prompt_present(text)
        return {
            "prompts": list(texts) if as_is else [self._format(t) for t in texts],
            "as_is": as_is,
            # More than max_output_len is clamped to it, as in every layout: the answer ends with finish
            # reason 'length' where the limit cut it.
            "output_len": [min(value, self.max_output_len) for value in wanted],
            "bias": self._bias(inputs, len(texts)),
            "end_id": _ints(inputs, "END_ID", len(texts)) or [self.end_id] * len(texts),
            "pad_id": _ints(inputs, "PAD_ID", len(texts)) or [self.pad_id] * len(texts),
            "stop": self._words(inputs, "STOP_WORDS_DICT", len(texts), self.default_stop_ids),
            "bad": self._words(inputs, "BAD_WORDS_DICT", len(texts), []),
        }

    def tensors(self, parsed: dict[str, Any], encoded: list[list[int]]) -> dict[str, np.ndarray[Any, Any]]:
        """Preprocessing's outputs for one parsed request whose prompts tokenised to ``encoded``."""
        for ids in encoded:
            llm_common.check_prompt_tokens(len(ids), self.max_input_len)
        rows = [np.array(ids, dtype=np.int32) for ids in encoded]
        return {
            "INPUT_ID": pad_rows(rows, parsed["pad_id"][0]),
            "REQUEST_INPUT_LEN": np.array([[len(ids)] for ids in encoded], dtype=np.int32),
            "DECODER_INPUT_ID": np.array([[v] for v in parsed["pad_id"]], dtype=np.int32),
            "REQUEST_DECODER_INPUT_LEN": np.ones((len(encoded), 1), dtype=np.int32),
            "REQUEST_OUTPUT_LEN": np.array([[v] for v in parsed["output_len"]], dtype=np.int32),
            "STOP_WORDS_IDS": parsed["stop"],
            "BAD_WORDS_IDS": parsed["bad"],
            "EMBEDDING_BIAS": parsed["bias"],
            "OUT_END_ID": np.array([[v] for v in parsed["end_id"]], dtype=np.int32),
            "OUT_PAD_ID": np.array([[v] for v in parsed["pad_id"]], dtype=np.int32),
        }

    def prepare(self, requests: list[Inputs]) -> list[Prepared]:
        """Every request's outputs (or its error), with the prompts of all of them tokenised in one call."""
        parsed: list[Any] = []
        for inputs in requests:
            try:
                parsed.append(self.parse(inputs))
            except (llm_common.RequestError, ValueError) as exc:
                parsed.append(exc if isinstance(exc, llm_common.RequestError) else llm_common.RequestError(str(exc)))
        prompts = [p for item in parsed if isinstance(item, dict) and not item["as_is"] for p in item["prompts"]]
        templated = iter(self._encode(prompts) if prompts else [])
        encoded = [ids for item in parsed if isinstance(item, dict)
                   for ids in (self._encode_as_is(item["prompts"]) if item["as_is"]
                               else [next(templated) for _ in item["prompts"]])]
        results: list[Prepared] = []
        start = 0
        for item in parsed:
            if not isinstance(item, dict):
                results.append(item)
                continue
            count = len(item["prompts"])
            try:
                results.append(self.tensors(item, encoded[start:start + count]))
            except llm_common.RequestError as exc:
                results.append(exc)
            start += count
        return results


def _batched(value: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A client tensor as a batch of one: scalars as [1, 1], the rest as they came (they carry the batch)."""
    return value.reshape(1, 1) if value.size == 1 and value.ndim <= 2 else value


class Router:
    """A client request (the ensemble's or the BLS's inputs) to the engine's tensors, preprocessing done here.

    Reads the parameters tritonkit writes for the BLS and the unary front: the routes of client inputs
    (``preprocessing_inputs``, ``engine_inputs``), the inputs refused (``unsupported_inputs``,
    ``preprocessing_unsupported_inputs``) and preprocessing's own.
    """

    def __init__(self, params: dict[str, str], tokenizer: Any, front: str) -> None:
        self.front = front
        self.pre = Preprocessor(params, tokenizer, json.loads(params.get("preprocessing_unsupported_inputs") or "{}"))
        self.unsupported: dict[str, str] = json.loads(params.get("unsupported_inputs") or "{}")
        self.to_pre: dict[str, str] = json.loads(params.get("preprocessing_inputs") or "{}")
        self.to_engine: dict[str, str] = json.loads(params.get("engine_inputs") or "{}")

    def preprocess(self, client: Inputs) -> dict[str, np.ndarray[Any, Any]]:
        """Preprocessing's outputs for this request, computed as ``<name>_preprocessing`` computes them."""
        for name, why in self.unsupported.items():
            value = client.get(name)
            if value is not None and value.size and (value.dtype != np.bool_ or value.any()):
                raise llm_common.RequestError(f"input {name!r} is not supported by tritonkit's {self.front}: {why}",
                                              llm_common.UNSUPPORTED)
        inputs = {}
        for name, step in self.to_pre.items():
            value = client.get(name)
            if value is not None:
                inputs[step] = value.reshape(1, -1)
        result = self.pre.prepare([inputs])[0]
        if isinstance(result, llm_common.RequestError):
            raise result
        return result

    def engine_tensors(self, client: Inputs, stream: bool) -> dict[str, np.ndarray[Any, Any]]:
        """The engine request: TensorRT-LLM's tensor names, batch of one, every client input routed."""
        pre = self.preprocess(client)
        length = int(pre["REQUEST_INPUT_LEN"].reshape(-1)[0])
        tensors = {"input_ids": pre["INPUT_ID"].reshape(1, -1)[:, :length]}
        for name in ("REQUEST_INPUT_LEN", "REQUEST_OUTPUT_LEN", "OUT_END_ID", "OUT_PAD_ID"):
            tensors[_PRE_TO_ENGINE[name]] = pre[name].reshape(1, 1)
        for name in ("STOP_WORDS_IDS", "BAD_WORDS_IDS", "EMBEDDING_BIAS"):
            if pre[name].shape[-1] > 0:
                tensors[_PRE_TO_ENGINE[name]] = pre[name].reshape(1, *pre[name].shape[1:])
        for name, engine_name in self.to_engine.items():
            value = client.get(name)
            if value is not None:
                tensors[engine_name] = _batched(value)
        tensors["streaming"] = np.array([[stream]], dtype=np.bool_)
        return tensors


class StreamKeeper:
    """Holds finished decoupled BLS streams until the stub's utility thread has let go of them.

    Works around the Python backend's stub (Triton 2.51; python_backend's main branch still does the
    same in 2026): when a stream ends, the stub queues its clean-up to its stub-to-parent thread, which
    erases the stream's ``ResponseIterator`` from a map without holding the GIL. If Python has dropped
    the stream by then, the iterator dies on that thread, and with it the engine's responses and their
    numpy arrays: Python objects freed without the GIL, which corrupts the allocator under the threads
    that run Python meanwhile (the unary front's stub died in ``pymalloc_alloc`` under
    concurrency-8 load). ``request.is_cancelled()`` is sent by that same thread, first in first out,
    and waits for it; so once it returns False, every clean-up queued before it is done and the streams
    kept before the call are freed here, under the GIL. A True answer may come from a cache without
    that round trip, so then the streams stay for the next check. Checks cost a round trip to the
    server, so the fronts check once per ``limit`` streams, not once per stream.
    """

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._kept: list[Any] = []

    def keep(self, stream: Iterable[Any], request: Any) -> None:
        """Hold ``stream``, read to its end; with ``limit`` held, let them go with a check of ``request``.

        ``request`` must be one the model has not answered yet (its own request object is still valid).
        """
        with self._lock:
            self._kept.append(stream)
            full = len(self._kept) >= self.limit
        if full:
            self.is_cancelled(request)

    def is_cancelled(self, request: Any) -> bool:
        """``request.is_cancelled()``; when False, also drop the streams kept before the call."""
        with self._lock:
            kept, self._kept = self._kept, []
        if request.is_cancelled():
            with self._lock:
                self._kept.extend(kept)
            return True
        return False
