"""Start a server in its own process group, stop the whole group, and leave no orphans behind."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Callable, Optional

__all__ = ["GroupProcess", "free_ports"]

_PR_SET_PDEATHSIG = 1
_live: weakref.WeakSet[GroupProcess] = weakref.WeakSet()


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that were free a moment ago (the kernel's choice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the parent dies, so a killed caller leaves no server."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _pre_exec(tie_to_parent: bool) -> Optional[Callable[[], None]]:
    # PDEATHSIG fires when the *thread* that forked exits, so tie only to the main thread.
    return _die_with_parent if tie_to_parent and os.name == "posix" else None


class GroupProcess:
    """A child process leading its own process group (a new session), with its output on one pipe."""

    def __init__(self, command: Sequence[str], env: dict[str, str]) -> None:
        tie = threading.current_thread() is threading.main_thread()
        self.popen: subprocess.Popen[bytes] = subprocess.Popen(
            list(command), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_pre_exec(tie))
        self.pgid = self.popen.pid
        _live.add(self)

    @property
    def pid(self) -> int:
        """The leader's process id."""
        return self.popen.pid

    def poll(self) -> Optional[int]:
        """The leader's exit code, or None while it runs."""
        code = self.popen.poll()
        return None if code is None else int(code)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the leader only (tritonserver stops its own stubs)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    def stop(self, grace_s: float) -> int:
        """SIGTERM the leader, wait ``grace_s``, then SIGKILL the whole group; return the exit code."""
        self.signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill_group()
            code = self.popen.wait()
        self._wait_group(timeout_s=5.0)  # stubs still unlinking their shared memory get a moment
        self.kill_group()  # whatever is left of the group (stubs of a crashed server) goes too
        _live.discard(self)
        return int(code)

    def _wait_group(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.killpg(self.pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)

    def kill_group(self) -> None:
        """SIGKILL every process still in the group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)


@atexit.register
def _stop_all() -> None:
    """At interpreter exit, stop servers nobody stopped (a test interrupted, a script that forgot)."""
    for process in list(_live):
        process.stop(grace_s=10.0)
