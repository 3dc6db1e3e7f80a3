"""Run every rule over a repository view and collect the report."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Optional, Union

from tritonkit.errors import Problem, RepositoryError
from tritonkit.triton.dynamo import DYNAMO_TRITON, TARGETS
from tritonkit.validate._batching import check_batching
from tritonkit.validate._dynamo import check_dynamo
from tritonkit.validate._engine import check_engine_layout
from tritonkit.validate._general import check_backend_present, check_general, resolve_backend
from tritonkit.validate._graph import check_ensemble_config
from tritonkit.validate._instances import check_instances
from tritonkit.validate._links import check_ensemble_links
from tritonkit.validate._llmapi import check_llmapi, llm_target
from tritonkit.validate._nesting import ensemble_order
from tritonkit.validate._onnx import check_onnx
from tritonkit.validate._parse import read_model
from tritonkit.validate._python import check_python, report_completed_at_load
from tritonkit.validate._report import ModelEntry, Report, Sink
from tritonkit.validate._view import DiskRepository, MappingRepository, RepositoryView
from tritonkit.validate._vllm import check_vllm

__all__ = ["validate_repository", "validate_tree", "validate_view"]


def validate_repository(path: Union[str, Path], *, gpus: Optional[int] = None, gpu: Optional[str] = None,
                        triton_version: Optional[str] = None, backends: Optional[Collection[str]] = None,
                        target: str = "triton") -> Report:
    """Validate a model repository folder on disk.

    Args:
        path: the repository folder (the one passed to ``tritonserver --model-repository``).
        gpus: how many GPUs the serving host has; GPU ids are checked against it when given.
        gpu: the serving GPU's name (``"H100"``, ``"A100-80GB"``); precisions it lacks are errors.
        triton_version: the NGC release of the serving image (``"26.04"``), as in a spec's
            ``triton.version``; LLM-API keys and tensors are checked against its TensorRT-LLM
            (default: the newest release with a known TensorRT-LLM).
        backends: the backends the serving tritonserver has (its ``--backend-directory``); a model whose
            backend is not among them is an error, as Triton refuses it. Without it, a backend NGC's
            images do not ship is a warning.
        target: ``"triton"`` (Triton's own endpoints) or ``"dynamo-triton"`` (Dynamo's frontend in front of
            Triton): the latter adds warnings where Dynamo refuses or changes a request, in its own words.

    Raises:
        RepositoryError: ``path`` is not a folder, or ``gpu``, ``triton_version`` or ``target`` is unknown.

    """
    root = Path(path)
    if not root.is_dir():
        raise RepositoryError(Problem(f"{root} is not a folder", path=str(root),
                                      hint="pass the model repository folder (it holds one folder per model)"))
    return validate_view(DiskRepository(root), gpus=gpus, gpu=gpu, triton_version=triton_version,
                         backends=backends, target=target)


def validate_tree(files: Mapping[str, object], *, root_name: str = "model_repository",
                  gpus: Optional[int] = None, gpu: Optional[str] = None,
                  triton_version: Optional[str] = None, target: str = "triton") -> Report:
    """Validate a repository held in memory as ``{"model/1/model.py": ..., "model/config.pbtxt": b"..."}``.

    Problems carry paths that start with ``root_name``. See :class:`MappingRepository` for the keys,
    and :func:`validate_repository` for the options.
    """
    return validate_view(MappingRepository(files, root_name=root_name), gpus=gpus, gpu=gpu,
                         triton_version=triton_version, target=target)


def validate_view(view: RepositoryView, *, gpus: Optional[int] = None, gpu: Optional[str] = None,
                  triton_version: Optional[str] = None, backends: Optional[Collection[str]] = None,
                  target: str = "triton") -> Report:
    """Validate any repository view; return every error and warning, sorted by file and line.

    Raises:
        RepositoryError: ``gpu``, ``triton_version`` or ``target`` is not one tritonkit knows.

    """
    if target not in TARGETS:
        raise RepositoryError(Problem(f"unknown serving target '{target}'", hint=f"use one of: {', '.join(TARGETS)}"))
    llm = llm_target(triton_version, gpu)
    report = Report()
    sink = Sink(report)
    for name in view.stray_files():
        sink.add(Problem(f"'{name}' is not a model folder; Triton ignores files at the top of a repository",
                         path=f"{view.root_name}/{name}", severity="warning",
                         hint="keep only model folders in the repository"))
    models = {name: read_model(view, name, sink) for name in view.models()}
    report.models = len(models)
    broken: set[str] = set()
    for entry in models.values():
        before = len(report.errors)
        _check_model(view, entry, sink, gpus, backends)
        check_llmapi(view, entry, sink, llm, gpus)
        check_engine_layout(entry, sink, llm)
        check_vllm(view, entry, sink, llm.release if llm.explicit else None)
        if len(report.errors) > before or (entry.config is None and entry.has_config_file):
            broken.add(entry.name)
    _check_ensembles(models, broken, sink, report)
    if target == DYNAMO_TRITON:
        check_dynamo(models, sink, view.root_name)
    key = _sort_key
    report.errors.sort(key=key)
    report.warnings.sort(key=key)
    report.notes.sort(key=key)
    return report


def _check_ensembles(models: dict[str, ModelEntry], broken: set[str], sink: Sink, report: Report) -> None:
    for entry in ensemble_order(models, broken, sink):  # inner ensembles first: outer ones read their verdict
        assert entry.config is not None
        if any(step.model_name in broken for step in entry.config.ensemble_scheduling.step):
            broken.add(entry.name)  # Triton: "depends on '<step>' which is not valid", reported at the step
            continue
        before = len(report.errors)
        check_ensemble_links(entry, models, broken, sink)
        if len(report.errors) > before:
            broken.add(entry.name)


def _check_model(view: RepositoryView, entry: ModelEntry, sink: Sink, gpus: Optional[int],
                 backends: Optional[Collection[str]]) -> None:
    backend = resolve_backend(entry) if entry.available_versions() else ""
    check_python(view, entry, sink, backend)  # first: a readable auto_complete_config completes the config
    check_general(entry, sink)
    check_backend_present(entry, sink, backend, backends)
    if entry.config is None:
        return
    entry.decoupled = entry.config.model_transaction_policy.decoupled
    check_onnx(view, entry, sink, backend)
    check_batching(entry, sink)
    check_instances(entry, sink, gpus)
    check_ensemble_config(entry, sink)
    report_completed_at_load(entry, sink)


def _sort_key(problem: Problem) -> tuple[str, int, int]:
    return (problem.path or "", problem.line or 0, problem.col or 0)
