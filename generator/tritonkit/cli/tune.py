"""``tritonkit tune``: find, by measurement, the configuration that meets a service target."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tritonkit.bench import parse_duration
from tritonkit.cli._app import EXIT_OK, app, err_console, out_console
from tritonkit.errors import Problem, TuneError
from tritonkit.runtime.server import ADMIN_KEY_ENV
from tritonkit.tune import TuneOptions, TuneOutcome, prepare, summary, tune
from tritonkit.tune.report import Row, report_rows, row_cells, table_columns, write_json, write_markdown, write_plot
from tritonkit.tune.writeback import write_winner

_TARGET = "Service target"
_SPACE = "Search"
_SERVER = "Server"
_OUTPUT = "Output"
_Text = Optional[str]


def _say(line: str) -> None:
    err_console.print(line, markup=False, highlight=False)


def _print_table(rows: list[Row], outcome: TuneOutcome) -> None:
    settings, figures = table_columns(outcome.goal, rows)
    table = Table(show_edge=False, title=f"tune: {outcome.goal.describe()} (* = winner)")
    for column in [*settings, "runs", *figures, "SLO", "note"]:
        table.add_column(column, justify="left" if column in ("note", settings[0] if settings else "") else "right")
    for row in rows:
        table.add_row(*row_cells(row, settings, figures))
    wide = out_console if out_console.is_terminal else Console(file=out_console.file, width=220, highlight=False)
    wide.print(table)


def _write_report(outcome: TuneOutcome, rows: list[Row], folder: Path, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {**summary(outcome), "rows": [row.__dict__ for row in rows]}
    write_json(data, folder / "tune.json")
    write_markdown(rows, outcome.goal, lines, folder / "tune.md")
    try:
        write_plot(rows, outcome.goal, folder / "tune.png")
    except ImportError as exc:
        _say(f"note: no plot ({exc.name} is missing: pip install 'tritonkit[bench]')")
    _say(f"wrote {folder}/tune.md, tune.json, tune.png")


def _summary_lines(outcome: TuneOutcome) -> list[str]:
    result, goal = outcome.result, outcome.goal
    sizes = ", ".join(f"{name}: {len(values)}" for name, values in outcome.space.to_dict().items())
    lines = [f"space: {outcome.space.size} candidates ({sizes}); "
             f"seed: {outcome.seed.key} ({outcome.seed_note})",
             f"runs: {outcome.ledger.run_count} ({outcome.ledger.replayed} replayed from the resume file); "
             f"run-to-run noise of {goal.objective_name}: {result.noise:.1%}"
             + (" (assumed: no candidate was measured twice)" if result.noise_assumed else ""), *outcome.notes]
    winner = result.winner
    if winner is not None and winner.evaluation is not None and winner.evaluation.met:
        lines.append(f"winner: {winner.candidate.key}: {goal.objective_name} {winner.evaluation.objective:.4g} "
                     f"over {len(winner.runs)} run(s)")
        if result.runner_up is not None and result.confidence is not None:
            lines.append(f"confidence it beats the runner-up ({result.runner_up.candidate.key}): "
                         f"{result.confidence:.0%}" + (" (within noise: as good)" if result.confidence < 0.95 else ""))
    if result.stopped_early:
        lines.append("stopped at --max-runs before the search settled")
    return lines


def _finish(outcome: TuneOutcome, report: Path, write: bool) -> int:
    rows = report_rows(outcome.ledger.runs, outcome.goal, outcome.result)
    lines = _summary_lines(outcome)
    _print_table(rows, outcome)
    for line in lines:
        out_console.print(line, markup=False)
    _write_report(outcome, rows, report, lines)
    winner = outcome.result.winner
    if winner is None or winner.evaluation is None:
        raise TuneError(Problem("no candidate could be measured: every one was pruned, invalid or refused",
                                path=str(outcome.options.spec), hint=f"see {report}/tune.md for each one's reason"))
    if not winner.evaluation.met:
        far = "; ".join(winner.evaluation.misses)
        raise TuneError(Problem(f"no candidate met {outcome.goal.describe()}; the closest is {winner.candidate.key}: "
                                f"{far} ({winner.evaluation.distance:.0%} past the target)",
                                path=str(outcome.options.spec),
                                hint="loosen the target, lower the load, or widen the space with --space"))
    if write:
        edit = write_winner(outcome.options.spec, outcome.spec_digest, outcome.entry, winner.candidate)
        for change in edit.changes:
            _say(f"{outcome.options.spec}:{change.line}: {change.key}: {change.old} -> {change.new}")
        _say(f"{'update' if edit.changes else 'same'} {outcome.options.spec}")
    return EXIT_OK


@app.command("tune")
def tune_command(
    spec: Annotated[Path, typer.Argument(help="The spec whose model is tuned; the winner is written into it.",
                                         show_default=False)],
    slo: Annotated[str, typer.Option(help="The target, as bench --slo takes it: p99_ms=50, ttft_p99_ms=500,"
                                          "itl_p99_ms=50, error_rate=0.01, min_rps=100, min_tokens_per_s=500.",
                                     rich_help_panel=_TARGET, show_default=False)],
    concurrency: Annotated[Optional[int], typer.Option(help="The load: requests in flight (closed loop).",
                                                       rich_help_panel=_TARGET)] = None,
    request_rate: Annotated[Optional[float], typer.Option(help="The load: requests/s, Poisson arrivals (open loop).",
                                                          rich_help_panel=_TARGET)] = None,
    model: Annotated[_Text, typer.Option(help="The models: or llms: entry to tune (needed when the spec has "
                                              "several).", rich_help_panel=_SPACE)] = None,
    space: Annotated[Optional[list[str]], typer.Option(
        help="A setting and its values, e.g. instance_count=1,2,4 or max_queue_delay_microseconds=off,0,500; "
             "repeatable; replaces that setting's default values.", rich_help_panel=_SPACE)] = None,
    duration: Annotated[str, typer.Option(help="Measured time per run.", rich_help_panel=_SPACE)] = "5s",
    warmup: Annotated[str, typer.Option(help="Warm-up per run, after each load.", rich_help_panel=_SPACE)] = "1s",
    repeats: Annotated[int, typer.Option(min=1, help="Most runs of one candidate, where two are within noise.",
                                         rich_help_panel=_SPACE)] = 2,
    max_runs: Annotated[int, typer.Option(min=1, help="Stop after this many runs.", rich_help_panel=_SPACE)] = 40,
    exhaustive: Annotated[bool, typer.Option(help="Brute force: measure every candidate once, nothing pruned "
                                                  "(to check the search against).", rich_help_panel=_SPACE)] = False,
    input_tokens: Annotated[int, typer.Option(help="LLM: prompt length, in tokens.", rich_help_panel=_SPACE)] = 128,
    output_tokens: Annotated[int, typer.Option(help="LLM: max_tokens asked.", rich_help_panel=_SPACE)] = 64,
    tokenizer: Annotated[_Text, typer.Option(help="LLM: tokenizer folder or .gguf for exact token counts.",
                                             rich_help_panel=_SPACE)] = None,
    gpu: Annotated[_Text, typer.Option(help="The GPU, as plan names it (default: the local GPU, when plan's "
                                            "catalogue has it); seeds an LLM from plan's estimate.",
                                       rich_help_panel=_SPACE)] = None,
    url: Annotated[_Text, typer.Option(help="gRPC host:port of a running Triton with --model-control-mode "
                                            "explicit (default: start a local one).", rich_help_panel=_SERVER)] = None,
    admin_key: Annotated[_Text, typer.Option(help=f"Key of its model-repository API (default: ${ADMIN_KEY_ENV}).",
                                             rich_help_panel=_SERVER, show_default=False)] = None,
    allow_other_models: Annotated[bool, typer.Option(help="Tune on a server that also serves models the spec "
                                                          "does not have.", rich_help_panel=_SERVER)] = False,
    tritonserver: Annotated[_Text, typer.Option(help="tritonserver binary for the local server.",
                                                rich_help_panel=_SERVER)] = None,
    report: Annotated[Optional[Path], typer.Option(help="Folder for tune.md, tune.json, tune.png and the resume "
                                                        "file (default: tune-MODEL/ beside the spec).",
                                                   rich_help_panel=_OUTPUT)] = None,
    resume_file: Annotated[Optional[Path], typer.Option(help="Resume file (default: resume.json in the report "
                                                             "folder); a tune that stopped goes on from it.",
                                                        rich_help_panel=_OUTPUT)] = None,
    fresh: Annotated[bool, typer.Option(help="Start over: ignore the resume file's runs.",
                                        rich_help_panel=_OUTPUT)] = False,
    write: Annotated[bool, typer.Option("--write-spec/--no-write-spec",
                                        help="Write the winner into SPEC (keys changed in place, comments kept).",
                                        rich_help_panel=_OUTPUT)] = True,
) -> int:
    """Find, by measurement, the configuration of one model that meets a service target.

    Candidates are rendered by the same pipeline as generate, checked by validate, loaded one after another
    into one server through Triton's model-control API, and measured with bench's load generator.
    """
    if not spec.is_file():
        raise TuneError(Problem("spec file not found", path=str(spec), hint="pass the spec's path (tritonkit init "
                                                                              "writes one)"))
    options = TuneOptions(spec=spec, slo=slo, model=model, concurrency=concurrency, request_rate=request_rate,
                          space=tuple(space or ()), url=url,
                          admin_key=admin_key or os.environ.get(ADMIN_KEY_ENV) or None,
                          allow_other_models=allow_other_models, duration_s=parse_duration(duration, "--duration"),
                          warmup_s=parse_duration(warmup, "--warmup"), repeats=repeats, max_runs=max_runs,
                          input_tokens=input_tokens, output_tokens=output_tokens, tokenizer=tokenizer, gpu=gpu,
                          tritonserver=tritonserver, exhaustive=exhaustive, report=report,
                          resume_file=resume_file, fresh=fresh)
    outcome = prepare(options)
    _say(f"tuning {outcome.entry.name} for {outcome.goal.describe()}: {outcome.space.size} candidates, "
         f"starting at {outcome.seed.key}")
    return _finish(tune(outcome, _say), outcome.report, write)
