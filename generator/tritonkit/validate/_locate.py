"""Find the line and column where each field of a config.pbtxt starts, for located messages.

The scan is tolerant: it records what it can and stops quietly at text it cannot follow (the
protobuf parser reports malformed text itself). A field path is a tuple such as
``("input", 1, "dims")``: names of fields, indexes of repeated entries in file order, and for map
entries (``input_map``, ``parameters`` ...) the entry's ``key`` in place of the index.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from typing import Optional, Union

__all__ = ["Locator", "PathPart", "Spot"]

PathPart = Union[str, int]
Spot = tuple[Optional[int], Optional[int]]

_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\f\v]+)|(?P<newline>\n)|(?P<comment>\#[^\n]*)"""
    r"""|(?P<string>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)"""
    r"""|(?P<punct>[{}\[\]<>:,;])|(?P<word>[^\s{}\[\]<>:,;"'\#]+)"""
)
_CLOSERS = {"{": "}", "<": ">"}


def _spellings(path: tuple[PathPart, ...]) -> list[tuple[PathPart, ...]]:
    """Return ``path`` as given and with index 0 after each singular message field callers leave out.

    Stored paths carry an index after every message-valued field (``("dynamic_batching", 0,
    "preferred_batch_size", 1)``); callers write ``("dynamic_batching", "preferred_batch_size", 1)``.
    The last part may be a map key rather than a field, so it is tried both ways.
    """
    full: list[PathPart] = []
    for part, following in zip(path, (*path[1:], None)):
        full.append(part)
        if isinstance(part, str) and isinstance(following, str):
            full.append(0)
    keyed = [*full[:-2], full[-1]] if len(full) >= 2 and full[-2] == 0 and isinstance(path[-1], str) else full
    return [path, tuple(full), tuple(keyed)]


class _Token:
    __slots__ = ("col", "line", "text")

    def __init__(self, text: str, line: int, col: int) -> None:
        self.text, self.line, self.col = text, line, col


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    line, line_start = 1, 0
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "newline":
            line, line_start = line + 1, match.end()
        elif kind in ("string", "punct", "word"):
            out.append(_Token(match.group(), line, match.start() - line_start + 1))
    return out


class Locator:
    """Field path -> (line, col) of where the field is written, both 1-based."""

    def __init__(self, text: str) -> None:
        self._spots: dict[tuple[PathPart, ...], tuple[int, int]] = {}
        self._toks = _tokens(text)
        self._pos = 0
        with contextlib.suppress(IndexError, ValueError):  # malformed text: keep what was found
            self._message((), None)

    def find(self, *path: PathPart) -> Spot:
        """Return where ``path`` is written, or its nearest written parent, or (None, None)."""
        for end in range(len(path), 0, -1):
            for candidate in _spellings(tuple(path[:end])):
                spot = self._spots.get(candidate)
                if spot is not None:
                    return spot
        return (None, None)

    def has(self, *path: PathPart) -> bool:
        """True when ``path`` itself is written in the text (proto3 cannot tell 0 from absent)."""
        return any(candidate in self._spots for candidate in _spellings(tuple(path)))

    def _peek(self) -> Optional[str]:
        return self._toks[self._pos].text if self._pos < len(self._toks) else None

    def _take(self) -> _Token:
        tok = self._toks[self._pos]
        self._pos += 1
        return tok

    def _mark(self, path: tuple[PathPart, ...], tok: _Token) -> None:
        self._spots.setdefault(path, (tok.line, tok.col))

    def _message(self, path: tuple[PathPart, ...], closer: Optional[str]) -> dict[str, str]:
        counts: dict[str, int] = defaultdict(int)
        scalars: dict[str, str] = {}
        while self._peek() is not None and self._peek() != closer:
            name = self._take()
            if name.text in (",", ";"):
                continue
            if self._peek() == ":":
                self._take()
            self._mark((*path, name.text), name)
            self._value(path, name, counts, scalars)
        if closer is not None:
            self._take()
        return scalars

    def _value(self, path: tuple[PathPart, ...], name: _Token, counts: dict[str, int],
               scalars: dict[str, str]) -> None:
        head = self._peek()
        if head == "[":
            self._take()
            while self._peek() not in ("]", None):
                if self._peek() == ",":
                    self._take()
                    continue
                self._element(path, name, counts, scalars, in_list=True)
            self._take()
        else:
            self._element(path, name, counts, scalars, in_list=False)

    def _element(self, path: tuple[PathPart, ...], name: _Token, counts: dict[str, int],
                 scalars: dict[str, str], in_list: bool) -> None:
        field = name.text
        index = counts[field]
        counts[field] += 1
        tok = self._take()
        if tok.text in _CLOSERS:
            # An entry of `field [ {...}, {...} ]` is located at its brace, a `field {...}` at its name.
            self._mark((*path, field, index), tok if in_list else name)
            inner = self._message((*path, field, index), _CLOSERS[tok.text])
            if "key" in inner:
                self._mark((*path, field, inner["key"]), name)
            return
        self._mark((*path, field, index), tok)
        scalars.setdefault(field, tok.text.strip("\"'"))
