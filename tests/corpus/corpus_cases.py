"""The validate corpus as data, and the two verdicts on each case: validate's and the real server's.

Shared by tests/unit/test_validate_corpus.py, tests/server/test_corpus_agreement.py and
benchmarks/validate_corpus.py (each loads this file by path: tests/ is not a package).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from tritonkit.errors import ServerError
from tritonkit.runtime import Server
from tritonkit.validate import Report, validate_repository

CORPUS = Path(__file__).parent
JUDGES = "judges"


@dataclass(frozen=True)
class Case:
    """One repository of the corpus and what is expected of it (see cases.yaml)."""

    group: str
    name: str
    meta: dict[str, Any] = field(hash=False, compare=False)

    @property
    def path(self) -> Path:
        return CORPUS / self.group / self.name

    @property
    def server_judges(self) -> bool:
        return self.meta.get("server", JUDGES) == JUDGES

    @property
    def gpus(self) -> Optional[int]:
        return self.meta.get("gpus")

    def __str__(self) -> str:
        return f"{self.group}/{self.name}"


def load_cases(groups: Iterable[str] = ("good", "warn", "bad")) -> list[Case]:
    """Return the cases of the given groups, in cases.yaml order."""
    table = yaml.safe_load((CORPUS / "cases.yaml").read_text())
    return [Case(group, name, meta or {}) for group in groups for name, meta in (table.get(group) or {}).items()]


def validate_case(case: Case) -> Report:
    return validate_repository(case.path, gpus=case.gpus)


def validate_agrees(case: Case, report: Report) -> bool:
    """True when validate's report is what the case expects."""
    errors = [p.message for p in report.errors]
    if case.group == "bad":
        return any(case.meta["message"] in m for m in errors)
    if case.group == "warn":
        return not errors and any(case.meta["warning"] in p.message for p in report.warnings)
    return not errors


@dataclass
class ServerVerdict:
    case: Case
    loaded: bool
    seconds: float
    detail: str

    @property
    def agrees(self) -> bool:
        return self.loaded == (self.case.group != "bad")


def server_verdict(case: Case, timeout_s: float = 60.0) -> ServerVerdict:
    """Start the real tritonserver on the case (free ports, --exit-on-error) and see if it gets ready."""
    start = time.monotonic()
    server = Server(case.path, startup_timeout_s=float(case.meta.get("server_timeout_s", timeout_s)),
                    exit_timeout_s=1.0)
    try:
        server.start()
    except ServerError as exc:
        if not server.command:  # refused by tritonkit before tritonserver ran: not the server's verdict
            raise
        lines = [ln for ln in server.log_lines() if ln.startswith("E") and "Cuda" not in ln]
        return ServerVerdict(case, False, time.monotonic() - start, (lines or [str(exc)])[0])
    finally:
        server.stop()
    return ServerVerdict(case, True, time.monotonic() - start, "ready")


def server_verdicts(cases: Iterable[Case], workers: int = 3) -> list[ServerVerdict]:
    """Judge every case the local server can judge, ``workers`` servers at a time."""
    judged = [c for c in cases if c.server_judges]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(server_verdict, judged))
