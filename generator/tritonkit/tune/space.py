"""The search space of ``tune``: the settings that matter for one spec entry, their values, and candidates.

A classic model's space is ``max_batch_size``, ``preferred_batch_size``, ``max_queue_delay_microseconds``
(``off``: no dynamic batching), ``instance_count`` and ``instance_kind``; an LLM's (tritonkit's PyTorch
engine) is ``max_batch_size``, ``prefill_chunk`` (the prompt tokens one engine step takes: the token budget
per step and chunked prefill in one setting), ``free_gpu_memory_fraction`` (the KV cache's share, GPU only)
and ``instance_count``. Each dimension's values are ordered, so the search can step along it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Union

from tritonkit.errors import Problem, TuneError

__all__ = [
    "CLASSIC_DIMENSIONS",
    "LLM_DIMENSIONS",
    "Candidate",
    "Dimension",
    "Space",
    "Value",
    "format_value",
    "parse_dimension",
]

#: One setting's value: a whole number, a fraction, ``None`` (``off`` / ``none``), a kind, or a list of sizes.
Value = Union[int, float, str, None, tuple[int, ...]]

#: In the order the search steps along them: where the model runs, then dynamic batching (the largest gain:
#: 3.89x over batching off for the default example on an H200), then instances, then the batch's size.
CLASSIC_DIMENSIONS = ("instance_kind", "max_queue_delay_microseconds", "instance_count", "max_batch_size",
                      "preferred_batch_size")
LLM_DIMENSIONS = ("instance_count", "max_batch_size", "prefill_chunk", "free_gpu_memory_fraction")
_KINDS = ("cpu", "gpu")


def format_value(value: Value) -> str:
    """A value as the CLI and the report write it: ``off``, ``none``, ``8+16``, ``0.9``, ``gpu``."""
    if value is None:
        return "off"
    if isinstance(value, tuple):
        return "+".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _parse_one(name: str, text: str) -> Value:
    text = text.strip().lower()
    if name == "instance_kind":
        if text not in _KINDS:
            raise ValueError(f"{text!r} is not cpu or gpu")
        return text
    if name == "preferred_batch_size":
        if text in ("none", ""):
            return ()
        sizes = tuple(int(part) for part in text.split("+"))
        if any(size < 1 for size in sizes):
            raise ValueError(f"{text!r} has a size below 1")
        return tuple(sorted(set(sizes)))
    if name == "max_queue_delay_microseconds" and text == "off":
        return None
    if name == "free_gpu_memory_fraction":
        fraction = float(text)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"{text!r} is not a fraction in (0, 1]")
        return fraction
    number = int(text)
    if number < (0 if name == "max_queue_delay_microseconds" else 1):
        raise ValueError(f"{text!r} is too small")
    return number


def _sort_key(value: Value) -> tuple[float, ...]:
    if value is None:
        return (-1.0,)
    if isinstance(value, str):
        return (float(_KINDS.index(value)),)
    if isinstance(value, tuple):
        return (float(len(value) > 0), *(float(v) for v in value))
    return (float(value),)


def parse_dimension(text: str, allowed: Sequence[str]) -> tuple[str, tuple[Value, ...]]:
    """Parse ``--space NAME=V1,V2,...`` into the dimension's name and its ordered values.

    Raises:
        TuneError: the text has no ``=``, names a setting this kind of model does not tune, or a value is
            not one the setting takes.

    """
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not values.strip():
        raise TuneError(Problem(f"expects NAME=V1,V2,... (got {text!r})", path="--space",
                                hint="for example --space instance_count=1,2,4"))
    if name not in allowed:
        raise TuneError(Problem(f"{name!r} is not a setting tune searches for this model", path="--space",
                                hint=f"use one of {', '.join(allowed)}"))
    parsed: list[Value] = []
    for part in values.split(","):
        try:
            value = _parse_one(name, part)
        except ValueError as exc:
            raise TuneError(Problem(f"{name}: {exc}", path="--space", hint=_value_hint(name))) from None
        if value not in parsed:
            parsed.append(value)
    return name, tuple(sorted(parsed, key=_sort_key))


def _value_hint(name: str) -> str:
    return {"instance_kind": "use cpu or gpu",
            "preferred_batch_size": "use none, a size (8) or several joined by + (8+16)",
            "max_queue_delay_microseconds": "use off (no dynamic batching) or microseconds, e.g. off,0,100,1000",
            "free_gpu_memory_fraction": "use fractions, e.g. 0.5,0.9"}.get(name, "use whole numbers, e.g. 1,2,4")


@dataclass(frozen=True)
class Candidate:
    """One point of the space: a value for every dimension, in the space's order."""

    items: tuple[tuple[str, Value], ...]

    def __getitem__(self, name: str) -> Value:
        return dict(self.items)[name]

    def get_or(self, name: str, default: Value) -> Value:
        """The value of ``name``, or ``default`` when the space does not search it."""
        return next((v for n, v in self.items if n == name), default)

    def has(self, name: str) -> bool:
        """True when the space searches ``name``."""
        return any(n == name for n, _ in self.items)

    def with_value(self, name: str, value: Value) -> Candidate:
        """The same candidate with one dimension changed."""
        return Candidate(tuple((n, value if n == name else v) for n, v in self.items))

    @property
    def key(self) -> str:
        """``instance_count=2 max_queue_delay_microseconds=100 ...``: names a candidate in the resume file."""
        return " ".join(f"{name}={format_value(value)}" for name, value in self.items)

    def to_dict(self) -> dict[str, str]:
        """Every value as the CLI writes it."""
        return {name: format_value(value) for name, value in self.items}


