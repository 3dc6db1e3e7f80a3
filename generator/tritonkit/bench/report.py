"""Write a bench result as a rich table, JSON and CSV."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional

from rich.table import Table

from tritonkit.bench.runner import BenchResult
from tritonkit.bench.summary import LevelResult

__all__ = ["csv_row", "result_tables", "write_csv", "write_json"]


def _ms(value: Optional[float]) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _point(level: LevelResult, figure: str, figures: dict[str, float], point: str) -> str:
    """``point`` of ``figures`` as a cell, with ``*`` when it rests on too few samples (``samples_needed``)."""
    text = _ms(figures.get(point))
    return f"{text}*" if text != "-" and point in level.thin_points(figure, (point,)) else text


def _level_text(result: BenchResult, level: LevelResult) -> str:
    return f"{level.level:g}/s" if result.mode == "rate" else f"{int(level.level)}"


def _table(title: str, columns: list[str], widths: Optional[dict[str, int]] = None) -> Table:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, justify="right", min_width=(widths or {}).get(name))
    return table


def _latency_table(result: BenchResult) -> Table:
    load = "rate/s" if result.mode == "rate" else "conc"
    table = _table(f"{result.model} over {result.protocol} ({result.kind}, {result.mode}): client side",
                   [load, "reqs", "errs", "req/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms",
                    "mean ms"])
    for level in result.levels:
        latency = level.latency_ms
        table.add_row(_level_text(result, level), str(level.requests), str(level.errors),
                      f"{level.throughput_rps:.1f}",
                      *(_point(level, "latency", latency, p) for p in ("p50", "p90", "p95", "p99", "max", "mean")))
    return table


def _token_table(result: BenchResult) -> Table:
    load = "rate/s" if result.mode == "rate" else "conc"
    stream_columns = ["TTFT p50", "TTFT p99", "ITL p50", "ITL p99"] if result.stream else []
    title = "streams and tokens" if result.stream else "tokens"
    table = _table(f"{title} (ms; tok/s/req: median over requests)",
                   [load, *stream_columns, "tokens", "tok/s", "tok/s/req"])
    for level in result.levels:
        ttft, itl = level.ttft_ms or {}, level.itl_ms or {}
        per_request = (level.tokens_per_s_per_request or {}).get("p50")
        stream_cells = ([_point(level, "ttft", ttft, "p50"), _point(level, "ttft", ttft, "p99"),
                         _point(level, "itl", itl, "p50"), _point(level, "itl", itl, "p99")]
                        if result.stream else [])
        table.add_row(_level_text(result, level), *stream_cells, str(level.output_tokens),
                      f"{level.output_tokens_per_s:.1f}",
                      "-" if per_request is None else f"{per_request:.1f}")
    return table


def _server_table(result: BenchResult) -> Table:
    load = "rate/s" if result.mode == "rate" else "conc"
    table = _table("server side (Triton statistics, same window; mean ms per request)",
                   [load, "model", "requests", "avg batch", "queue", "input", "infer", "output"],
                   {"model": max((len(s.model) for level in result.levels for s in level.server), default=5)})
    for level in result.levels:
        for server in level.server:
            table.add_row(_level_text(result, level), server.model, str(server.success + server.fail),
                          f"{server.avg_batch:.2f}", _ms(server.queue_ms), _ms(server.compute_input_ms),
                          _ms(server.compute_infer_ms), _ms(server.compute_output_ms))
    return table


def result_tables(result: BenchResult) -> list[Table]:
    """Return the tables of a result: client-side latency, streams and tokens (LLMs), server-side split."""
    tables = [_latency_table(result)]
    if result.kind == "llm":
        tables.append(_token_table(result))
    if result.protocol != "openai":  # an OpenAI server has no Triton statistics to split
        tables.append(_server_table(result))
    return tables


def _clean(value: Any) -> Any:
    # JSON has no NaN: a figure that could not be measured (no successful request) is null.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(result: BenchResult, path: Path) -> None:
    """Write the whole result, every level and server breakdown included, as JSON."""
    path.write_text(json.dumps(_clean(result.to_dict()), indent=2) + "\n", encoding="utf-8")


def csv_row(result: BenchResult, level: LevelResult) -> dict[str, Any]:
    """Return one level as a flat CSV row (the target model's server breakdown only)."""
    row: dict[str, Any] = {"model": result.model, "protocol": result.protocol, "mode": result.mode,
                           "level": level.level, "requests": level.requests, "ok": level.ok,
                           "errors": level.errors, "window_s": round(level.window_s, 6),
                           "throughput_rps": level.throughput_rps}
    row.update({f"latency_{k}_ms": v for k, v in level.latency_ms.items()})
    for name, figures in (("ttft", level.ttft_ms), ("itl", level.itl_ms)):
        for point in ("p50", "p90", "p99", "mean"):
            row[f"{name}_{point}_ms"] = (figures or {}).get(point, "")
    row["output_tokens"] = level.output_tokens
    row["output_tokens_per_s"] = level.output_tokens_per_s
    server = level.server_for(result.model)
    for stage in ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms", "avg_batch"):
        row[f"server_{stage}"] = getattr(server, stage) if server else ""
    row["errors_by_kind"] = ";".join(f"{k}={v}" for k, v in level.errors_by_kind.items())
    return {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def write_csv(result: BenchResult, path: Path) -> None:
    """Write one row per level with a header."""
    rows = [csv_row(result, level) for level in result.levels]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["model"])
        writer.writeheader()
        writer.writerows(rows)
