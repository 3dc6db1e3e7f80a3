"""``tritonkit bench``: load-test a served model and report throughput, latency and the server's split."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tritonkit.bench import (
    BenchOptions,
    BenchResult,
    SloMissedError,
    check_slo,
    parse_duration,
    parse_levels,
    parse_slo,
    result_tables,
    run_bench,
    write_csv,
    write_json,
    write_plot,
)
from tritonkit.bench.load import ProgressCallback
from tritonkit.bench.openai import ENDPOINTS
from tritonkit.bench.options import BenchError, check_protocol
from tritonkit.cli._app import EXIT_OK, app, err_console, out_console
from tritonkit.errors import Problem
from tritonkit.runtime.client import Client

_LOAD = "Load"
_OPENAI = "OpenAI server"
_INPUTS = "Inputs"
_OUTPUT = "Output"


def _options(model: str, url: Optional[str], protocol: str, concurrency: Optional[str],
             request_rate: Optional[str], duration: Optional[str], requests: Optional[int],
             warmup: str) -> BenchOptions:
    if concurrency and request_rate:
        raise BenchError(Problem("give --concurrency or --request-rate, not both", path="--request-rate",
                                 hint="closed loop: --concurrency 1,4,16; open loop: --request-rate 10,50"))
    if requests is not None and duration is not None:
        raise BenchError(Problem("give --duration or --requests, not both", path="--requests"))
    if requests is not None and requests < 1:
        raise BenchError(Problem(f"must be at least 1 (got {requests})", path="--requests"))
    mode = "rate" if request_rate else "concurrency"
    levels = (parse_levels(request_rate, "--request-rate", integer=False) if request_rate else
              parse_levels(concurrency or "1,2,4,8,16,32", "--concurrency", integer=True))
    default_url = "localhost:8001" if protocol == "grpc" else "localhost:8000"
    duration_s = None if requests is not None else parse_duration(duration or "30s", "--duration")
    return BenchOptions(model=model, url=url or default_url, protocol=protocol, mode=mode, levels=levels,
                        duration_s=duration_s, requests=requests, warmup_s=parse_duration(warmup, "--warmup"))


def _check_target(options: BenchOptions) -> None:
    """Fail before any load with infer's and chat's messages: no server at the URL, or no such model."""
    if options.timeout_s <= 0:
        raise BenchError(Problem(f"must be more than 0 seconds (got {options.timeout_s:g})", path="--timeout"))
    with Client(options.url, protocol=options.protocol, timeout_s=min(options.timeout_s, 30.0)) as client:
        client.model(options.model)


def _openai_options(options: BenchOptions, openai_url: Optional[str], endpoint: str,
                    api_key: Optional[str]) -> BenchOptions:
    """Point the run at an OpenAI-compatible server, or check the Triton target as before."""
    if openai_url is None:
        check_protocol(options.protocol, options.stream)
        _check_target(options)
        return options
    if endpoint not in ENDPOINTS:
        raise BenchError(Problem(f"must be chat or completions (got {endpoint!r})", path="--endpoint"))
    if not openai_url.startswith(("http://", "https://")):
        raise BenchError(Problem(f"must be an http(s) base URL (got {openai_url!r})", path="--openai",
                                 hint="for example --openai http://127.0.0.1:9000/v1"))
    if options.timeout_s <= 0:
        raise BenchError(Problem(f"must be more than 0 seconds (got {options.timeout_s:g})", path="--timeout"))
    key = api_key or os.environ.get("TRITONKIT_API_KEY") or os.environ.get("OPENAI_API_KEY") or None
    return replace(options, openai_url=openai_url, endpoint=endpoint, api_key=key)


def _run_with_progress(options: BenchOptions) -> BenchResult:
    if not err_console.is_terminal:
        return run_bench(options)
    with ExitStack() as stack:
        bar = stack.enter_context(Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                           console=err_console, transient=True))

        def level_progress(label: str) -> ProgressCallback:
            task = bar.add_task(label, total=1.0)
            return lambda fraction: bar.update(task, completed=fraction)

        return run_bench(options, level_progress)


def _write_outputs(result: BenchResult, json_path: Optional[Path], csv_path: Optional[Path],
                   plot_path: Optional[Path]) -> None:
    for path, writer in ((json_path, write_json), (csv_path, write_csv), (plot_path, write_plot)):
        if path is not None:
            try:
                writer(result, path)
            except OSError as exc:
                raise BenchError(Problem(f"cannot write: {exc.strerror}", path=str(path))) from None
            err_console.print(f"wrote {path}", markup=False)


_Text = Optional[str]
_File = Optional[Path]


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="Served model. For an LLM: the llms: entry's name (add --stream, "
                                              "since it is decoupled in the default layout); with layout: "
                                              "ensemble, <name>_bls streams and <name> answers once.")],
    url: Annotated[_Text, typer.Option(help="host:port of the server (default localhost:8001 for gRPC, "
                                             "localhost:8000 for HTTP).", rich_help_panel=_LOAD)] = None,
    protocol: Annotated[str, typer.Option(help="grpc or http.", rich_help_panel=_LOAD)] = "grpc",
    concurrency: Annotated[_Text, typer.Option(help="Closed loop: comma-separated requests in flight "
                                                    "(default 1,2,4,8,16,32).",
                                               rich_help_panel=_LOAD)] = None,
    request_rate: Annotated[_Text, typer.Option(help="Open loop: comma-separated request rates (1/s), "
                                                     "Poisson arrivals.", rich_help_panel=_LOAD)] = None,
    duration: Annotated[_Text, typer.Option(help="Measured time per level, e.g. 30s, 2m (default 30s).",
                                            rich_help_panel=_LOAD)] = None,
    requests: Annotated[Optional[int], typer.Option(help="Measured requests per level (not --duration).",
                                                    rich_help_panel=_LOAD)] = None,
    warmup: Annotated[str, typer.Option(help="Warm-up per level, excluded from every figure.",
                                        rich_help_panel=_LOAD)] = "5s",
    stream: Annotated[bool, typer.Option(help="Stream (decoupled models, gRPC): measures TTFT and ITL.",
                                         rich_help_panel=_LOAD)] = False,
    input_data: Annotated[_File, typer.Option(help="JSON file of input values for classic models.",
                                              rich_help_panel=_INPUTS)] = None,
    prompts: Annotated[_File, typer.Option(help="LLM prompts: one per line, or .jsonl with a text field.",
                                           rich_help_panel=_INPUTS)] = None,
    input_tokens: Annotated[int, typer.Option(help="Length of synthetic prompts, in tokens.",
                                              rich_help_panel=_INPUTS)] = 128,
    output_tokens: Annotated[int, typer.Option(help="max_tokens asked of the LLM.",
                                               rich_help_panel=_INPUTS)] = 64,
    tokenizer: Annotated[_Text, typer.Option(help="Tokenizer folder or .gguf file: exact prompt lengths and "
                                                  "output token counts.", rich_help_panel=_INPUTS)] = None,
    slo: Annotated[_Text, typer.Option(help="Targets every level must meet, e.g. p99_ms=200,ttft_p99_ms=500,"
                                            "error_rate=0.01,min_rps=100; exit 1 when one is missed.",
                                       rich_help_panel=_OUTPUT)] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each response; a slower one counts as a "
                                                "failed request.", rich_help_panel=_LOAD)] = 60.0,
    openai_url: Annotated[_Text, typer.Option("--openai", help="Drive an OpenAI-compatible server instead of "
                                              "Triton: its base URL, e.g. http://127.0.0.1:9000/v1 (MODEL is the "
                                              "model id it lists). TTFT and ITL as AIPerf defines them.",
                                              rich_help_panel=_OPENAI)] = None,
    endpoint: Annotated[str, typer.Option(help="With --openai: chat (/chat/completions) or completions.",
                                          rich_help_panel=_OPENAI)] = "chat",
    api_key: Annotated[_Text, typer.Option(help="With --openai: the Bearer key (default: $TRITONKIT_API_KEY, "
                                                "else $OPENAI_API_KEY).", rich_help_panel=_OPENAI,
                                           show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every figure as JSON on stdout instead of the "
                                                         "tables.", rich_help_panel=_OUTPUT)] = False,
    json_path: Annotated[_File, typer.Option("--save-json", help="Also write every figure as JSON to this file.",
                                             rich_help_panel=_OUTPUT)] = None,
    csv_path: Annotated[_File, typer.Option("--save-csv", help="Also write one CSV row per level to this file.",
                                            rich_help_panel=_OUTPUT)] = None,
    plot_path: Annotated[_File, typer.Option("--save-plot", help="Also write a PNG to this file: latency vs "
                                             "throughput, TTFT, ITL.", rich_help_panel=_OUTPUT)] = None,
) -> int:
    """Load-test a model on a running Triton server: throughput, latency percentiles, TTFT/ITL for streams.

    Warm-up is excluded; each level's window is matched with Triton's own statistics so the table shows
    whether time goes to queueing or computing.
    """
    targets = parse_slo(slo) if slo else []
    base = _options(model, url, protocol, concurrency, request_rate, duration, requests, warmup)
    options = replace(base, stream=stream, input_data=input_data, prompts=prompts, input_tokens=input_tokens,
                      output_tokens=output_tokens, tokenizer=tokenizer, timeout_s=timeout)
    options = _openai_options(options, openai_url, endpoint, api_key)
    result = _run_with_progress(options)
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for table in result_tables(result):
            out_console.print(table)
    for level in result.levels:
        if level.requests and level.ok == 0:
            err_console.print(f"warning: every request failed at level {level.level:g}: "
                              f"{level.errors_by_kind}", markup=False)
    _write_outputs(result, json_path, csv_path, plot_path)
    problems = check_slo(result.levels, targets, "request rate" if options.mode == "rate" else "concurrency")
    if problems:
        raise SloMissedError(problems)
    return EXIT_OK
