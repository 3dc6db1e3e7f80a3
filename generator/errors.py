"""The exception tree: every failure a user can act on is a TritonkitError."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "ClientError",
    "DriftError",
    "Problem",
    "RepositoryError",
    "ServerError",
    "SpecError",
    "TritonkitError",
    "WriteConflictError",
]

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, located in a file, in the compiler shape: where, what, what to do.

    ``severity`` is ``"error"`` or ``"warning"``. ``model`` names the Triton model the problem
    belongs to, where there is one.
    """

    message: str
    path: Optional[str] = None
    line: Optional[int] = None
    col: Optional[int] = None
    hint: Optional[str] = None
    model: Optional[str] = None
    severity: str = "error"

    def where(self) -> str:
        """Return ``path:line:col`` with the parts that are known."""
        parts = [self.path or "<spec>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def format(self) -> str:
        """Return the one-line form ``FILE:LINE:COL: message; hint``."""
        text = f"{self.where()}: {self.message}"
        if self.severity == "warning":
            text = f"{self.where()}: warning: {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form used by ``validate --json``."""
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "model": self.model,
            "message": self.message,
            "hint": self.hint,
        }


class TritonkitError(Exception):
    """Base of every expected failure. Carries one or more located problems."""

    exit_code = 1

    def __init__(self, problems: Union[Problem, Iterable[Problem], str]) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(p.format() for p in self.problems))

    @property
    def first(self) -> Problem:
        """The first problem, for callers that show only one."""
        return self.problems[0]


class SpecError(TritonkitError, ValueError):
    """The spec file is wrong: every problem found in one pass, sorted by line."""

    def __init__(self, problems: Union[Problem, Iterable[Problem], str]) -> None:
        if not isinstance(problems, (str, Problem)):
            problems = sorted(problems, key=lambda p: (p.path or "", p.line or 0, p.col or 0))
        super().__init__(problems)


class RepositoryError(TritonkitError, ValueError):
    """A model repository on disk breaks a rule Triton applies at load time."""


class WriteConflictError(TritonkitError):
    """``generate`` would have to change a file it did not create, or one edited by hand."""


class DriftError(TritonkitError):
    """``generate --check`` found the repository out of date with its spec."""

    exit_code = 3


class ServerError(TritonkitError, RuntimeError):
    """The local tritonserver could not be found, started, or made ready."""


class ClientError(TritonkitError, RuntimeError):
    """A request to a Triton server failed in a way the caller can fix."""
