"""Collect a tritonserver's output and turn its model-load failures into located problems."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import deque
from pathlib import Path
from typing import IO, Callable, Optional

from tritonkit.errors import Problem

__all__ = ["LogPump", "last_error_line", "load_failures"]

# E1122 00:37:25.267916 6996 model_lifecycle.cc:642] "failed to load 'broken' version 1: Internal: ..."
_FAILED_LOAD = re.compile(r"""failed to load '(?P<model>[^']+)'(?: version \d+)?: (?P<message>.*)""")
# E1122 ... model_repository_manager.cc:1460] "Poll failed for model directory 'badcfg': ..."
_POLL_FAILED = re.compile(r"""Poll failed for model directory '(?P<model>[^']+)': (?P<message>.*)""")
# [libprotobuf ERROR ...] Error parsing text-format inference.ModelConfig: 4:28: Message type ...
_PROTO_ERROR = re.compile(r"Error parsing text-format inference\.ModelConfig: (?P<line>\d+):(?P<col>\d+): (?P<msg>.*)")
#: What ends a piece of output: a line end, or a lone carriage return (a progress bar redrawing itself).
_PIECE_END = re.compile(rb"(\r\n|\n|\r)")
_QUOTED = re.compile(r'\] (?P<text>".*")\s*$')


class LogPump:
    r"""Read a server's combined output on a thread, keep the last lines, optionally echo them.

    ``watch`` sees every piece as it comes: each line, and each carriage-return piece of a progress bar
    (a bar redraws itself with ``\r`` and ends its line only when done); only whole lines are kept.
    """

    def __init__(self, stream: IO[bytes], echo: Optional[Callable[[str], None]] = None,
                 max_lines: int = 20000, watch: Optional[Callable[[str], None]] = None) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._lock = threading.Lock()
        self._echo = echo
        self._watch = watch
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="tritonserver-log", daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        pending = b""
        read = getattr(stream, "read1", stream.read)
        while True:
            chunk = read(65536)
            if not chunk:
                break
            pieces = _PIECE_END.split(pending + chunk)
            pending = pieces.pop()
            for raw, end in zip(pieces[::2], pieces[1::2]):
                self._take(raw.decode("utf-8", errors="replace"), whole=end != b"\r")
        if pending:
            self._take(pending.decode("utf-8", errors="replace"), whole=True)
        stream.close()

    def _take(self, text: str, whole: bool) -> None:
        if self._watch is not None:
            self._watch(text)
        if not whole:
            return
        with self._lock:
            self._lines.append(text)
        if self._echo is not None:
            self._echo(text)

    def set_echo(self, echo: Optional[Callable[[str], None]]) -> None:
        """Start or stop echoing new lines."""
        self._echo = echo

    def lines(self) -> list[str]:
        """A copy of the lines kept so far."""
        with self._lock:
            return list(self._lines)

    def join(self, timeout_s: float) -> None:
        """Wait for the output to end (the server and its children closed it)."""
        self._thread.join(timeout_s)

    def contains(self, text: str) -> bool:
        """True when any kept line contains ``text``."""
        return any(text in line for line in self.lines())


def _unquote(line: str) -> str:
    """Triton 2.5x writes each message as a JSON string after ``]``; decode it, keep its first line."""
    match = _QUOTED.search(line)
    if match:
        with contextlib.suppress(json.JSONDecodeError):
            line = str(json.loads(match.group("text")))
    return line.strip().splitlines()[0] if line.strip() else line


def load_failures(lines: list[str], repo: Path) -> list[Problem]:
    """Turn the server's own error lines into one problem per failed model, located at its folder."""
    problems: dict[str, Problem] = {}
    proto_error: Optional[re.Match[str]] = None
    for line in lines:
        match = _PROTO_ERROR.search(line)
        if match:
            proto_error = match
            continue
        text = _unquote(line)
        found = _FAILED_LOAD.search(text) or _POLL_FAILED.search(text)
        if not found or found.group("model") in problems:
            continue
        name, message = found.group("model"), found.group("message").strip()
        if _POLL_FAILED.search(text) and proto_error is not None:
            problems[name] = Problem(proto_error.group("msg"), path=str(repo / name / "config.pbtxt"),
                                     line=int(proto_error.group("line")), col=int(proto_error.group("col")),
                                     model=name, hint=f"tritonserver: {message}")
            proto_error = None
            continue
        problems[name] = Problem(f"tritonserver failed to load model '{name}': {message}",
                                 path=str(repo / name), model=name)
    return list(problems.values())


def last_error_line(lines: list[str]) -> Optional[str]:
    """The server's last ``error:`` or ``E...`` line, for failures that name no model."""
    for line in reversed(lines):
        if line.startswith("error:") or (line[:1] == "E" and line[1:5].isdigit() and "Cuda" not in line):
            return _unquote(line)
    return None
