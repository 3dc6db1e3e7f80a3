"""Load testing of served models: closed and open loop, latency percentiles, TTFT/ITL, server breakdown."""

from __future__ import annotations

from tritonkit.bench.client import Sample
from tritonkit.bench.options import BenchError, BenchOptions, parse_duration, parse_levels
from tritonkit.bench.plot import write_plot
from tritonkit.bench.report import result_tables, write_csv, write_json
from tritonkit.bench.runner import BenchResult, run_bench
from tritonkit.bench.slo import SloMissedError, SloTarget, check_slo, parse_slo
from tritonkit.bench.summary import LevelResult, ServerBreakdown

__all__ = [
    "BenchError",
    "BenchOptions",
    "BenchResult",
    "LevelResult",
    "Sample",
    "ServerBreakdown",
    "SloMissedError",
    "SloTarget",
    "check_slo",
    "parse_duration",
    "parse_levels",
    "parse_slo",
    "result_tables",
    "run_bench",
    "write_csv",
    "write_json",
    "write_plot",
]
