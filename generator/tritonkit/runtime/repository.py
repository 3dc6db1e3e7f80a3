"""Read just enough of a model repository to say, before start, which models a local server can run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tritonkit.errors import Problem, ServerError
from tritonkit.triton import ENSEMBLE, FILE_BACKENDS, PLATFORM_BACKENDS, parse_config

__all__ = ["LoadPlan", "RepositoryModel", "docker_command", "empty_repository_warning", "plan_loads",
           "repository_path_problem", "scan_repository", "unsupported_models"]

#: The folder ``tritonkit generate`` writes the model repository into, inside its output folder.
GENERATED_DIR = "model_repository"
_SPEC_SUFFIXES = (".yaml", ".yml")

#: The NGC image tag suggested for models the local server cannot run.
NGC_IMAGE = "nvcr.io/nvidia/tritonserver:25.10-py3"


@dataclass(frozen=True)
class RepositoryModel:
    """One model folder: its name, the backend that serves it, and the ensemble steps it calls."""

    name: str
    folder: Path
    backend: Optional[str]
    steps: tuple[str, ...] = ()


def _parse_config(path: Path) -> tuple[Optional[str], tuple[str, ...]]:
    """Read the backend (or ``"ensemble"``) and the ensemble steps' model names through the one config reader.

    A config that does not parse is left to the server, which reports it with its own message.
    """
    from google.protobuf import text_format

    try:
        config = parse_config(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, text_format.ParseError):
        return None, ()
    steps = tuple(step.model_name for step in config.ensemble_scheduling.step)
    if config.platform == ENSEMBLE:
        return ENSEMBLE, steps
    backend = config.backend or PLATFORM_BACKENDS.get(config.platform, config.platform)
    return backend or None, steps


def _backend_from_files(folder: Path) -> Optional[str]:
    for version in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()):
        for filename, backend in FILE_BACKENDS.items():
            if (version / filename).exists():
                return backend
    return None


def scan_repository(repo: Path) -> list[RepositoryModel]:
    """List the model folders of ``repo`` (those holding a config.pbtxt or a version folder)."""
    models = []
    for folder in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
        config = folder / "config.pbtxt"
        backend, steps = _parse_config(config) if config.is_file() else (None, ())
        backend = backend or _backend_from_files(folder)
        models.append(RepositoryModel(folder.name, folder, backend, steps))
    return models


def unsupported_models(models: Iterable[RepositoryModel], backends: frozenset[str]) -> dict[str, str]:
    """Map each model the server cannot run to why: its backend is missing, or an ensemble step is.

    Models whose backend is unknown are left to the server, which names the problem itself.
    """
    by_name = {m.name: m for m in models}
    reasons: dict[str, str] = {}
    for model in by_name.values():
        if model.backend and model.backend != "ensemble" and model.backend not in backends:
            reasons[model.name] = f"backend '{model.backend}' is not in this tritonserver"
    changed = True
    while changed:  # an ensemble is unsupported when any step is, transitively
        changed = False
        for model in by_name.values():
            missing = [s for s in model.steps if s in reasons]
            if model.name not in reasons and missing:
                reasons[model.name] = f"ensemble step '{missing[0]}' cannot run here"
                changed = True
    return reasons


def docker_command(repo: Path) -> str:
    """Return the command that serves ``repo`` in the NGC container, which has every backend."""
    return (f"docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 "
            f"-v {repo.resolve()}:/models {NGC_IMAGE} tritonserver --model-repository=/models")


def unsupported_problems(repo: Path, reasons: dict[str, str]) -> list[Problem]:
    """One problem per unsupported model, located at its folder, with the Docker command as the hint."""
    hint = f"serve them in the NGC container: `{docker_command(repo)}`, or pass --skip-unsupported"
    return [Problem(f"model '{name}' cannot run on the local tritonserver: {why}", path=str(repo / name),
                    hint=hint, model=name) for name, why in sorted(reasons.items())]


@dataclass(frozen=True)
class LoadPlan:
    """What a local server loads: its model control mode, the models it loads at start, and those it skips (why)."""

    control_mode: str
    load_models: list[str]
    skipped: dict[str, str]


def plan_loads(repo: Path, backends: Optional[frozenset[str]], control_mode: str, load_models: list[str],
               skip_unsupported: bool) -> LoadPlan:
    """The models a server with ``backends`` (None: not known) loads from ``repo``, as asked where it can.

    With ``skip_unsupported``, the models it cannot run are skipped: the server runs under explicit control
    and loads the others.

    Raises:
        ServerError: models the server cannot run are to be loaded and ``skip_unsupported`` is off (each
            named, with the Docker command that runs them), or it is on under poll control.

    """
    models = scan_repository(repo)
    as_asked = LoadPlan(control_mode, list(load_models), {})
    if backends is None:
        return as_asked
    wanted = {m.name for m in models} if control_mode != "explicit" else set(load_models)
    reasons = {n: r for n, r in unsupported_models(models, backends).items() if n in wanted or "*" in wanted}
    if not reasons:
        return as_asked
    if not skip_unsupported:
        raise ServerError(unsupported_problems(repo, reasons))
    if control_mode == "poll":
        raise ServerError(Problem("--skip-unsupported cannot be used with --model-control-mode poll",
                                  hint="use none or explicit"))
    names = [m.name for m in models] if control_mode == "none" or "*" in wanted else load_models
    return LoadPlan("explicit", [n for n in names if n not in reasons], reasons)


def _spec_file_problem(path: Path) -> Problem:
    repo = path.parent / GENERATED_DIR
    if repo.is_dir():
        hint = f"did you mean {repo}?"
    else:
        hint = f"run `tritonkit generate {path}` first, which writes {repo}, then pass {repo}"
    return Problem("is a spec file, not a model repository", path=str(path), hint=hint)


def repository_path_problem(path: Path) -> Optional[Problem]:
    """Why ``path`` cannot be a model repository (missing, a file, a spec, a project folder), or None.

    A project folder is one that holds ``model_repository/`` (what ``generate`` writes) and is not a
    repository itself: the hint names the folder the user most likely meant.
    """
    if not path.exists():
        return Problem("model repository not found", path=str(path),
                       hint="pass the folder that holds one folder per model (`tritonkit generate SPEC` writes "
                            "SPEC's folder/model_repository)")
    if path.is_file():
        if path.suffix in _SPEC_SUFFIXES:
            return _spec_file_problem(path)
        return Problem("is a file, not a model repository folder", path=str(path),
                       hint="pass the folder that holds one folder per model")
    inner = path / GENERATED_DIR
    if inner.is_dir() and not (inner / "config.pbtxt").is_file():
        return Problem(f"is a project folder that holds {GENERATED_DIR}/, not a model repository", path=str(path),
                       hint=f"did you mean {inner}?")
    return None


def empty_repository_warning(repo: Path, models: list[RepositoryModel]) -> Optional[str]:
    """The warning for a repository without a single model folder, with the fix; None when it has one."""
    if models:
        return None
    return (f"{repo}: warning: no model found (the folder has no model sub-folder), so the server will serve "
            "0 models; generate one with `tritonkit generate SPEC`, or pass the folder that holds one folder "
            "per model")
