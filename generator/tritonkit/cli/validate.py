"""``tritonkit validate``: static checks of any Triton model repository, each problem at file:line:col."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from tritonkit.cli._app import EXIT_OK, EXIT_USER_ERROR, app, err_console, out_console
from tritonkit.errors import RepositoryError
from tritonkit.runtime.repository import empty_repository_warning, repository_path_problem, scan_repository
from tritonkit.validate import Report, validate_k8s_folder, validate_repository
from tritonkit.write.journal import interrupted_write


class _Target(str, Enum):
    """Who answers clients: Triton's own endpoints, or Dynamo's frontend in front of Triton (Dynamo-Triton)."""

    triton = "triton"
    dynamo_triton = "dynamo-triton"


@app.command()
def validate(
    repo: Annotated[Path, typer.Argument(help="The model repository folder (one folder per model), or a "
                                              "tritonkit spec file (checked as generate would render it).",
                                         exists=True, file_okay=True, dir_okay=True)],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"ok", "errors", "warnings", "notes"} as JSON on '
                                                        "stdout instead of one line per problem.")] = False,
    gpu_count: Annotated[Optional[int], typer.Option(
        "--gpu-count", min=0, help="Number of GPUs on the serving host: GPU ids in instance groups must be "
                                   "below it.")] = None,
    gpu: Annotated[Optional[str], typer.Option(
        "--gpu", help="GPU type of the serving host (e.g. H100, L40S, A100): FP8 and FP4 checkpoints and KV "
                      "caches are checked against its compute capability.")] = None,
    backends: Annotated[Optional[str], typer.Option(
        "--backends", help="Comma-separated backends the serving tritonserver has (e.g. python,onnxruntime): a "
                           "model whose backend is missing is an error, as Triton refuses it.")] = None,
    triton_version: Annotated[Optional[str], typer.Option(
        "--triton-version", help="NGC release the repository is served with (e.g. 26.04): tensors and "
                                 "model.yaml keys are checked against its TensorRT-LLM, layouts against its "
                                 "images.")] = None,
    target: Annotated[Optional[_Target], typer.Option(
        "--target", help="Who answers clients: triton (Triton's own endpoints) or dynamo-triton (Dynamo's "
                         "frontend in front of Triton), which adds warnings where Dynamo refuses or changes a "
                         "request. Default: triton, or a spec's triton.target.", show_default=False)] = None,
) -> int:
    """Check a Triton model repository the way tritonserver does when it loads it.

    Errors are what Triton would refuse (exit 1); warnings are what it accepts but is likely a
    mistake (exit 0). Each problem is printed as FILE:LINE:COL: message; hint. Given a spec file,
    the spec, its models and the repository they render to are checked in memory; nothing is written.
    A k8s/ folder beside the repository (or rendered from the spec) is checked too: core kinds
    strictly against the Kubernetes versions it targets, KEDA and prometheus-operator kinds against
    the schemas tritonkit ships.
    """
    if repo.is_file():
        from tritonkit.pipeline import check_spec  # heavy: protobuf, pydantic

        report = check_spec(repo, gpus=gpu_count, gpu=gpu, triton_version=triton_version,
                            target=target.value if target else None)
    else:
        problem = repository_path_problem(repo)
        if problem is not None:
            raise RepositoryError(problem)
        have = None if backends is None else {b.strip() for b in backends.split(",") if b.strip()}
        report = validate_repository(repo, gpus=gpu_count, gpu=gpu, triton_version=triton_version, backends=have,
                                     target=target.value if target else _Target.triton.value)
        empty = empty_repository_warning(repo, scan_repository(repo))
        if empty is not None:
            err_console.print(empty, markup=False)
        _add_k8s(report, repo.parent / "k8s")
        left = interrupted_write(repo)
        if left is not None:  # a killed generate's switch: part old, part new, whatever else is found
            report.errors.insert(0, left)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for problem in [*report.errors, *report.warnings, *report.notes]:
            out_console.print(problem.format(), markup=False)
    err_console.print(_summary(report, repo), markup=False)
    return int(EXIT_OK if report.ok else EXIT_USER_ERROR)


def _add_k8s(report: Report, folder: Path) -> None:
    """Check the ``k8s/`` folder that ``generate`` writes beside the repository, when there is one."""
    if not (folder / "kustomization.yaml").is_file():
        return
    found = validate_k8s_folder(folder)
    report.errors += found.errors
    report.warnings += found.warnings


def _summary(report: Report, repo: Path) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    verdict = "ok" if report.ok else "invalid"
    return (f"{repo}: {verdict}: {report.models} model{'s' * (report.models != 1)}, "
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
            + (f", {len(report.notes)} note{'s' * (len(report.notes) != 1)}" if report.notes else ""))
