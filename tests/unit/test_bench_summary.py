"""Percentiles over too few requests: the rule, the level's counts, the note and the table's marks."""

from __future__ import annotations

import pytest
from rich.console import Console

from tritonkit.bench.client import Sample
from tritonkit.bench.load import LevelRun
from tritonkit.bench.report import result_tables
from tritonkit.bench.runner import BenchResult
from tritonkit.bench.summary import few_samples_note, samples_needed, summarize_level


def _run(count: int, stream: bool = False) -> LevelRun:
    samples = tuple(Sample(start_s=float(i), end_s=float(i) + 0.010 + 0.001 * i,
                           ttft_s=0.002 if stream else None, itl_s=(0.001, 0.001) if stream else (),
                           output_tokens=3 if stream else 0)
                    for i in range(count))
    failed = Sample(start_s=0.0, end_s=0.5, error="timeout")  # a failure is no latency sample
    return LevelRun(level=1, samples=(*samples, failed), window_s=float(count), stats_before=(), stats_after=())


@pytest.mark.parametrize(("point", "needed"), [("p50", 2), ("p90", 10), ("p95", 20), ("p99", 100),
                                               ("p99.9", 1000), ("max", 1), ("mean", 1)])
def test_a_percentile_needs_one_sample_above_it(point: str, needed: int) -> None:
    assert samples_needed(point) == needed


def test_three_requests_leave_the_upper_percentiles_thin() -> None:
    level = summarize_level(_run(3, stream=True), "concurrency")
    assert level.samples == {"latency": 3, "ttft": 3, "itl": 6}
    assert level.thin_points("latency", ("p50", "p90", "p95", "p99", "max")) == ("p90", "p95", "p99")
    assert level.thin_points("itl", ("p50", "p99")) == ("p99",)
    note = few_samples_note([("concurrency 1", level)])
    assert note is not None
    assert "concurrency 1 (3 ok requests): p90, p95, p99, TTFT p99, ITL p99" in note
    assert "p99 100" in note and "--requests" in note


def test_enough_requests_give_no_note() -> None:
    level = summarize_level(_run(100), "concurrency")
    assert level.thin_points("latency", ("p50", "p90", "p95", "p99")) == ()
    assert few_samples_note([("concurrency 1", level)]) is None
    ninety_nine = summarize_level(_run(99), "concurrency")
    assert ninety_nine.thin_points("latency", ("p50", "p90", "p95", "p99")) == ("p99",)


def test_no_successful_request_is_blank_not_thin() -> None:
    run = LevelRun(level=1, samples=(Sample(0.0, 1.0, error="timeout"),), window_s=1.0, stats_before=(),
                   stats_after=())
    level = summarize_level(run, "concurrency")
    assert level.thin_points("latency", ("p50", "p99")) == ()
    assert few_samples_note([("concurrency 1", level)]) is None


def test_the_table_marks_thin_cells_only() -> None:
    levels = [summarize_level(_run(4), "concurrency"), summarize_level(_run(25), "concurrency")]
    result = BenchResult("simple", "grpc", "localhost:8001", "concurrency", False, "classic", (), levels)
    console = Console(width=200, record=True)
    console.print(result_tables(result)[0])
    rows = [line for line in console.export_text().splitlines() if line.strip().startswith("│")]
    four, twenty_five = rows  # levels in order; "reqs" counts the failed request too
    cells = [c.strip() for c in four.split("│")[1:-1]]
    assert cells[1] == "5"
    p50, p90, p95, p99, most, mean = cells[4:10]
    assert not p50.endswith("*") and p90.endswith("*") and p95.endswith("*") and p99.endswith("*")
    assert not most.endswith("*") and not mean.endswith("*")
    marked = [c.strip() for c in twenty_five.split("│")[1:-1] if c.strip().endswith("*")]
    assert len(marked) == 1  # p99 only: p90 needs 10 and p95 20
