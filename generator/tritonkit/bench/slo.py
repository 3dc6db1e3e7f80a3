"""Service-level objectives: parse ``--slo p99_ms=200,ttft_p99_ms=500`` and check every level against it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from tritonkit.bench.summary import LevelResult
from tritonkit.errors import BenchError, Problem, SloMissedError

__all__ = ["SloMissedError", "SloTarget", "check_slo", "parse_slo", "slo_figure"]

_LATENCY = ("p50", "p90", "p95", "p99", "max", "mean")
_STREAM = ("p50", "p90", "p99", "mean")
#: Targets that are upper bounds, and the figure each one reads.
_UPPER = {**{f"{p}_ms": ("latency_ms", p) for p in _LATENCY},
          **{f"ttft_{p}_ms": ("ttft_ms", p) for p in _STREAM},
          **{f"itl_{p}_ms": ("itl_ms", p) for p in _STREAM},
          "error_rate": ("error_rate", "")}
#: Targets that are lower bounds.
_LOWER = {"min_rps": ("throughput_rps", ""), "min_tokens_per_s": ("output_tokens_per_s", "")}


@dataclass(frozen=True)
class SloTarget:
    """One target: ``name`` as written, its bound, and whether it is an upper bound."""

    name: str
    bound: float
    upper: bool


def parse_slo(text: str) -> list[SloTarget]:
    """Parse ``name=value`` pairs separated by commas.

    Raises:
        BenchError: a pair is malformed, names an unknown target, or its value is not a number.

    """
    targets: list[SloTarget] = []
    known = sorted([*_UPPER, *_LOWER])
    for pair in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = pair.partition("=")
        name = name.strip()
        if name not in _UPPER and name not in _LOWER:
            raise BenchError(Problem(f"unknown target {name!r}", path="--slo",
                                     hint=f"use one of {', '.join(known)}"))
        try:
            bound = float(value)
        except ValueError:
            raise BenchError(Problem(f"{name} needs a number (got {value!r})", path="--slo",
                                     hint=f"for example --slo {name}=200")) from None
        targets.append(SloTarget(name, bound, name in _UPPER))
    return targets


def slo_figure(level: LevelResult, name: str) -> Optional[float]:
    """The figure target ``name`` reads from ``level`` (None when it was not measured)."""
    field_name, point = _UPPER.get(name) or _LOWER[name]
    if field_name == "error_rate":
        return level.errors / level.requests if level.requests else None
    value = getattr(level, field_name)
    if point:
        value = (value or {}).get(point)
    return None if value is None or math.isnan(value) else float(value)


def check_slo(levels: list[LevelResult], targets: list[SloTarget], label: str = "level") -> list[Problem]:
    """Return one problem per (level, target) that was missed; a figure that is missing misses its target."""
    problems: list[Problem] = []
    for level in levels:
        for target in targets:
            value = slo_figure(level, target.name)
            missed = value is None or (value > target.bound if target.upper else value < target.bound)
            if missed:
                shown = "not measured" if value is None else f"{value:.4g}"
                bound = "at most" if target.upper else "at least"
                problems.append(Problem(f"missed at {label} {level.level:g}: {target.name} is {shown}, "
                                        f"target {bound} {target.bound:g}", path="--slo"))
    return problems
