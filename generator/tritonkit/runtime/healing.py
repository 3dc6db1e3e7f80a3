"""Healing a local tritonserver whose Python backend process died: notice it, say so, have the server restart.

Triton's Python backend (24.07 and later) neither restarts a stub that died nor fails the streams it was
serving, and the model stays READY. A restart of the whole server fails every request in flight at once,
frees the dead stub's shared memory and loads the models again; it is given up on when stubs die so often
that the model itself is likely crashing.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Callable, Optional

from tritonkit.errors import ServerError
from tritonkit.runtime.stubs import Stub, StubWatch

__all__ = ["Healer"]

_WATCH_INTERVAL_S = 0.2
#: Healing gives up when stubs die this often: a model that crashes on every start is not healed by restarts.
_HEAL_LIMIT, _HEAL_WINDOW_S = 3, 120.0


class Healer:
    """Watches one server's stubs from a thread; on a death, says so and, when ``enabled``, restarts the server.

    Messages go to ``notify``. The server lends it ``stubs`` (the stubs it has seen, whose shared memory it
    removes when it stops), ``pid`` (its process id while it runs, else None), ``restart`` (kill the server and
    start it again; False when it is being stopped instead; raises ServerError when the new one does not come
    up) and ``stopping`` (set once the server is asked to stop).
    """

    def __init__(self, stubs: StubWatch, pid: Callable[[], Optional[int]], restart: Callable[[], bool],
                 stopping: threading.Event, *, enabled: bool, notify: Optional[Callable[[str], None]]) -> None:
        self.enabled = enabled
        #: Each restart after a dead stub: (the stubs that died, seconds until ready again, or None if it failed).
        self.heals: list[tuple[list[Stub], Optional[float]]] = []
        self._stubs, self._pid, self._restart, self._stopping = stubs, pid, restart, stopping
        self._notify = notify
        self._thread: Optional[threading.Thread] = None
        self._times: collections.deque[float] = collections.deque(maxlen=_HEAL_LIMIT)

    def start(self) -> None:
        """Learn the stubs of the models just loaded, before anything can kill one; start watching (once)."""
        pid = self._pid()
        if pid is not None:
            self._stubs.poll(pid)
        if self._thread is None and os.path.isdir("/proc"):
            self._thread = threading.Thread(target=self._watch, name="tritonkit-stub-watch", daemon=True)
            self._thread.start()

    def join(self) -> None:
        """Wait for the watcher to end (once ``stopping`` is set); nothing when called from the watcher itself."""
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _say(self, message: str) -> None:
        if self._notify is not None:
            self._notify(message)

    def _watch(self) -> None:
        while not self._stopping.wait(_WATCH_INTERVAL_S):
            pid = self._pid()
            if pid is None:
                continue
            dead = self._stubs.poll(pid)
            if dead:
                self._on_dead(dead)

    def _on_dead(self, dead: list[Stub]) -> None:
        for stub in dead:
            self._say(f"model '{stub.model}': its backend process died (instance {stub.instance}, pid {stub.pid}); "
                      "Triton still reports it ready, but it fails every request and the streams it was serving "
                      "never end")
        now = time.monotonic()
        if not self.enabled:
            self._say("not restarting: healing is off (restart the server to bring the model back)")
            return
        if len(self._times) == _HEAL_LIMIT and now - self._times[0] < _HEAL_WINDOW_S:
            self._say(f"not restarting: backend processes died {_HEAL_LIMIT + 1} times within "
                      f"{_HEAL_WINDOW_S:g} s; the model itself is likely crashing (see --server-log)")
            return
        self._times.append(now)
        self._heal(dead)

    def _heal(self, dead: list[Stub]) -> None:
        names = ", ".join(sorted({f"'{s.model}'" for s in dead}))
        self._say(f"restarting tritonserver to bring {names} back; requests in flight fail now")
        started = time.monotonic()
        try:
            if not self._restart():
                return
        except ServerError as exc:
            self.heals.append((dead, None))
            if not self._stopping.is_set():
                self._say(f"the restart failed: {exc}")
            return
        took = time.monotonic() - started
        self.heals.append((dead, took))
        self._say(f"{names} ready again ({took:.1f} s after the restart began)")
