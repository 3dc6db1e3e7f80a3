"""The exception tree: every failure a user can act on is a TritonkitError, and every class is here.

::

    Exception
    ├── TritonkitError                 exit 1 unless noted; carries located Problems
    │   ├── SpecError(ValueError)      the spec file is wrong
    │   ├── RepositoryError(ValueError)  a repository breaks a rule Triton applies at load time
    │   ├── WriteConflictError         generate would change a file it did not write, or one edited by hand
    │   ├── WriteError                 generate could not write (a full disk, permissions); says what it left
    │   ├── DriftError                 generate --check found drift (exit 3)
    │   ├── ServerError(RuntimeError)  the local tritonserver cannot be found, started or made ready
    │   ├── ClientError(RuntimeError)  a request to a Triton server failed in a way the caller can fix
    │   ├── EngineBuildError(RuntimeError)  tritonkit build cannot build a TensorRT engine here
    │   ├── PlanError(ValueError)      a planning input is wrong, or the model cannot be served as asked
    │   ├── BenchError(ValueError)     a bench run was asked for something it cannot do
    │   │   └── SloMissedError         a load level missed a --slo target
    │   └── TuneError(RuntimeError)    tritonkit tune cannot tune as asked, or no candidate met the SLO
    └── HttpWireError                  bench's raw HTTP client: a reply that is not 200, or a lost connection;
                                       read like tritonclient's exceptions and never shown to the user as is

Not yet here: the OpenAI gateway's ``APIError`` and ``_ClientGoneError`` (``gateway/``), whose package
is still being written; they join this module when it settles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

__all__ = [
    "BenchError",
    "ClientError",
    "DriftError",
    "EngineBuildError",
    "HttpWireError",
    "PlanError",
    "Problem",
    "RepositoryError",
    "ServerError",
    "SloMissedError",
    "SpecError",
    "TritonkitError",
    "TuneError",
    "WriteConflictError",
    "WriteError",
]

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Problem:
    """One thing wrong, located in a file, in the compiler shape: where, what, what to do.

    ``severity`` is ``"error"``, ``"warning"`` or ``"note"`` (a fact worth knowing that is not a likely
    mistake, such as an optional template parameter left unset). ``model`` names the Triton model the problem
    belongs to, where there is one; ``field`` is the path of the ``ModelConfig`` field it is about
    (``("dynamic_batching", "preferred_batch_size", 0)``), which ``generate`` maps to the spec key.
    """

    message: str
    path: Optional[str] = None
    line: Optional[int] = None
    col: Optional[int] = None
    hint: Optional[str] = None
    model: Optional[str] = None
    severity: str = "error"
    field: tuple[Union[str, int], ...] = ()

    def where(self) -> str:
        """Return ``path:line:col`` with the parts that are known; empty when the problem has no file.

        A line without a path (never made by tritonkit itself) reads ``line:col``.
        """
        parts = [self.path] if self.path else []
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def format(self) -> str:
        """Return the one-line form ``FILE:LINE:COL: message; hint``, or ``message; hint`` with no file.

        A failure that no file is involved in (a port in use, a server that is down, a flag out of range)
        is printed without a location, so it never reads as if a spec were at fault.
        """
        where = self.where()
        text = f"{where}: " if where else ""
        if self.severity in ("warning", "note"):
            text += f"{self.severity}: "
        text += self.message
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
            "field": self.field_text() or None,
        }

    def field_text(self) -> str:
        """Return ``field`` as written in config.pbtxt terms: ``input[1].dims``, ``parameters["k"]``."""
        text = ""
        for part in self.field:
            if isinstance(part, int):
                text += f"[{part}]"
            elif text and not part.isidentifier():
                text += f'["{part}"]'
            else:
                text += f".{part}" if text else part
        return text


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


class WriteError(TritonkitError):
    """``generate`` could not write its files (a full disk, a read-only folder); the message says what it left."""


class DriftError(TritonkitError):
    """``generate --check`` found the repository out of date with its spec."""

    exit_code = 3


class ServerError(TritonkitError, RuntimeError):
    """The local tritonserver could not be found, started, or made ready."""


class ClientError(TritonkitError, RuntimeError):
    """A request to a Triton server failed in a way the caller can fix."""


class EngineBuildError(TritonkitError, RuntimeError):
    """An engine cannot be built here: no TensorRT, no GPU, no version folder, or TensorRT refused."""


class PlanError(TritonkitError, ValueError):
    """A planning input is wrong, or the model cannot be served as asked."""


class BenchError(TritonkitError, ValueError):
    """A bench run was asked for something it cannot do (bad flag value, unknown model, bad file)."""


class SloMissedError(BenchError):
    """At least one load level missed a target of ``--slo``; exits 1 so a CI gate fails."""


class TuneError(TritonkitError, RuntimeError):
    """``tune`` cannot run as asked (bad space, a server without model control), or no candidate met the SLO."""


class HttpWireError(Exception):
    """A reply that is not 200 (``status`` is its code) or a broken connection (``status`` 'connection')."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.kind = status

    def status(self) -> str:
        """The status, read the way tritonclient's exceptions are read."""
        return self.kind
