"""The spec -> model -> render -> validate pipeline, all in memory: what generate, --check and validate SPEC share.

Triton's load-time rules live once, in :mod:`tritonkit.validate`, and run over the rendered
repository. Each problem they find names a model and a ``ModelConfig`` field path; here that path
is mapped to the spec key that wrote the field (``models[2].dynamic_batching.preferred_batch_size[1]``),
and a problem inside a copied file (``model.py``) to the artifact it was copied from. Writing is
the next, separate step (:mod:`tritonkit.write`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import Loc, LocationMap, Mark
from tritonkit.model.repository import build_repository
from tritonkit.model.types import FileSource, ModelUnit, RepositoryModel
from tritonkit.render.repository import Rendered, render_tree
from tritonkit.spec.load import LoadedSpec, load_spec
from tritonkit.triton import BACKEND_FILES
from tritonkit.validate import Report, validate_k8s_files, validate_tree

__all__ = ["REPOSITORY_DIR", "Built", "build_spec", "check_rendered", "check_spec", "render_built"]

#: The model repository's folder inside the output folder (the project's fixed top level).
REPOSITORY_DIR = "model_repository"

#: ModelConfig field -> the spec key that writes it, where the names differ.
_SPEC_NAMES = {"ensemble_scheduling": ("steps",), "step": (), "platform": ("backend",)}


@dataclass(frozen=True)
class Built:
    """A loaded spec and the models it describes: everything render needs."""

    loaded: LoadedSpec
    repository: RepositoryModel


def build_spec(spec_path: Union[str, Path], display_path: Optional[str] = None) -> Built:
    """Load a spec and build its models.

    Raises:
        SpecError: every problem of the spec and of its models, located at the spec key.

    """
    loaded = load_spec(spec_path, display_path)
    return Built(loaded, build_repository(loaded))


def render_built(built: Built, versions: Mapping[str, int], spec_name: str) -> dict[str, Rendered]:
    """Render every file of the output folder (the repository under ``REPOSITORY_DIR``, docker/, k8s/)."""
    return render_tree(built.repository, versions, spec_name, REPOSITORY_DIR)


def _repository_files(built: Built, tree: Mapping[str, Rendered], kept: Mapping[str, object],
                      versions: Mapping[str, int]) -> dict[str, object]:
    """The repository as it will be on disk: rendered files plus the kept files of older versions."""
    prefix = REPOSITORY_DIR + "/"
    files: dict[str, object] = {p[len(prefix):]: data for p, data in tree.items() if p.startswith(prefix)}
    files.update({p[len(prefix):]: data for p, data in kept.items() if p.startswith(prefix)})
    # Engines that docker/'s engine-build service writes on the GPU host count as present.
    deployment = built.repository.deployment
    for step in deployment.trt_steps if deployment else ():
        files.setdefault(f"{step.model}/{versions.get(step.model, 1)}/{BACKEND_FILES['tensorrt']}", b"")
    return files


def check_rendered(built: Built, tree: Mapping[str, Rendered], *, kept: Optional[Mapping[str, object]] = None,
                   versions: Optional[Mapping[str, int]] = None, root_shown: str = REPOSITORY_DIR,
                   gpus: Optional[int] = None, gpu: Optional[str] = None,
                   triton_version: Optional[str] = None, target: Optional[str] = None) -> Report:
    """Run every Triton rule over the rendered repository; locate each problem at the spec key that caused it.

    The rendered ``k8s/`` folder, when the spec deploys to Kubernetes, is checked too (strict schemas).

    Args:
        built: the spec and its models.
        tree: what :func:`render_built` returned.
        kept: files of older versions that stay loaded (``model_repository/m/1/model.py`` -> bytes or a
            ``FileSource``): the rules check every version the policy loads, not only the new one.
        versions: each model's current version number (default 1).
        root_shown: how problems in kept files name the repository folder.
        gpus: as for :func:`tritonkit.validate.validate_repository`.
        gpu: as for :func:`tritonkit.validate.validate_repository`.
        triton_version: as for :func:`tritonkit.validate.validate_repository` (default: the spec's).
        target: as for :func:`tritonkit.validate.validate_repository` (default: the spec's ``triton.target``).

    """
    versions = versions or {}
    files = _repository_files(built, tree, kept or {}, versions)
    triton = built.loaded.spec.triton
    report = validate_tree(files, root_name=root_shown, gpus=gpus, gpu=gpu,
                           triton_version=triton_version or triton.version, target=target or triton.target)
    units = {unit.name: unit for unit in built.repository.units}
    place = _Placer(built.loaded, units, versions, root_shown)
    k8s = _k8s_report(built, tree)
    report.errors = [place(p) for p in report.errors] + k8s.errors
    report.warnings = [place(p) for p in report.warnings] + k8s.warnings
    return report


def _k8s_report(built: Built, tree: Mapping[str, Rendered]) -> Report:
    """Strict schema checks of the rendered ``k8s/`` (no findings when the spec has no deploy.kubernetes)."""
    kubernetes = built.repository.kubernetes
    if kubernetes is None:
        return Report()
    files = {p: d if isinstance(d, bytes) else d.read() for p, d in tree.items() if p.startswith("k8s/")}
    return validate_k8s_files(files, kubernetes.spec.versions)


def check_spec(spec_path: Union[str, Path], *, gpus: Optional[int] = None, gpu: Optional[str] = None,
               triton_version: Optional[str] = None, target: Optional[str] = None) -> Report:
    """Validate a spec as ``generate`` would use it: spec, models and rendered repository, all in memory.

    ``triton_version`` and ``target`` default to the spec's ``triton.version`` and ``triton.target``. A spec
    error becomes the report's errors instead of an exception, so callers print one format.
    """
    try:
        built = build_spec(spec_path)
    except SpecError as exc:
        return Report(errors=list(exc.problems))
    tree = render_built(built, {}, Path(spec_path).name)
    return check_rendered(built, tree, gpus=gpus, gpu=gpu, triton_version=triton_version, target=target)


def _spec_path(unit: ModelUnit, field: tuple[Union[str, int], ...]) -> Loc:
    """The spec key of a ``models:`` entry that writes config field ``field`` (spec keys reuse Triton's names)."""
    loc: list[Union[str, int]] = list(unit.spec_loc)
    for part in field:
        loc.extend(_SPEC_NAMES.get(part, (part,)) if isinstance(part, str) else (part,))
    return tuple(loc)


def _mark(locations: LocationMap, loc: Loc) -> Mark:
    """The key that names ``loc`` (or a list entry's start), or that of its nearest written parent."""
    for end in range(len(loc), 0, -1):
        part = loc[:end]
        variants = [part, (*part[:-1], int(part[-1]))] if isinstance(part[-1], str) and part[-1].isdigit() \
            else [part]
        for candidate in variants:
            mark = locations.keys.get(candidate) or locations.values.get(candidate)
            if mark is not None:
                return mark
    return locations.value(loc)


class _Placer:
    """Moves a problem of the rendered repository to where the user can fix it."""

    def __init__(self, loaded: LoadedSpec, units: dict[str, ModelUnit], versions: Mapping[str, int],
                 root: str) -> None:
        self._loaded, self._units, self._versions, self._root = loaded, units, versions, root

    def __call__(self, problem: Problem) -> Problem:
        unit = self._units.get(problem.model or "")
        if unit is None or problem.path is None:
            return problem
        base = f"{self._root}/{unit.name}"
        current = f"{base}/{self._versions.get(unit.name, 1)}/"
        if problem.path.startswith(current):
            return self._in_copied_file(unit, problem, problem.path[len(current):])
        if problem.path not in (base, f"{base}/config.pbtxt"):
            return problem  # a kept older version: the file on disk is the one to fix
        locations = self._loaded.document.locations
        mark = _mark(locations, _spec_path(unit, problem.field) if unit.origin == "models" else unit.spec_loc)
        return Problem(f"{problem.message} (in the rendered {problem.where()})", path=locations.path,
                       line=mark.line, col=mark.col, hint=problem.hint, model=problem.model,
                       severity=problem.severity, field=problem.field)

    def _in_copied_file(self, unit: ModelUnit, problem: Problem, name: str) -> Problem:
        source: Optional[FileSource] = unit.version_files.get(name)
        if source is None or source.path is None:
            return problem
        shown = _shown_path(source.path)
        return Problem(f"{problem.message} (copied to {problem.path})", path=shown, line=problem.line,
                       col=problem.col, hint=problem.hint, model=problem.model, severity=problem.severity,
                       field=problem.field)


def _shown_path(path: Path) -> str:
    """A source file as the user knows it: relative to the working folder when it is inside it."""
    relative = os.path.relpath(path.resolve(), Path.cwd())
    return str(path) if relative.startswith("..") else Path(relative).as_posix()
