"""The service target as a person states it, and how one measurement is judged against it.

A goal is ``--slo`` (bench's targets: ``p99_ms``, ``ttft_p99_ms``, ``itl_p99_ms``, ``error_rate``, ``min_rps``,
``min_tokens_per_s``) at one load: ``--concurrency N`` (closed loop) or ``--request-rate R`` (open loop).
A candidate that meets every target is ranked by its objective: at a concurrency, its throughput
(requests/s, output tokens/s for an LLM); at a request rate, where every candidate that keeps up has the
same throughput, its headroom under the latency targets (the smallest bound/value). One that misses is
ranked by how far it misses: the largest relative miss over the targets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from tritonkit.bench import LevelResult, SloTarget, parse_slo
from tritonkit.bench.slo import slo_figure
from tritonkit.errors import Problem, TuneError

__all__ = ["Evaluation", "Goal", "figures_of", "parse_goal"]

#: Figures recorded for every run besides the targets' own: the report's columns and the plot's axes.
_RECORDED = ("throughput_rps", "output_tokens_per_s", "p50_ms", "p99_ms", "ttft_p99_ms", "itl_p99_ms",
             "error_rate")


@dataclass(frozen=True)
class Evaluation:
    """One candidate's standing: whether it met every target, its objective, how far it missed, and why."""

    met: bool
    objective: float
    distance: float
    misses: tuple[str, ...]


@dataclass(frozen=True)
class Goal:
    """The targets, the load they must hold at, and whether the model is an LLM (tokens/s, streams)."""

    targets: tuple[SloTarget, ...]
    mode: str
    level: float
    llm: bool

    @property
    def objective_name(self) -> str:
        """What ranks candidates that meet the targets."""
        if self.mode == "rate" and self._latency_targets():
            return "headroom"
        return "output_tokens_per_s" if self.llm else "throughput_rps"

    @property
    def slo_metric(self) -> str:
        """The target figure the plot puts on its x axis: the first latency target, else p99 latency."""
        latency = self._latency_targets()
        return latency[0].name if latency else "p99_ms"

    @property
    def load_label(self) -> str:
        """``concurrency 16`` or ``rate 200/s``."""
        return f"rate {self.level:g}/s" if self.mode == "rate" else f"concurrency {int(self.level)}"

    def describe(self) -> str:
        """``p99_ms <= 20, min_rps >= 100 at concurrency 16``."""
        parts = [f"{t.name} {'<=' if t.upper else '>='} {t.bound:g}" for t in self.targets]
        return f"{', '.join(parts)} at {self.load_label}"

    def _latency_targets(self) -> list[SloTarget]:
        return [t for t in self.targets if t.upper and t.name != "error_rate"]

    def evaluate(self, figures: Mapping[str, Optional[float]]) -> Evaluation:
        """Judge one candidate's figures (its runs' means) against every target."""
        misses: list[str] = []
        distance = 0.0
        for target in self.targets:
            value = figures.get(target.name)
            if value is None or math.isnan(value):
                misses.append(f"{target.name} not measured")
                distance = math.inf
                continue
            over = _relative_miss(target, value)
            if over > 0:
                bound = "at most" if target.upper else "at least"
                misses.append(f"{target.name} is {value:.4g}, target {bound} {target.bound:g}")
                distance = max(distance, over)
        return Evaluation(not misses, self._objective(figures), distance, tuple(misses))

    def _objective(self, figures: Mapping[str, Optional[float]]) -> float:
        if self.objective_name == "headroom":
            ratios = [t.bound / value for t in self._latency_targets()
                      if (value := figures.get(t.name)) is not None and value > 0 and not math.isnan(value)]
            return min(ratios) if ratios else 0.0
        value = figures.get(self.objective_name)
        return 0.0 if value is None or math.isnan(value) else float(value)


def _relative_miss(target: SloTarget, value: float) -> float:
    """How far past its bound a figure is, as a share of the bound (0 or less: met)."""
    if target.upper:
        if target.bound == 0:
            return math.inf if value > 0 else 0.0
        return value / target.bound - 1.0
    return 1.0 - value / target.bound if target.bound > 0 else 0.0


def parse_goal(slo: str, concurrency: Optional[int], request_rate: Optional[float], llm: bool) -> Goal:
    """The goal from ``--slo`` and the load it must hold at.

    Raises:
        TuneError: no target, both or neither load given, a load that is not positive, or a stream target
            (TTFT, ITL, tokens/s) for a model that is not an LLM.
        BenchError: a target ``bench --slo`` does not know.

    """
    targets = tuple(parse_slo(slo))
    if not targets:
        raise TuneError(Problem("names no target", path="--slo", hint="for example --slo p99_ms=50"))
    if (concurrency is None) == (request_rate is None):
        raise TuneError(Problem("give the load the target must hold at: --concurrency N or --request-rate R, "
                                "one of them", path="--concurrency",
                                hint="for example --slo p99_ms=50 --concurrency 16"))
    level = float(concurrency if concurrency is not None else request_rate or 0.0)
    if level <= 0:
        raise TuneError(Problem(f"must be more than 0 (got {level:g})",
                                path="--concurrency" if concurrency is not None else "--request-rate"))
    stream_only = [t.name for t in targets if t.name.startswith(("ttft_", "itl_")) or t.name == "min_tokens_per_s"]
    if stream_only and not llm:
        raise TuneError(Problem(f"{', '.join(stream_only)} needs an LLM (llms: entry); this model answers once "
                                "per request", path="--slo", hint="use p99_ms, error_rate or min_rps"))
    return Goal(targets, "rate" if request_rate is not None else "concurrency", level, llm)


def figures_of(level: LevelResult, goal: Goal) -> dict[str, Optional[float]]:
    """Every figure a run is judged and reported by, from bench's result for the level."""
    names = dict.fromkeys([*_RECORDED, *(t.name for t in goal.targets)])
    figures: dict[str, Optional[float]] = {}
    for name in names:
        if name == "throughput_rps":
            figures[name] = level.throughput_rps
        elif name == "output_tokens_per_s":
            figures[name] = level.output_tokens_per_s
        elif name in ("min_rps", "min_tokens_per_s", "error_rate") or name.endswith("_ms"):
            figures[name] = slo_figure(level, name)
    return figures
