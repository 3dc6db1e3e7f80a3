"""``tritonkit plan``: size GPUs for an LLM from its architecture and the service targets."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from tritonkit.capacity import (
    Architecture,
    Assumptions,
    GpuPlan,
    PlanError,
    SpecEdit,
    Targets,
    edit_spec_text,
    find_gpu,
    kv_bytes_per_token,
    load_architecture,
    load_catalog,
    plan_candidates,
    plan_gpu,
    spec_values,
    weight_bytes,
)
from tritonkit.capacity.engines import engine_profile
from tritonkit.cli._app import EXIT_OK, app, err_console, out_console
from tritonkit.errors import Problem
from tritonkit.write.files import write_atomic

_TARGETS = "Service targets"
_HARDWARE = "Hardware and cost"
_ASSUME = "Assumptions"
_OUTPUT = "Output"


class _Dtype(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    int8 = "int8"
    int4 = "int4"


class _KvDtype(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    int8 = "int8"


_Opt = typer.Option


@app.command()
def plan(
    model: Annotated[str, _Opt("--model", help="config.json (or its folder), a .gguf file, hf:<org>/<name> (a "
                                "Hugging Face model: its config.json from the local Hugging Face cache, else "
                                "the hub), or a preset: llama-3-8b, llama-3-70b, mistral-7b, qwen2.5-7b, "
                                "smollm2-135m, ...")],
    dtype: Annotated[_Dtype, _Opt("--dtype", help="Dtype the weights are served in.")] = _Dtype.bf16,
    kv_dtype: Annotated[Optional[_KvDtype], _Opt(
        "--kv-dtype", help="KV-cache dtype (default: the weights' when 16-bit or fp8, else bf16).")] = None,
    concurrency: Annotated[int, _Opt("--concurrency", help="Peak concurrent requests.",
                                     rich_help_panel=_TARGETS)] = 16,
    input_tokens: Annotated[int, _Opt("--input-tokens", help="Prompt tokens per request.",
                                      rich_help_panel=_TARGETS)] = 1024,
    output_tokens: Annotated[int, _Opt("--output-tokens", help="Generated tokens per request.",
                                       rich_help_panel=_TARGETS)] = 256,
    target_tps: Annotated[float, _Opt("--target-tps", help="Decode tokens/s each user must see "
                                      "(15 = grade C, 30 = B, 70 = A).", rich_help_panel=_TARGETS)] = 30.0,
    ttft_ms: Annotated[Optional[float], _Opt(
        "--ttft-ms", help="Most time to first token, for the last of a burst of simultaneous requests.",
        rich_help_panel=_TARGETS)] = None,
    gpu: Annotated[Optional[str], _Opt("--gpu", help="Plan for this GPU only (default: every GPU of the "
                                       "catalogue).", rich_help_panel=_HARDWARE)] = None,
    gpu_catalog: Annotated[Optional[Path], _Opt("--gpu-catalog", help="JSON GPU catalogue to use instead of "
                                                "the built-in one.", rich_help_panel=_HARDWARE)] = None,
    price_per_hour: Annotated[Optional[float], _Opt(
        "--price-per-hour", help="Price of one GPU-hour of --gpu, for the cost columns.",
        rich_help_panel=_HARDWARE)] = None,
    memory_overhead: Annotated[float, _Opt("--memory-overhead", help="Share of GPU memory kept back for "
                                           "activations, CUDA context and runtime buffers.",
                                           rich_help_panel=_ASSUME)] = 0.10,
    bandwidth_efficiency: Annotated[float, _Opt(
        "--bandwidth-efficiency", help="Share of peak memory bandwidth decode reaches.",
        rich_help_panel=_ASSUME)] = 0.75,
    compute_efficiency: Annotated[float, _Opt("--compute-efficiency", help="Share of peak dense tensor "
                                              "FLOP/s prefill reaches.", rich_help_panel=_ASSUME)] = 0.50,
    engine: Annotated[str, _Opt("--engine", help="Whose decode steps: roofline (the memory or compute bound "
                                "alone, as TensorRT-LLM nears it) or pytorch (tritonkit's PyTorch engine, "
                                "measured on an H200).", rich_help_panel=_ASSUME)] = "roofline",
    step_overhead_ms: Annotated[Optional[float], _Opt(
        "--step-overhead-ms", help="Fixed time added to every decode step (launches, scheduling); default: the "
        "engine's profile.", rich_help_panel=_ASSUME)] = None,
    as_json: Annotated[bool, _Opt("--json", help="Print the plan as JSON.", rich_help_panel=_OUTPUT)] = False,
    write: Annotated[Optional[Path], _Opt(
        "--write", help="Put the plan for --gpu into this spec's LLM entry, keeping its comments and layout.",
        rich_help_panel=_OUTPUT)] = None,
    llm: Annotated[Optional[str], _Opt("--llm", help="Which llms: entry --write edits, when the spec has "
                                       "several.", rich_help_panel=_OUTPUT)] = None,
) -> int:
    """Size GPUs for an LLM: memory, tensor parallelism, batch, replicas, speed grade and cost.

    Weights and KV cache decide the tensor-parallel size; memory bandwidth bounds decode speed, compute
    bounds prefill. Every figure is an estimate under the stated assumptions: check it with tritonkit bench.
    """
    if price_per_hour is not None and gpu is None:
        raise typer.BadParameter("it prices one GPU model: give --gpu too", param_hint="--price-per-hour")
    if write is not None and gpu is None:
        raise typer.BadParameter("it needs the GPU to write the plan for: give --gpu", param_hint="--write")
    if price_per_hour is not None and price_per_hour < 0:
        message = f"price must not be negative (got {price_per_hour:g})"
        raise PlanError(Problem(message, path="--price-per-hour"))
    arch = load_architecture(model)
    catalog = load_catalog(gpu_catalog)
    targets = Targets(concurrency, input_tokens, output_tokens, target_tps, ttft_ms, dtype.value,
                      kv_dtype.value if kv_dtype is not None else None)
    profile = engine_profile(engine)
    assumptions = Assumptions(memory_overhead, bandwidth_efficiency, compute_efficiency,
                              step_overhead_ms=profile.fixed_ms if step_overhead_ms is None else step_overhead_ms,
                              per_sequence_ms=profile.per_sequence_ms)
    if gpu is not None:
        plans = [plan_gpu(arch, find_gpu(catalog, gpu), targets, assumptions, price_per_hour)]
        skipped: list[tuple[str, str]] = []
    else:
        plans, skipped = plan_candidates(arch, catalog, targets, assumptions)
    edit = _write_spec(write, plans[0], llm) if write is not None else None
    report = _report(arch, targets, assumptions, plans, skipped, edit, write)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_table(report, plans, skipped)
    return EXIT_OK


def _report(arch: Architecture, targets: Targets, assumptions: Assumptions, plans: list[GpuPlan],
            skipped: list[tuple[str, str]], edit: Optional[SpecEdit], spec: Optional[Path]) -> dict[str, Any]:
    model = arch.to_dict()
    model["weights_gb"] = weight_bytes(arch, targets.dtype) / 1e9
    model["kv_bytes_per_token"] = kv_bytes_per_token(arch, targets.cache_dtype)
    report: dict[str, Any] = {
        "model": model,
        "targets": {**asdict(targets), "kv_dtype": targets.cache_dtype},
        "assumptions": asdict(assumptions),
        "plans": [item.to_dict() for item in plans],
        "skipped": [{"gpu": name, "reason": reason} for name, reason in skipped],
    }
    if edit is not None:
        report["written"] = {"spec": str(spec), "changes": [asdict(change) for change in edit.changes]}
    return report


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _money(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _print_summary(report: dict[str, Any]) -> None:
    model, targets, assume = report["model"], report["targets"], report["assumptions"]
    out_console.print(
        f"{model['name']}: {model['parameters'] / 1e9:.3g}B parameters, {model['layers']} layers, "
        f"{model['heads']} heads / {model['kv_heads']} KV heads x {model['head_dim']}; weights "
        f"{model['weights_gb']:.2f} GB at {targets['dtype']}, KV cache "
        f"{model['kv_bytes_per_token'] / 1024:g} KiB "
        f"per token at {targets['kv_dtype']}", markup=False)
    out_console.print(
        f"targets: {targets['concurrency']} concurrent request{'s' if targets['concurrency'] != 1 else ''} of "
        f"{targets['input_tokens']} + "
        f"{targets['output_tokens']} tokens, {targets['target_tps']:g} tok/s per user"
        + (f", TTFT <= {targets['ttft_ms']:g} ms" if targets["ttft_ms"] else ""), markup=False)
    out_console.print(
        f"assumptions: {assume['memory_overhead']:.0%} of GPU memory kept back, decode at "
        f"{assume['bandwidth_efficiency']:.0%} of peak bandwidth, prefill at "
        f"{assume['compute_efficiency']:.0%} "
        f"of peak dense tensor FLOP/s, {assume['step_overhead_ms']:g} ms fixed cost per decode step "
        f"+ {assume['per_sequence_ms']:g} ms per sequence, "
        "tensor-parallel communication not modelled", markup=False)


def _print_table(report: dict[str, Any], plans: list[GpuPlan], skipped: list[tuple[str, str]]) -> None:
    _print_summary(report)
    priced = any(item.cost_per_hour is not None for item in plans)
    columns = ["GPU", "TP", "replicas", "GPUs", "max batch", "tok/s/user", "grade", "target", "TTFT ms",
               "burst TTFT ms", "KV fraction", "KV tokens"] + (["$/hour", "$/M tokens"] if priced else [])
    table = Table(show_edge=False)
    for column in columns:
        table.add_column(column, justify="left" if column == "GPU" else "right", no_wrap=True)
    for item in plans:
        cells = [item.gpu, str(item.tensor_parallel), str(item.replicas), str(item.total_gpus),
                 str(item.max_batch_size), f"{item.tokens_per_s_per_user:.1f}", item.grade,
                 "met" if item.meets_target else "missed", _ms(item.ttft_ms),
                 _ms(item.ttft_burst_ms), f"{item.kv_free_gpu_memory_fraction:.2f}",
                 f"{item.kv_max_tokens:,}"]
        if priced:
            cells += [_money(item.cost_per_hour, 2), _money(item.cost_per_million_tokens, 3)]
        table.add_row(*cells)
    # A pipe or file is not a terminal: print the whole table rather than fold it to 80 columns.
    wide = out_console
    if not out_console.is_terminal:
        wide = Console(file=out_console.file, width=200, highlight=False)
    wide.print(table)
    for item in plans:
        for note in item.notes:
            out_console.print(f"{item.gpu}: {note}", markup=False)
    for name, reason in skipped:
        err_console.print(f"skipped {name}: {reason}", markup=False)


def _write_spec(path: Path, chosen: GpuPlan, llm: Optional[str]) -> SpecEdit:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(Problem(f"cannot read the spec: {exc.strerror or exc}", path=str(path),
                                hint="give --write an existing spec (tritonkit init writes one)")) from None
    edit = edit_spec_text(text, spec_values(chosen), path=str(path), llm=llm)
    for change in edit.changes:
        old = " ".join((change.old or "").split())
        verb = f"{old} -> {change.new}" if change.old is not None else f"add {change.new}"
        err_console.print(f"{path}:{change.line}: {change.key}: {verb}", markup=False)
    if edit.text == text:
        err_console.print(f"same {path}", markup=False)
        return edit
    write_atomic(path, edit.text.encode("utf-8"), mode=None)
    err_console.print(f"update {path}", markup=False)
    return edit


