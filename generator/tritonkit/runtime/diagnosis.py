"""Why a local tritonserver did not come up, as problems a user can act on.

From its output, its load progress and its repository index.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from tritonkit.errors import Problem
from tritonkit.runtime.logs import last_error_line, load_failures
from tritonkit.runtime.progress import LoadProgress

__all__ = ["exit_problems", "hung_problem", "not_ready_problems", "repository_index"]


def exit_problems(lines: list[str], repo: Path, summary: str, ports: tuple[int, int, int]) -> list[Problem]:
    """Each model that failed to load, with the server's own error line; else the server's last error line.

    ``summary`` (e.g. "tritonserver exited with code 1") leads that last line; ``ports`` are the server's
    HTTP, gRPC and metrics ports, for the hint when another process holds one.
    """
    problems = load_failures(lines, repo)
    if problems:
        return problems
    detail = last_error_line(lines) or "no error line in its output"
    hint = _port_hint(detail, *ports) if "already in use" in detail else None
    return [Problem(f"{summary}: {detail}" if summary else detail, path=str(repo), hint=hint)]


def hung_problem(progress: LoadProgress, timeout_s: float, repo: Path) -> Problem:
    """The models still loading when the server went quiet for ``timeout_s``, each with the step it was in."""
    loading = progress.unfinished()
    steps = "; ".join(f"'{m}' at: {step}" if step else f"'{m}'" for m, step in sorted(loading.items()))
    what = f", still loading {steps}" if steps else ""
    return Problem(f"tritonserver showed no sign of progress for {timeout_s:g} s "
                   f"({progress.elapsed_s():.0f} s after start){what}", path=str(repo),
                   hint="a load that is slow but silent needs a larger --ready-timeout (seconds without "
                        "any output); rerun with --server-log to see the server's own output")


def repository_index(http_base: str, headers: dict[str, str]) -> Optional[list[dict[str, Any]]]:
    """The server's repository index (every model, its state and reason); None when it does not answer.

    ``http_base`` is ``http://host:port``; ``headers`` opens the model-repository API where it is restricted.
    """
    request = urllib.request.Request(f"{http_base}/v2/repository/index", data=b"{}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            index: list[dict[str, Any]] = json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return index


def not_ready_problems(index: Optional[list[dict[str, Any]]], repo: Path) -> list[Problem]:
    """The models of a repository index that are not READY, each with the server's reason."""
    return [Problem(f"model '{m['name']}' is {m.get('state', 'not ready')}: {m.get('reason') or 'loading'}",
                    path=str(repo / m["name"]), model=m["name"])
            for m in index or [] if m.get("state") != "READY"]


def _port_hint(detail: str, http: int, grpc: int, metrics: int) -> str:
    """Which flag moves the port another process holds (Triton names the service in its error line)."""
    lowered = detail.lower()
    flags = [(flag, port) for word, flag, port in (("grpc", "--grpc-port", grpc), ("metric", "--metrics-port", metrics),
                                                  ("http", "--http-port", http)) if word in lowered][:1]
    named = flags or [("--http-port", http), ("--grpc-port", grpc), ("--metrics-port", metrics)]
    which = " or ".join(f"{flag} (now {port})" for flag, port in named)
    return f"another process holds the port; pass a free one with {which}, or 0 to pick a free one"
