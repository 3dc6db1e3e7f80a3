"""Every run of a tune, in order, kept in a resume file so an interrupted tune goes on where it stopped.

The search is deterministic given its measurements, so resuming is replaying: the n-th time the search
asks for a candidate's run, the ledger answers with the n-th run of that candidate it holds, and only
runs it has not got are made. The file records what the runs were made for (spec, model, target,
space, load settings); a file made for anything else is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tritonkit.errors import Problem, TuneError

__all__ = ["Ledger", "Run"]

_VERSION = 1


@dataclass(frozen=True)
class Run:
    """One outcome for one candidate.

    ``measured`` (figures), ``load_failed`` (the server's message), ``invalid`` (validate's problems) or
    ``pruned`` (the capacity rule's reason). Only the first two cost a run.
    """

    key: str
    values: dict[str, str]
    status: str
    figures: dict[str, Optional[float]] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0

    @property
    def costs_a_run(self) -> bool:
        """True when the server was asked to load the candidate."""
        return self.status in ("measured", "load_failed")


class Ledger:
    """The runs so far, saved to ``path`` after each one (atomically: a kill leaves the last good file)."""

    def __init__(self, path: Optional[Path], identity: dict[str, Any]) -> None:
        self.path, self.identity = path, identity
        self.runs: list[Run] = []
        self.original_config: Optional[str] = None
        self._stored: dict[str, list[Run]] = {}
        self.replayed = 0

    @classmethod
    def open(cls, path: Optional[Path], identity: dict[str, Any], fresh: bool) -> Ledger:
        """The ledger of ``path``: its runs when the file was made for ``identity``, none when ``fresh``.

        Raises:
            TuneError: the file exists, was made for another spec, model, target or space, and ``fresh``
                is off; or it is not a resume file.

        """
        ledger = cls(path, identity)
        if path is None or fresh or not path.exists():
            return ledger
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            stored = [Run(**run) for run in data["runs"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TuneError(Problem(f"is not a tune resume file ({exc})", path=str(path),
                                    hint="pass --fresh to start over, or another --resume-file")) from None
        if data.get("identity") != identity:
            changed = sorted(k for k in {**identity, **data.get("identity", {})}
                             if identity.get(k) != data.get("identity", {}).get(k))
            raise TuneError(Problem(f"holds runs of another tune (it differs in: {', '.join(changed)})", path=str(path),
                                    hint="pass --fresh to start over, or give this tune its own --resume-file"))
        ledger.original_config = data.get("original_config")
        for run in stored:
            ledger._stored.setdefault(run.key, []).append(run)
        return ledger

    def outcome(self, key: str, nth: int, make: Callable[[], Run]) -> Run:
        """The ``nth`` run (0-based) of candidate ``key``: replayed from the file, else made and saved."""
        stored = self._stored.get(key, [])
        if nth < len(stored):
            run = stored[nth]
            self.replayed += 1
        else:
            run = make()
        self.runs.append(run)
        self.save()
        return run

    @property
    def run_count(self) -> int:
        """Runs that loaded a candidate into the server, replayed ones included."""
        return sum(run.costs_a_run for run in self.runs)

    def save(self) -> None:
        """Write the resume file (temporary file, then rename)."""
        if self.path is None:
            return
        # Runs read from the file that this pass has not reached yet stay in it.
        pending = [run for key, runs in self._stored.items() for run in runs[len([r for r in self.runs
                                                                                  if r.key == key]):]]
        data = {"version": _VERSION, "identity": self.identity, "original_config": self.original_config,
                "runs": [asdict(run) for run in [*self.runs, *pending]]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)
