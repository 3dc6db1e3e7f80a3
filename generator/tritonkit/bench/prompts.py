"""Prompts for LLM pipelines: read from a file, or synthetic prompts of a set token length."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from tritonkit.bench.options import BenchError
from tritonkit.bench.payload import ModelInfo, Payload, optional_input
from tritonkit.errors import Problem
from tritonkit.triton.llmapi import REQUEST_NAMES, interface_of

__all__ = ["PromptSet", "TokenCounter", "llm_payloads", "load_tokenizer", "read_prompts", "synthetic_prompts"]

_TEXT = ("the quick brown fox jumps over a lazy dog while seven wise owls watch from tall pine trees near "
         "quiet rivers under bright morning skies and distant mountains hold old stories")
_WORDS = tuple(_TEXT.split(" "))


@dataclass(frozen=True)
class PromptSet:
    """Prompts to send, and whether their token lengths are exact or approximate."""

    texts: tuple[str, ...]
    exact_tokens: bool
    note: str


class TokenCounter:
    """Counts tokens with a real tokenizer, or approximates one token per whitespace word."""

    def __init__(self, tokenizer: Optional[Any] = None) -> None:
        self._tokenizer = tokenizer

    @property
    def exact(self) -> bool:
        """True when counts come from a real tokenizer."""
        return self._tokenizer is not None

    def count(self, text: str) -> int:
        """Return the number of tokens in ``text`` (no special tokens added)."""
        if self._tokenizer is None:
            return len(text.split())
        return len(self._tokenizer.encode(text, add_special_tokens=False))


def load_tokenizer(source: str) -> Any:
    """Load a Hugging Face tokenizer from a folder, a hub name in the local cache, or a GGUF file.

    Raises:
        BenchError: transformers is missing or the tokenizer cannot be loaded.

    """
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise BenchError(Problem("--tokenizer needs the transformers package",
                                 hint="pip install 'tritonkit[llm]'")) from None
    path = Path(source)
    try:
        if path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise BenchError(Problem(f"cannot load tokenizer {source}: {exc}",
                                 hint="give a folder with tokenizer files or a .gguf file")) from None


def _exact_prompt(tokenizer: Any, tokens: int, offset: int) -> str:
    words = [_WORDS[(offset + i) % len(_WORDS)] for i in range(tokens * 2 + 8)]
    ids = tokenizer.encode(" ".join(words), add_special_tokens=False)[:tokens]
    text: str = tokenizer.decode(ids)
    # Decoding and encoding again can merge or split at the cut; trim until the count is exact.
    for _ in range(8):
        again = tokenizer.encode(text, add_special_tokens=False)
        if len(again) == tokens:
            return text
        text = tokenizer.decode(again[:tokens] if len(again) > tokens else again)
        if len(again) < tokens:
            break
    return text


def synthetic_prompts(tokens: int, count: int, tokenizer: Optional[Any] = None) -> PromptSet:
    """Return ``count`` different prompts of ``tokens`` tokens (exact with a tokenizer, else words)."""
    if tokenizer is None:
        texts = tuple(" ".join(_WORDS[(k * 7 + i) % len(_WORDS)] for i in range(tokens))
                      for k in range(count))
        note = f"prompts of {tokens} words, about {tokens} tokens; pass --tokenizer for exact lengths"
        return PromptSet(texts, False, note)
    texts = tuple(_exact_prompt(tokenizer, tokens, k * 7) for k in range(count))
    return PromptSet(texts, True, f"prompts of exactly {tokens} tokens")


def read_prompts(path: Path) -> PromptSet:
    """Read prompts: one per line, or JSON lines with a ``text``, ``prompt`` or ``text_input`` field.

    Raises:
        BenchError: the file cannot be read or holds no prompt.

    """
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise BenchError(Problem(f"cannot read prompts: {exc.strerror}", path=str(path))) from None
    texts: list[str] = []
    for number, line in enumerate(lines, start=1):
        if path.suffix != ".jsonl":
            texts.append(line)
            continue
        try:
            record = json.loads(line)
            texts.append(str(next(record[k] for k in ("text", "prompt", "text_input") if k in record)))
        except (json.JSONDecodeError, StopIteration, TypeError):
            raise BenchError(Problem("each line must be a JSON object with a text, prompt or text_input "
                                     "field",
                                     path=str(path), line=number)) from None
    if not texts:
        raise BenchError(Problem("the prompts file holds no prompt", path=str(path)))
    return PromptSet(tuple(texts), False, f"{len(texts)} prompts from {path.name}")


def _scalar(value: Any, dtype: Any, batched: bool) -> npt.NDArray[Any]:
    array = np.array([value], dtype=dtype)
    return array.reshape(1, 1) if batched else array


def llm_payloads(model: ModelInfo, prompts: PromptSet, output_tokens: int, stream: bool) -> list[Payload]:
    """Return one payload per prompt in the model's interface: the prompt, max tokens, streaming."""
    batched = model.max_batch_size > 0
    names = REQUEST_NAMES[interface_of(frozenset(t.name for t in model.inputs))]
    payloads: list[Payload] = []
    for text in prompts.texts:
        payload = {"text_input": _scalar(text.encode(), np.object_, batched)}
        if "sampling" in names:
            settings = json.dumps({"max_tokens": output_tokens, "ignore_eos": True}).encode()
            payload[names["sampling"]] = _scalar(settings, np.object_, batched)
        else:
            payload[names["max_tokens"]] = _scalar(output_tokens, np.int32, batched)
        if optional_input(model, names["stream"]) is not None:
            payload[names["stream"]] = _scalar(stream, np.bool_, batched)
        if optional_input(model, names["answer_only"]) is not None:  # generated tokens only, as measured
            payload[names["answer_only"]] = _scalar(True, np.bool_, batched)
        payloads.append(payload)
    return payloads
