"""Turn one level's raw samples and server statistics into the figures a person reads."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from tritonkit.bench.load import LevelRun

__all__ = [
    "LATENCY_POINTS",
    "LevelResult",
    "ServerBreakdown",
    "few_samples_note",
    "samples_needed",
    "server_breakdown",
    "summarize_level",
]

LATENCY_POINTS = ("p50", "p90", "p95", "p99", "max", "mean")
_STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


def samples_needed(point: str) -> int:
    """The fewest samples for percentile ``point`` (``p99``) to mean more than the slowest sample.

    The rule: ``pN`` needs at least 100/(100-N) samples, rounded up, so that at least one sample lies
    above it (p50: 2, p90: 10, p95: 20, p99: 100). Over fewer, ``pN`` is read between the slowest
    two samples, little more than the maximum under another name. ``max`` and ``mean`` need one.
    """
    if not point.startswith("p"):
        return 1
    share = 100.0 - float(point[1:])
    return max(1, math.ceil(round(100.0 / share, 9)))


@dataclass(frozen=True)
class ServerBreakdown:
    """Triton's own account of one model over the measured window (statistics API deltas).

    Times are the mean per request in milliseconds; ``avg_batch`` is inferences per execution.
    """

    model: str
    success: int
    fail: int
    executions: int
    inferences: int
    avg_batch: float
    queue_ms: float
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float


@dataclass(frozen=True)
class LevelResult:
    """Every figure of one load level, in the units its name says."""

    mode: str
    level: float
    requests: int
    ok: int
    errors: int
    errors_by_kind: dict[str, int]
    window_s: float
    throughput_rps: float
    latency_ms: dict[str, float]
    ttft_ms: Optional[dict[str, float]] = None
    itl_ms: Optional[dict[str, float]] = None
    output_tokens: int = 0
    output_tokens_per_s: float = 0.0
    tokens_per_s_per_request: Optional[dict[str, float]] = None
    server: list[ServerBreakdown] = field(default_factory=list)
    #: How many values each figure rests on: ``latency`` (successful requests), ``ttft`` (streams with
    #: a first token) and ``itl`` (gaps between a stream's responses).
    samples: dict[str, int] = field(default_factory=dict)

    def thin_points(self, figure: str, points: tuple[str, ...]) -> tuple[str, ...]:
        """The percentiles of ``points`` that rest on fewer samples of ``figure`` than ``samples_needed``."""
        count = self.samples.get(figure, 0)
        if count == 0:  # nothing measured: the figure is blank, not thin
            return ()
        return tuple(p for p in points if p.startswith("p") and count < samples_needed(p))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return asdict(self)

    def server_for(self, model: str) -> Optional[ServerBreakdown]:
        """Return the breakdown of ``model``, if it served requests in the window."""
        return next((s for s in self.server if s.model == model), None)


#: The percentiles each table shows, by the figure whose samples they rest on.
SHOWN_POINTS = {"latency": ("p50", "p90", "p95", "p99"), "ttft": ("p50", "p99"), "itl": ("p50", "p99")}
_FIGURE_NAMES = {"latency": "", "ttft": "TTFT ", "itl": "ITL "}


def few_samples_note(levels: list[tuple[str, LevelResult]]) -> Optional[str]:
    """One note naming every shown percentile that rests on too few samples, per level; None if none does.

    ``levels`` pairs each level's label (``concurrency 1``) with its result.
    """
    parts = []
    for label, level in levels:
        thin = [f"{_FIGURE_NAMES[figure]}{point}" for figure, points in SHOWN_POINTS.items()
                for point in level.thin_points(figure, points)]
        if thin:
            parts.append(f"{label} ({level.samples.get('latency', 0)} ok requests): {', '.join(thin)}")
    if not parts:
        return None
    return ("too few requests for some percentiles (marked * in the tables): pN needs at least 100/(100-N) "
            "samples (p50 2, p90 10, p95 20, p99 100) for one to lie above it, and over fewer it is about the "
            "slowest one; " + "; ".join(parts) + "; measure more with --requests or a longer --duration")


def percentiles_ms(values_s: list[float], points: tuple[str, ...] = LATENCY_POINTS) -> dict[str, float]:
    """Return the named percentiles (``p50``, ``max``, ``mean``...) of seconds, in milliseconds."""
    if not values_s:
        return {p: float("nan") for p in points}
    array = np.asarray(values_s) * 1000.0
    out: dict[str, float] = {}
    for point in points:
        if point == "max":
            out[point] = float(array.max())
        elif point == "mean":
            out[point] = float(array.mean())
        else:
            out[point] = float(np.percentile(array, float(point[1:])))
    return out


def _count(stats: dict[str, Any], key: str) -> tuple[int, int]:
    entry = stats.get("inference_stats", {}).get(key, {})
    return int(entry.get("count", 0)), int(entry.get("ns", 0))


def _delta(before: Optional[dict[str, Any]], after: dict[str, Any]) -> Optional[ServerBreakdown]:
    def diff(key: str) -> tuple[int, int]:
        a_count, a_ns = _count(after, key)
        b_count, b_ns = _count(before, key) if before else (0, 0)
        return a_count - b_count, a_ns - b_ns

    success, _ = diff("success")
    fail, _ = diff("fail")
    if success + fail == 0:
        return None
    executions = int(after.get("execution_count", 0)) - int((before or {}).get("execution_count", 0))
    inferences = int(after.get("inference_count", 0)) - int((before or {}).get("inference_count", 0))
    stage_ms = {}
    for stage in _STAGES:
        count, ns = diff(stage)
        stage_ms[stage] = ns / count / 1e6 if count else 0.0
    return ServerBreakdown(model=str(after.get("name")), success=success, fail=fail, executions=executions,
                           inferences=inferences, avg_batch=inferences / executions if executions else 0.0,
                           queue_ms=stage_ms["queue"], compute_input_ms=stage_ms["compute_input"],
                           compute_infer_ms=stage_ms["compute_infer"],
                           compute_output_ms=stage_ms["compute_output"])


def server_breakdown(run: LevelRun) -> list[ServerBreakdown]:
    """Return the statistics deltas of every model that answered requests during the window."""
    before = {(s.get("name"), s.get("version")): s for s in run.stats_before}
    deltas = (_delta(before.get((s.get("name"), s.get("version"))), s) for s in run.stats_after)
    return [d for d in deltas if d is not None]


def _stream_figures(ok: list[Any]) -> tuple[dict[str, Any], dict[str, int]]:
    ttft = [s.ttft_s for s in ok if s.ttft_s is not None]
    if not ttft:
        return {}, {}
    itl = [gap for s in ok for gap in s.itl_s]
    return ({"ttft_ms": percentiles_ms(ttft, ("p50", "p90", "p99", "mean")),
             "itl_ms": percentiles_ms(itl, ("p50", "p90", "p99", "mean"))},
            {"ttft": len(ttft), "itl": len(itl)})


def summarize_level(run: LevelRun, mode: str) -> LevelResult:
    """Compute throughput, latency percentiles, stream and token figures, and the server breakdown."""
    ok = [s for s in run.samples if s.ok]
    kinds = Counter(s.error for s in run.samples if s.error is not None)
    tokens = sum(s.output_tokens for s in ok)
    per_request = [s.output_tokens / s.latency_s for s in ok if s.output_tokens and s.latency_s > 0]
    window = run.window_s if run.window_s > 0 else float("nan")
    stream, stream_counts = _stream_figures(ok)
    return LevelResult(
        mode=mode, level=run.level, requests=len(run.samples), ok=len(ok), errors=sum(kinds.values()),
        errors_by_kind=dict(sorted(kinds.items())), window_s=run.window_s,
        throughput_rps=len(ok) / window, latency_ms=percentiles_ms([s.latency_s for s in ok]),
        output_tokens=tokens, output_tokens_per_s=tokens / window,
        tokens_per_s_per_request=({"p50": float(np.percentile(per_request, 50)),
                                   "mean": float(np.mean(per_request))} if per_request else None),
        server=server_breakdown(run), samples={"latency": len(ok), **stream_counts}, **stream)
