"""Grammar-constrained decoding for tritonkit's PyTorch engine, with llguidance.

Three parts, used from two threads:

- ``GrammarCompiler`` (one per tokenizer, on the request path): a request's constraint, named after
  TensorRT-LLM's ``GuidedDecodingParams`` (``json_object``, ``json_schema``, ``regex``, ``grammar``), becomes a
  ``Grammar``, cached by its text; a constraint llguidance cannot compile is a ``RequestError`` naming the
  keyword or the position. ``Grammar.matcher()`` gives each request its own ``Matcher``. Both run before the
  request is submitted, so the scheduler's thread never compiles.
- ``Matcher`` (one per request, advanced by the scheduler): ``advance(token)`` after each chosen token
  returns False for a token the grammar refuses (the scheduler fails that request only); ``complete`` and
  ``must_end`` tell when an end id may or must come.
- ``Masks`` (one per scheduler): ``apply(logits, matchers)`` fills one bitmask for a step's constrained rows in
  one llguidance call (its threads share the rows) and sets their refused logits to -inf in place, on the
  logits' device, after the (possibly captured) forward and before the sampler. ``fill`` and ``apply_mask``
  are its two halves, for a scheduler that fills the masks on the CPU while the GPU computes the logits.

Why llguidance, measured by ``benchmarks/grammar_step.py`` (docs/llm.md, "Structured output"): its masks cost
about what xgrammar's do once the forward's own cost is added, it compiles a schema in under a millisecond (a
parser built lazily, not a table over the vocabulary), and it refuses the JSON-schema keywords it does not
implement, naming them, where xgrammar ignores some (``uniqueItems``, ``not``, ``contains``) and lets answers
through that do not validate; outlines-core builds a regular expression, so numeric bounds go unchecked and
"any JSON object" stops at a fixed depth. llguidance is one abi3 wheel with no dependency.

This file is copied next to the LLM models; it imports nothing of tritonkit and knows nothing of Triton.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import llguidance
import llguidance.hf
import numpy as np
import torch

import llm_common

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

JSON_OBJECT = "json_object"
JSON_SCHEMA = "json_schema"
REGEX = "regex"
GRAMMAR = "grammar"
#: The constraint kinds, named after TensorRT-LLM's ``GuidedDecodingParams`` fields.
KINDS = (JSON_OBJECT, JSON_SCHEMA, REGEX, GRAMMAR)
#: JSON answers are written with ``json.dumps``'s separators and no other whitespace: with free whitespace a
#: small model can emit newlines until its token limit and leave the JSON unfinished. A schema's own
#: ``x-guidance`` options (llguidance's) still override these.
JSON_OPTIONS: JsonCompileOptions = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
#: The regex crate's error display: the pattern, a caret line under the fault, then the error.
_REGEX_ERROR = re.compile(r"regex parse error:\n(?P<pattern> +[^\n]*)\n(?P<caret> *\^+)\n(?:error: )?(?P<error>[^\n]*)")
_AT_POSITION = re.compile(r"^at (?P<line>\d+)\((?P<column>\d+)\): ")
#: Compiled constraints kept per compiler, the least recently used dropped first.
CACHE_SIZE = 256


class Matcher:
    """One request's place in its grammar: the tokens accepted so far, and which may come next."""

    def __init__(self, inner: llguidance.LLMatcher, vocab_size: int, end_ids: Sequence[int],
                 grammar_end_ids: Sequence[int]) -> None:
        self._inner = inner
        self.vocab_size = vocab_size
        self.end_ids = frozenset(end_ids)
        #: End ids of the request that llguidance does not allow by itself (all but the tokenizer's first).
        self._extra_end_ids = sorted(self.end_ids - set(grammar_end_ids))
        #: llguidance's end id where the request ends on others only (its own ``end_id``): never allowed.
        self._foreign_end_ids = sorted(set(grammar_end_ids) - self.end_ids)
        self._ended = False

    @property
    def inner(self) -> llguidance.LLMatcher:
        """The llguidance matcher underneath (for the batched mask call)."""
        return self._inner

    def advance(self, token: int) -> bool:
        """Accept ``token``, the request's next token; False when the grammar refuses it (an error)."""
        if self._ended:
            return False
        if token in self.end_ids:
            self._ended = True
            return bool(self._inner.is_accepting())
        return bool(self._inner.consume_token(token))

    @property
    def complete(self) -> bool:
        """The answer so far is a whole one: an end id may come now."""
        return bool(self._inner.is_accepting())

    @property
    def must_end(self) -> bool:
        """Nothing but an end id may come (a closed JSON object, a finished regex)."""
        return bool(self._inner.is_stopped()) or self._inner.is_error()

    @property
    def error(self) -> str:
        """Why the matcher stopped matching (a refused token, a grammar too complex at this point), or ''."""
        if self._ended and not self._inner.is_accepting():
            return "the answer ended before the grammar was complete"
        return str(self._inner.get_error()) if self._inner.is_error() else ""

    def add_end_ids(self, row: np.ndarray[Any, Any]) -> None:
        """Allow this request's own end ids in its bitmask ``row`` (int32 words) when the answer may end."""
        if not (self._extra_end_ids or self._foreign_end_ids):
            return
        bits = row.view(np.uint32)
        for token in self._foreign_end_ids:
            bits[token // 32] &= ~np.uint32(1 << (token % 32))
        if self._inner.is_accepting():
            for token in self._extra_end_ids:
                if token < bits.shape[0] * 32:
                    bits[token // 32] |= np.uint32(1 << (token % 32))


class Grammar:
    """A compiled constraint: a matcher in its start state, copied for each request that uses it."""

    def __init__(self, kind: str, template: llguidance.LLMatcher, vocab_size: int, end_ids: Sequence[int],
                 grammar_end_ids: Sequence[int]) -> None:
        self.kind = kind
        self._template = template
        self._vocab_size = vocab_size
        self._end_ids = tuple(end_ids)
        self._grammar_end_ids = tuple(grammar_end_ids)
        self._lock = threading.Lock()

    def matcher(self, end_ids: Optional[Sequence[int]] = None) -> Matcher:
        """A new matcher for one request; ``end_ids`` are the ids that end its answer (default: the tokenizer's)."""
        with self._lock:
            inner = self._template.deep_copy()
        return Matcher(inner, self._vocab_size, self._end_ids if end_ids is None else end_ids,
                       self._grammar_end_ids)


class GrammarCompiler:
    """Compiles requests' constraints for one tokenizer, thread-safe, with a cache keyed by the constraint text.

    Args:
        tokenizer: a fast Hugging Face tokenizer (llguidance reads its Rust tokenizer).
        end_ids: the ids a finished answer may end with; by default ``llm_common.end_ids(tokenizer)`` (the EOS
            and a chat model's turn end, such as ``<|im_end|>``).

    """

    def __init__(self, tokenizer: Any, end_ids: Optional[Sequence[int]] = None, cache_size: int = CACHE_SIZE) -> None:
        self.end_ids = tuple(llm_common.end_ids(tokenizer) if end_ids is None else end_ids)
        if not self.end_ids:
            raise ValueError("the tokenizer has no end-of-sequence token; pass end_ids")
        # llguidance is given one end id (a list needs a release newer than Python 3.9's last, 1.3); the
        # matchers allow the others themselves (``Matcher.add_end_ids``).
        self._tokenizer = llguidance.hf.from_tokenizer(tokenizer, eos_token=self.end_ids[0])
        self.vocab_size = int(self._tokenizer.vocab_size)
        self._cache: OrderedDict[tuple[str, str], Grammar] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def compile(self, kind: str, text: str = "") -> Grammar:
        """The grammar of a constraint, compiled once per text.

        Kinds: ``json_object`` (``text`` unused), ``json_schema`` (the schema's JSON text), ``regex`` (the whole
        answer must match) or ``grammar`` (EBNF/GBNF as TensorRT-LLM's xgrammar backend takes it,
        ``root ::= ...``, or llguidance's Lark syntax, ``start: ...``).

        Raises:
            llm_common.RequestError: an unknown kind, or a constraint llguidance cannot compile (the message
                names the unsupported keyword or the error's position).

        """
        key = (kind, "" if kind == JSON_OBJECT else text)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        grammar = self._build(kind, key[1])
        with self._lock:
            self._cache[key] = grammar
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return grammar

    def _build(self, kind: str, text: str) -> Grammar:
        source = _llguidance_grammar(kind, text)
        error = llguidance.LLMatcher.validate_grammar(source, self._tokenizer)
        if error:
            raise llm_common.RequestError(f"{kind} cannot be used for constrained decoding: {_tidy(error)}")
        template = llguidance.LLMatcher(self._tokenizer, source, log_level=0)
        # The start state's mask, computed here on the request path: the parser builds its lexer lazily.
        template.compute_bitmask()
        if template.is_error():
            raise llm_common.RequestError(
                f"{kind} cannot be used for constrained decoding: {_tidy(template.get_error())}")
        return Grammar(kind, template, self.vocab_size, self.end_ids, self.end_ids[:1])


def _llguidance_grammar(kind: str, text: str) -> str:
    """The llguidance grammar of a constraint (not yet checked against the tokenizer)."""
    if kind == JSON_OBJECT:
        return str(llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, defaults=JSON_OPTIONS))
    if kind not in KINDS:
        raise llm_common.RequestError(f"unknown constraint kind {kind!r}; use one of {', '.join(KINDS)}")
    if not text.strip():
        raise llm_common.RequestError(f"{kind} is empty; send the {kind} text the answer must follow")
    if kind == REGEX:
        return str(llguidance.LLMatcher.grammar_from_regex(text))
    if kind == GRAMMAR:
        try:
            return str(llguidance.grammar_from("grammar", text))
        except Exception as exc:  # llguidance's GBNF converter is Python code: any parse failure is the text's
            raise llm_common.RequestError(f"grammar cannot be used for constrained decoding: {_tidy(str(exc))}") \
                from None
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise llm_common.RequestError(f"json_schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise llm_common.RequestError(f"json_schema must be a JSON object (got {type(schema).__name__})")
    return str(llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS))


def _tidy(message: str) -> str:
    """An llguidance message on one line, with the position of the error in the user's own text."""
    found = _REGEX_ERROR.search(message)
    if found:  # the regex crate's caret display becomes a character position
        pattern = found["pattern"]
        column = found["caret"].index("^") - (len(pattern) - len(pattern.lstrip(" "))) + 1
        return f"invalid regex {pattern.strip()!r} at character {column}: {found['error'].strip()}"
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if lines and _AT_POSITION.match(lines[0]):  # "at LINE(COLUMN): what", then the text again with a caret
        return _AT_POSITION.sub(r"line \g<line>, column \g<column>: ", lines[0])
    text = " ".join(lines)
    if text.startswith("Unimplemented keys"):
        text += "; remove them from the schema: they cannot be enforced while the answer is written"
    return text


class StepMask(NamedTuple):
    """One step's bitmask, on the CPU: a line of int32 words per constrained row, bit ``t`` allowing token ``t``."""

    bitmask: torch.Tensor
    #: The batch rows the bitmask's lines belong to, in order.
    rows: list[int]


class Masks:
    """One bitmask per step for the constrained rows of a batch, filled in one call and applied in place.

    ``apply`` does both halves. On CUDA they can be split: ``fill`` (CPU work only, from the tokens accepted so
    far) while the GPU computes the step's logits, then ``apply_mask`` once they are there. Keeps its buffers
    between steps: a host bitmask (pinned where CUDA is) and its copy on the logits' device. ``threads`` is
    llguidance's thread count for the masks (default: most CPU cores).
    """

    def __init__(self, threads: Optional[int] = None) -> None:
        self._executor = llguidance.LLExecutor(num_threads=threads)
        self._host: Optional[torch.Tensor] = None
        self._device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._copied: Optional[torch.cuda.Event] = None

    def apply(self, logits: torch.Tensor, matchers: Sequence[Optional[Matcher]]) -> None:
        """Set to -inf every logit the grammar refuses, for each row whose matcher is not None.

        Args:
            logits: ``[B, V]`` (or one row ``[V]``) on the CPU or CUDA; ``V`` may exceed the tokenizer's
                vocabulary (a padded embedding): those logits are refused.
            matchers: one per row; None leaves the row as it is.

        """
        batch = logits.shape[0] if logits.dim() == 2 else 1
        if batch != len(matchers):
            raise ValueError(f"{batch} rows of logits but {len(matchers)} matchers")
        mask = self.fill(matchers)
        if mask is not None:
            self.apply_mask(logits, mask)

    def fill(self, matchers: Sequence[Optional[Matcher]]) -> Optional[StepMask]:
        """The bitmask of the rows whose matcher is not None, in one llguidance call; None when there are none."""
        rows = [index for index, matcher in enumerate(matchers) if matcher is not None]
        if not rows:
            return None
        constrained = [matcher for matcher in matchers if matcher is not None]
        words = (constrained[0].vocab_size + 31) // 32
        if self._host is None or self._host.shape[0] < len(rows) or self._host.shape[1] != words:
            self._host = torch.zeros((max(len(rows), 8), words), dtype=torch.int32,
                                     pin_memory=torch.cuda.is_available())
        if self._copied is not None:  # the last step's copy to the device may still be reading the buffer
            self._copied.synchronize()
            self._copied = None
        host = self._host[:len(rows)]
        self._executor.unsafe_compute_mask_ptr([(m.inner, i) for i, m in enumerate(constrained)], host.data_ptr(),
                                               words * 4, len(rows))
        table = host.numpy()
        for index, matcher in enumerate(constrained):
            matcher.add_end_ids(table[index])
        return StepMask(host, rows)

    def apply_mask(self, logits: torch.Tensor, mask: StepMask) -> None:
        """Set to -inf the logits of ``mask.rows`` whose bit is 0; the logits of other rows stay as they are."""
        table = logits.unsqueeze(0) if logits.dim() == 1 else logits
        if mask.rows[-1] >= table.shape[0]:
            raise ValueError(f"the mask is for row {mask.rows[-1]} but the logits have {table.shape[0]} rows")
        allowed = self._allowed(mask.bitmask, table.device)
        width = min(table.shape[1], allowed.shape[1])
        if len(mask.rows) == table.shape[0]:
            _refuse(table, allowed, width)
            return
        index = torch.tensor(mask.rows, device=table.device)
        part = table.index_select(0, index)
        _refuse(part, allowed, width)
        table.index_copy_(0, index, part)

    def _allowed(self, host: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The bitmask unpacked to ``[rows, words * 32]`` booleans on ``device``."""
        if device.type == "cpu":
            bits = np.unpackbits(host.numpy().view(np.uint8), axis=1, bitorder="little")
            return torch.from_numpy(bits.view(np.bool_))
        words, shifts = self._device_buffers(device, host.shape)
        mask = words[:host.shape[0]]
        mask.copy_(host, non_blocking=True)
        if device.type == "cuda":
            self._copied = torch.cuda.current_stream(device).record_event()
        return ((mask.unsqueeze(-1) >> shifts) & 1).bool().view(host.shape[0], -1)

    def _device_buffers(self, device: torch.device, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        rows = max(shape[0], self._host.shape[0] if self._host is not None else 0)
        found = self._device.get(device)
        if found is None or found[0].shape[0] < shape[0] or found[0].shape[1] != shape[1]:
            shifts = torch.arange(32, dtype=torch.int32, device=device)
            found = (torch.zeros((rows, shape[1]), dtype=torch.int32, device=device), shifts)
            self._device[device] = found
        return found


def _refuse(logits: torch.Tensor, allowed: torch.Tensor, width: int) -> None:
    logits[:, :width].masked_fill_(allowed[:, :width].logical_not(), float("-inf"))
    logits[:, width:] = float("-inf")
