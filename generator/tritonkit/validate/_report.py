"""The result of a validation run, and the per-model facts every rule reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from tritonkit.errors import Problem
from tritonkit.triton import loaded_versions
from tritonkit.validate._locate import Locator, PathPart

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

__all__ = ["ModelEntry", "Report", "Sink"]


@dataclass
class Report:
    """Every problem found in a repository: errors Triton would refuse, warnings it would accept.

    ``notes`` are facts that are not likely mistakes (an optional template parameter left unset, so
    that its default applies); they never make the report fail.
    """

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    models: int = 0
    notes: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form printed by ``validate --json``."""
        return {
            "ok": self.ok,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
            "notes": [p.to_dict() for p in self.notes],
        }


@dataclass
class ModelEntry:
    """One model folder: its parsed config (None when missing or unparsable) and version folders.

    ``versions`` maps each version number Triton would see (numeric folder names without a
    leading zero) to the names of the entries in that folder. ``auto_complete`` and ``decoupled``
    are filled in by rules as they learn them, for the rules that run after them.
    """

    name: str
    folder: str
    config: Optional[ModelConfig]
    locator: Locator
    has_config_file: bool
    versions: dict[int, list[str]] = field(default_factory=dict)
    #: model.py's auto_complete_config completes the config at load in a way not read statically: it may
    #: add inputs, outputs and max_batch_size (one it can read is applied to ``config`` instead).
    auto_complete: bool = False
    #: (model.py path, line) of the auto_complete_config method, when there is one.
    auto_complete_at: Optional[tuple[str, int]] = None
    #: what rules did not report because ``auto_complete`` may fill it ("input 'X' dims", ...).
    left_to_auto_complete: list[str] = field(default_factory=list)
    #: decoupled, by its own config or (an ensemble) through a decoupled model on its data path.
    decoupled: bool = False

    @property
    def config_path(self) -> str:
        """The display path of the model's config.pbtxt."""
        return f"{self.folder}/config.pbtxt"

    def available_versions(self) -> list[int]:
        """Return the versions Triton would load under the config's version policy."""
        policy = self.config.version_policy if self.config is not None else None
        return loaded_versions(policy, self.versions)


class Sink:
    """Collects problems, locating each at a field of the model's config.pbtxt."""

    def __init__(self, report: Report) -> None:
        self._report = report

    def error(self, entry: ModelEntry, where: tuple[PathPart, ...], message: str,
              hint: Optional[str] = None, path: Optional[str] = None) -> None:
        """Record an error at field path ``where`` of ``entry``'s config (or at ``path``)."""
        self._report.errors.append(self._problem(entry, where, message, hint, path, "error"))

    def warning(self, entry: ModelEntry, where: tuple[PathPart, ...], message: str,
                hint: Optional[str] = None, path: Optional[str] = None) -> None:
        """Record a warning at field path ``where`` of ``entry``'s config (or at ``path``)."""
        self._report.warnings.append(self._problem(entry, where, message, hint, path, "warning"))

    def add(self, problem: Problem) -> None:
        """Record a problem built elsewhere, by its severity."""
        targets = {"warning": self._report.warnings, "note": self._report.notes}
        targets.get(problem.severity, self._report.errors).append(problem)

    @staticmethod
    def _problem(entry: ModelEntry, where: tuple[PathPart, ...], message: str, hint: Optional[str],
                 path: Optional[str], severity: str) -> Problem:
        if path is not None:
            return Problem(message, path=path, hint=hint, model=entry.name, severity=severity, field=where)
        line, col = entry.locator.find(*where) if where else (None, None)
        if line is None and entry.has_config_file:
            line, col = 1, 1
        at = entry.config_path if entry.has_config_file else entry.folder
        return Problem(message, path=at, line=line, col=col, hint=hint, model=entry.name,
                       severity=severity, field=where)
