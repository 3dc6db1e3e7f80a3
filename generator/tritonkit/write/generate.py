"""``generate``: spec -> models -> rendered tree -> validated in memory -> written where it changed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from tritonkit.errors import DriftError, Problem, RepositoryError, SpecError, WriteConflictError, WriteError
from tritonkit.model.types import FileSource, RepositoryModel
from tritonkit.pipeline import REPOSITORY_DIR, Built, build_spec, check_rendered, check_spec, render_built
from tritonkit.render.repository import Rendered
from tritonkit.spec.load import LoadedSpec
from tritonkit.write.journal import interrupted_write, locked, recover, remove_stray_temp_files
from tritonkit.write.manifest import MANIFEST_NAME, FileRecord, Manifest, read_manifest
from tritonkit.write.plan import Action, WritePlan, apply_plan, plan_writes
from tritonkit.write.versions import VersionDecision, decide_versions

# check_spec and REPOSITORY_DIR live in the pipeline; they stay importable from here.
__all__ = ["REPOSITORY_DIR", "GenerateResult", "check_spec", "generate"]


@dataclass(frozen=True)
class GenerateResult:
    """What a run did (or would do): the plan, and the version each model is served from."""

    plan: WritePlan
    versions: dict[str, int]
    written: bool


def _spec_relative(spec_path: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(spec_path.resolve(), out_dir.resolve())).as_posix()


def _spec_name(spec_path: Path, out_dir: Path) -> str:
    """The spec as generated files name it: relative to the output folder, never a machine path."""
    relative = _spec_relative(spec_path, out_dir)
    return spec_path.name if relative.startswith("../") else relative


def _check_same_spec(manifest: Manifest, spec_path: Path, out: Path, shown: str) -> None:
    """Refuse to generate one spec into a repository that the manifest says another spec made."""
    if manifest.made_from(_spec_name(spec_path, out), _spec_relative(spec_path, out)):
        return
    repo = out / REPOSITORY_DIR
    raise WriteConflictError(Problem(
        f"{repo} was generated from another spec, {manifest.spec_shown} (its manifest says so); generating "
        f"{spec_path} here would remove that spec's models", path=shown,
        hint=f"generate into another folder with -o, or remove {repo} to start it over from {spec_path.name} "
             "(a renamed or moved spec counts as another spec)"))


def _decide(loaded: LoadedSpec, repository: RepositoryModel, manifest: Manifest) -> dict[str, VersionDecision]:
    decisions: dict[str, VersionDecision] = {}
    problems: list[Problem] = []
    for unit in repository.units:
        decision = decide_versions(unit, manifest.versions.get(unit.name, {}))
        if decision.missing:
            problems.append(loaded.problem(
                (*unit.spec_loc, "version_policy"),
                f"asks for version(s) {list(decision.missing)}, which model '{unit.name}' does not have in this "
                f"repository (it has {sorted(decision.digests)})", "name versions that exist, or use latest",
                model=unit.name))
        decisions[unit.name] = decision
    if problems:
        raise SpecError(problems)
    return decisions


def _kept_files(manifest: Manifest, decisions: dict[str, VersionDecision]) -> set[str]:
    keep: set[str] = set()
    for name, decision in decisions.items():
        for version in decision.kept:
            if version == decision.current:
                continue
            prefix = f"{REPOSITORY_DIR}/{name}/{version}/"
            keep.update(p for p in manifest.files if p.startswith(prefix))
    return keep


def _shown(path: Path) -> str:
    """A folder as messages name it: relative to the working folder when inside it."""
    relative = os.path.relpath(path.resolve(), Path.cwd())
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def _check_in_memory(built: Built, tree: dict[str, Rendered], keep: set[str], out: Path,
                     versions: dict[str, int]) -> None:
    """Every Triton rule over the repository as it will be: the new version and the kept older ones."""
    kept = {path: FileSource(path=out / path) for path in keep}
    root = _shown(out / REPOSITORY_DIR)
    report = check_rendered(built, tree, kept=kept, versions=versions, root_shown=root)
    output_side = (root + "/", "k8s/")  # an older kept version, or the rendered k8s/ manifests
    if any(not (p.path or "").startswith(output_side) for p in report.errors):
        raise SpecError(report.errors)  # located at spec keys or in artifacts: the spec's side is what to change
    if report.errors:
        raise RepositoryError(report.errors)


def _new_manifest(old: Manifest, plan: WritePlan, spec_name: str, spec_relative: str,
                  decisions: dict[str, VersionDecision]) -> Manifest:
    changed = bool(plan.changes) or old.spec != spec_name
    run = old.run + 1 if changed or not old.files else old.run
    files: dict[str, FileRecord] = {}
    for action in plan.actions:
        if action.status == "remove":
            continue
        previous = old.files.get(action.path)
        same = action.status == "same" and previous is not None and previous.sha256 == action.sha256
        files[action.path] = previous if same and previous else FileRecord(action.sha256, run)
    return Manifest(spec=spec_name, run=run, files=files,
                    versions={name: d.digests for name, d in decisions.items()},
                    spec_path=spec_relative if spec_relative != spec_name else "")


def _drift_error(plan: WritePlan, spec_shown: str, out: Path) -> DriftError:
    drift = [Problem(f"would {a.status}" if a.status in ("create", "update", "remove") else a.reason, path=a.path)
             for a in plan.changes + plan.conflicts]
    drift.append(Problem(f"{len(drift)} file(s) differ from the spec", path=spec_shown,
                         hint=f"run `tritonkit generate {spec_shown} -o {out}` and commit the result"))
    return DriftError(drift)


def generate(spec_path: Union[str, Path], out_dir: Union[str, Path, None] = None, *, dry_run: bool = False,
             check: bool = False, force: bool = False, display_path: Optional[str] = None) -> GenerateResult:
    """Generate (or check) the repository a spec describes under ``out_dir`` (default: the spec's folder).

    The write is atomic for the whole output folder: a kill at any point leaves the old files or, once
    the next run has finished the switch it journaled, the new ones (see :mod:`tritonkit.write.journal`).

    Raises:
        SpecError: the spec is wrong (every problem, located), including a Triton load-time rule that the
            rendered repository breaks (located at the spec key that wrote the field).
        RepositoryError: an older version the policy keeps loaded breaks a Triton load-time rule.
        WriteConflictError: a file in the way was not written by tritonkit, or was edited by hand, or the
            repository's manifest says another spec made it.
        WriteError: the files could not be written (a full disk, permissions): the old ones are intact; or,
            with ``check`` or ``dry_run``, an interrupted run left its write unfinished.
        DriftError: with ``check``, the repository on disk differs from the spec.

    """
    out = Path(out_dir) if out_dir is not None else Path(spec_path).parent
    if check or dry_run:
        left = interrupted_write(out / REPOSITORY_DIR)
        if left is not None:
            raise WriteError(left)
        return _generate(spec_path, out, dry_run=dry_run, check=check, force=force, display_path=display_path)
    with locked(out):
        recover(out)
        return _generate(spec_path, out, dry_run=False, check=False, force=force, display_path=display_path)


def _generate(spec_path: Union[str, Path], out: Path, *, dry_run: bool, check: bool, force: bool,
              display_path: Optional[str]) -> GenerateResult:
    spec_file = Path(spec_path)
    built = build_spec(spec_path, display_path)
    loaded, repository = built.loaded, built.repository
    manifest_path = f"{REPOSITORY_DIR}/{MANIFEST_NAME}"
    manifest = read_manifest(out / manifest_path, str(out / manifest_path))
    _check_same_spec(manifest, spec_file, out, loaded.document.display_path)
    decisions = _decide(loaded, repository, manifest)
    spec_name = _spec_name(spec_file, out)
    versions = {n: d.current for n, d in decisions.items()}
    tree = render_built(built, versions, spec_name)
    keep = _kept_files(manifest, decisions)
    _check_in_memory(built, tree, keep, out, versions)
    lost = None if (out / manifest_path).exists() else manifest_path
    plan = plan_writes(out, tree, keep, manifest, force, lost_manifest=lost)
    new_manifest = _new_manifest(manifest, plan, spec_name, _spec_relative(spec_file, out), decisions)
    manifest_bytes = new_manifest.to_bytes()
    current = (out / manifest_path).read_bytes() if (out / manifest_path).exists() else None
    status = "same" if current == manifest_bytes else ("update" if current is not None else "create")
    plan.actions.append(Action(status, manifest_path, manifest_bytes))
    plan.manifest = new_manifest
    if check:
        if plan.changes or plan.conflicts:
            raise _drift_error(plan, loaded.document.display_path, out)
        return GenerateResult(plan, versions, written=False)
    if dry_run:
        return GenerateResult(plan, versions, written=False)
    apply_plan(plan)
    remove_stray_temp_files(out, {*tree, *manifest.files, manifest_path})
    return GenerateResult(plan, versions, written=True)
