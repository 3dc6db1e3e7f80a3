"""What a tune tried and found: one row per candidate, the JSON of the whole run, and a plot.

The plot puts each measured candidate at its SLO figure (x: the first latency target, e.g. p99 ms)
and its throughput (y), draws the target's bound, and marks the winner: the points left of the line
meet it, and the highest of them is the answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tritonkit.tune.goal import Goal
from tritonkit.tune.ledger import Run
from tritonkit.tune.search import SearchResult, mean_figures

__all__ = ["Row", "report_rows", "write_json", "write_markdown", "write_plot"]

_STATUS = {"measured": "measured", "load_failed": "refused", "invalid": "invalid", "pruned": "pruned"}


@dataclass(frozen=True)
class Row:
    """One candidate: its values, what happened, its mean figures over its runs, and the verdict."""

    key: str
    values: dict[str, str]
    status: str
    runs: int
    figures: dict[str, Optional[float]]
    met: Optional[bool]
    note: str
    winner: bool


def report_rows(runs: list[Run], goal: Goal, result: SearchResult) -> list[Row]:
    """One row per candidate, in the order the search first reached it."""
    by_key: dict[str, list[Run]] = {}
    for run in runs:
        by_key.setdefault(run.key, []).append(run)
    winner = result.winner.candidate.key if result.winner is not None else None
    rows = []
    for key, items in by_key.items():
        measured = [r for r in items if r.status == "measured"]
        figures = mean_figures(measured)
        evaluation = goal.evaluate(figures) if measured else None
        status = "measured" if measured else items[-1].status
        note = "; ".join(evaluation.misses) if evaluation is not None else items[-1].message
        rows.append(Row(key, items[0].values, _STATUS[status], sum(r.costs_a_run for r in items), figures,
                        evaluation.met if evaluation else None, note, key == winner))
    return rows


def _number(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table_columns(goal: Goal, rows: list[Row]) -> tuple[list[str], list[str]]:
    """The setting columns and the figure columns of the table."""
    settings = list(rows[0].values) if rows else []
    figures = ["output_tokens_per_s" if goal.llm else "throughput_rps",
               *dict.fromkeys(t.name for t in goal.targets if t.name not in ("min_rps", "min_tokens_per_s"))]
    return settings, figures


def row_cells(row: Row, settings: list[str], figures: list[str]) -> list[str]:
    """A row as the table's cells."""
    verdict = {True: "met", False: "missed", None: row.status}[row.met]
    return ([("* " if row.winner else "") + row.values.get(s, "") for s in settings[:1]]
            + [row.values.get(s, "") for s in settings[1:]] + [str(row.runs)]
            + [_number(row.figures.get(f)) for f in figures] + [verdict, row.note if row.met is not True else ""])


def write_markdown(rows: list[Row], goal: Goal, summary: list[str], path: Path) -> None:
    """The summary lines and the table, as Markdown."""
    settings, figures = table_columns(goal, rows)
    header = [*settings, "runs", *figures, "SLO", "note"]
    lines = [f"# tune: {goal.describe()}", "", *(f"- {line}" for line in summary), "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row_cells(row, settings, figures)) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_json(data: dict[str, Any], path: Path) -> None:
    """The whole run as JSON."""
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def write_plot(rows: list[Row], goal: Goal, path: Path) -> None:
    """Throughput against the SLO figure for every measured candidate, with the target and the winner."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    metric = goal.slo_metric
    throughput = "output_tokens_per_s" if goal.llm else "throughput_rps"
    points = [(r, x, y) for r in rows if r.status == "measured"
              if (x := r.figures.get(metric)) is not None and (y := r.figures.get(throughput)) is not None]
    figure, axis = plt.subplots(figsize=(8, 5))
    for met, colour, label in ((True, "tab:green", "meets the SLO"), (False, "tab:red", "misses it")):
        chosen = [(x, y) for r, x, y in points if bool(r.met) == met]
        if chosen:
            axis.scatter([x for x, _ in chosen], [y for _, y in chosen], color=colour, label=label, alpha=0.8)
    for row, x, y in points:
        if row.winner:
            axis.scatter([x], [y], s=200, facecolors="none", edgecolors="black", label="winner")
            axis.annotate(row.key, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=7)
    bound = next((t.bound for t in goal.targets if t.name == metric), None)
    if bound is not None:
        axis.axvline(bound, color="grey", linestyle="--", label=f"target {metric} {bound:g}")
    axis.set_xlabel(metric.replace("_ms", " (ms)"))
    axis.set_ylabel("output tokens/s" if goal.llm else "requests/s")
    axis.set_title(f"tune at {goal.load_label}: throughput against {metric}")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