@dataclass(frozen=True)
class Dimension:
    """One setting and its values, in increasing order."""

    name: str
    values: tuple[Value, ...]

    def neighbour(self, value: Value, step: int) -> Optional[Value]:
        """The value ``step`` places from ``value`` (None past either end)."""
        index = self.values.index(value) + step
        return self.values[index] if 0 <= index < len(self.values) else None

    def nearest(self, value: Value) -> Value:
        """The value of this dimension closest to ``value`` (by order), for projecting a seed onto the space."""
        if value in self.values:
            return value
        target = _sort_key(value)
        return min(self.values, key=lambda v: (_distance(_sort_key(v), target), _sort_key(v)))


def _distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) + abs(len(a) - len(b))


@dataclass(frozen=True)
class Space:
    """The dimensions searched; a candidate is one value of each."""

    dimensions: tuple[Dimension, ...]

    def dimension(self, name: str) -> Dimension:
        """The dimension called ``name``."""
        return next(d for d in self.dimensions if d.name == name)

    def candidate(self, values: Mapping[str, Value]) -> Candidate:
        """A candidate from a value per dimension, each projected onto the dimension's values."""
        return Candidate(tuple((d.name, d.nearest(values[d.name])) for d in self.dimensions))

    def __iter__(self) -> Iterator[Candidate]:
        """Every candidate of the product, in a fixed order (what brute force runs)."""
        def walk(index: int, chosen: tuple[tuple[str, Value], ...]) -> Iterator[Candidate]:
            if index == len(self.dimensions):
                yield Candidate(chosen)
                return
            dimension = self.dimensions[index]
            for value in dimension.values:
                yield from walk(index + 1, (*chosen, (dimension.name, value)))

        return walk(0, ())

    @property
    def size(self) -> int:
        """How many candidates the product holds."""
        total = 1
        for dimension in self.dimensions:
            total *= len(dimension.values)
        return total

    def to_dict(self) -> dict[str, list[str]]:
        """Each dimension's values as the CLI writes them (what the resume file records)."""
        return {d.name: [format_value(v) for v in d.values] for d in self.dimensions}
