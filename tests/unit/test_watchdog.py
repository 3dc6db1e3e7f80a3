"""The watchdog the generated compose and Kubernetes commands run tritonserver under, run for real.

The server here is a small Python process whose child is named as a Python backend stub is (the kernel's
``triton_python_b``): what the watchdog looks at is the process tree in ``/proc``, which these processes
make exactly as tritonserver does. The real thing, in a container, is tests/compose's stub-kill test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tritonkit.render.probes import WATCHDOG, watchdog_command

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the watchdog reads Linux's /proc")

#: A "server" with one "stub" (argv[1], a link named like the real stub): prints the stub's pid, then sleeps.
#: With argv[2] == "reap" it reaps the stub when it exits, as tritonserver does on an unload.
_SERVER = """import os, subprocess, sys, threading, time
stub = subprocess.Popen([sys.argv[1], '-c', 'import time; time.sleep(60)'])
print(stub.pid, flush=True)
if sys.argv[2] == 'reap':
    threading.Thread(target=stub.wait, daemon=True).start()
time.sleep(60)
"""
_Run = Callable[[bool], "tuple[subprocess.Popen[str], int]"]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[_Run]:
    """Start the watchdog over a stand-in server (``reap``: the server reaps its stub); stop whatever is left."""
    started: list[subprocess.Popen[str]] = []

    def start(reap: bool) -> tuple[subprocess.Popen[str], int]:
        stub = tmp_path / "triton_python_backend_stub"
        stub.symlink_to(sys.executable)
        command = watchdog_command([sys.executable, "-c", _SERVER, str(stub), "reap" if reap else "keep"])
        # Its own session: a failed test's leftovers go with one signal to the group.
        watchdog = subprocess.Popen([sys.executable, *command[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        started.append(watchdog)
        assert watchdog.stdout is not None
        stub_pid = int(watchdog.stdout.readline())
        deadline = time.monotonic() + 10
        while Path(f"/proc/{stub_pid}/stat").read_text().split(") ")[0].rsplit("(", 1)[1] != "triton_python_b":
            assert time.monotonic() < deadline, "the stand-in stub never got its name"
            time.sleep(0.01)
        return watchdog, stub_pid

    yield start
    for watchdog in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(watchdog.pid, signal.SIGKILL)
        watchdog.communicate()


def test_a_dead_stub_gets_its_server_killed_within_a_fraction_of_a_second(run: _Run) -> None:
    watchdog, stub = run(False)
    os.kill(stub, signal.SIGKILL)
    killed = time.monotonic()
    _, said = watchdog.communicate(timeout=10)
    took = time.monotonic() - killed
    assert watchdog.returncode == 128 + signal.SIGKILL, said
    assert took < 0.6, f"the server was killed {took:.2f} s after its stub died"
    assert f"tritonkit watchdog: Python backend stub {stub} died; SIGKILL to {sys.executable}" in said, said


def test_a_stub_its_server_reaps_is_no_death_and_signals_reach_the_server(run: _Run) -> None:
    watchdog, stub = run(True)
    os.kill(stub, signal.SIGKILL)  # an unload: the server reaps its stub at once
    time.sleep(0.5)
    assert watchdog.poll() is None, "the watchdog killed a server whose stub exited normally"
    watchdog.send_signal(signal.SIGTERM)  # docker stop: passed on, and the server's own status comes back
    _, said = watchdog.communicate(timeout=10)
    assert watchdog.returncode == 128 + signal.SIGTERM, said
    assert "watchdog" not in said


def test_the_script_is_what_the_command_runs() -> None:
    assert watchdog_command(["tritonserver", "--model-repository=/models"]) == [
        "python3", "-c", WATCHDOG, "tritonserver", "--model-repository=/models"]
    assert "$" not in WATCHDOG  # compose would expand it
