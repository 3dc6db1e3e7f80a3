"""Watch the Python backend's stub processes of a local tritonserver (Linux ``/proc``), notice one that died.

The Python backend runs each model instance in a child of tritonserver, ``triton_python_backend_stub``,
with the instance's shared-memory region named on its command line (argv: stub, model path, region,
sizes, parent pid, library dir, IPC handle, instance name, ...). The backend of Triton 24.07 and later
never restarts a stub that died and never reaps it: the dead stub stays a zombie child of the server
while the model keeps reporting READY and every request to it fails. A zombie stub is therefore the
sign of a dead model instance; a stub that exits on an unload is reaped at once by the server.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["SHM_DIR", "STUB_COMM", "Stub", "StubWatch", "remove_regions", "stub_children"]

#: The kernel's name of a stub process: ``triton_python_backend_stub`` cut to 15 characters.
STUB_COMM = "triton_python_b"
SHM_DIR = Path("/dev/shm")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Stub:
    """One stub process: its pid, model, instance (e.g. ``sleeper_0_0``) and shared-memory region."""

    pid: int
    model: str
    instance: str
    region: str


def _stat(pid_dir: Path) -> Optional[tuple[str, str, int]]:
    """(comm, state, parent pid) of a process, or None when it is gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    comm = text[text.find("(") + 1:text.rfind(")")]
    fields = text[text.rfind(")") + 2:].split()
    return comm, fields[0], int(fields[1])


def stub_children(server_pid: int) -> dict[int, str]:
    """The stub processes whose parent is ``server_pid``: pid -> state letter (``Z`` for a dead one)."""
    found = {}
    for pid_dir in _PROC.glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is not None and stat[0] == STUB_COMM and stat[2] == server_pid:
            found[int(pid_dir.name)] = stat[1]
    return found


def _read_stub(pid: int) -> Optional[Stub]:
    """What a living stub's command line says; None for a zombie (its command line is empty) or a stranger."""
    try:
        argv = [a.decode(errors="replace") for a in (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")]
    except OSError:
        return None
    if len(argv) < 9 or not argv[0].endswith("triton_python_backend_stub"):
        return None
    parts = Path(argv[1]).parts  # <repository>/<model>/<version>/model.py
    model = parts[-3] if len(parts) >= 3 else argv[8]
    return Stub(pid=pid, model=model, instance=argv[8], region=argv[2])


class StubWatch:
    """Remembers the stubs of one server as they start, and reports each one once when it dies.

    A stub counts as dead when it is seen as a zombie on two polls in a row: a stub that exits on an
    unload is a zombie only until the server reaps it, a moment later.
    """

    def __init__(self) -> None:
        self.known: dict[int, Stub] = {}
        self._suspects: set[int] = set()
        self._reported: set[int] = set()
        self._regions: set[str] = set()

    def poll(self, server_pid: int) -> list[Stub]:
        """Look once; return the stubs newly found dead (each reported once)."""
        children = stub_children(server_pid)
        for pid, state in children.items():
            if pid not in self.known and state != "Z":
                stub = _read_stub(pid)
                if stub is not None:
                    self.known[pid] = stub
                    self._regions.add(stub.region)
        zombies = {pid for pid, state in children.items() if state == "Z"}
        dead = [pid for pid in sorted(zombies & self._suspects) if pid not in self._reported]
        self._suspects = zombies
        self._reported.update(dead)
        for pid in [p for p in self.known if p not in children]:  # reaped: an unload, or the server's restart
            self.known.pop(pid, None)
        return [self.known.get(pid) or Stub(pid=pid, model="?", instance="?", region="") for pid in dead]

    def regions(self) -> list[str]:
        """The shared-memory regions of every stub seen since the last ``forget`` (living, dead or reaped)."""
        return sorted(r for r in self._regions if r)

    def forget(self) -> list[str]:
        """Forget every stub (their server is gone or going); return their regions."""
        regions = self.regions()
        self.known.clear()
        self._suspects.clear()
        self._reported.clear()
        self._regions.clear()
        return regions


def remove_regions(names: list[str]) -> list[str]:
    """Remove the named shared-memory regions under /dev/shm that still exist; return those removed.

    Only for regions of a server that is gone (or of a stub that died and whose instance is gone with
    the server): a living server's regions are its own to remove.
    """
    removed = []
    for name in names:
        if not name or "/" in name:
            continue
        with contextlib.suppress(FileNotFoundError):
            (SHM_DIR / name).unlink()
            removed.append(name)
    return removed
