"""The health probe that sees a dead model process: one script for the compose healthcheck and the k8s probes.

A Python backend stub that died (killed, out of memory, a crash in the model's code) stays a zombie child of
tritonserver: the backend (24.07 and later) neither restarts nor reaps it, and Triton keeps answering 200 on
/v2/health/* and /v2/models/<m>/ready while every request to that model fails. In the container's own PID
namespace, a zombie named triton_python_b (the kernel's 15 characters of triton_python_backend_stub) is that
sign; the stubs of unloaded models are reaped.
"""

from __future__ import annotations

__all__ = ["STUB_PROBE", "stub_probe"]

# Field 1 of /proc/<pid>/stat is the pid, 2 the name in parentheses, 3 the state, 4 the parent's pid.
_SCAN = """import glob, sys, urllib.request
urllib.request.urlopen('http://localhost:{port}{path}', timeout=4)
def stat(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ''
dead = [s.split()[0] for s in map(stat, glob.glob('/proc/[0-9]*/stat')) if '(triton_python_b) Z' in s]
"""
# Docker restarts a container whose main process exits, never one that is only unhealthy: the stub's parent,
# tritonserver, is killed so that the container exits (it must not be PID 1, which ignores SIGKILL from inside).
# A stub that exits on an unload is a zombie only until the server reaps it, a moment later: only one still
# a zombie half a second on counts. A parent pid of 0 (outside the namespace) or 1 (the init) is never signalled.
_KILL_PARENT = """import os, time
if dead:
    time.sleep(0.5)
for pid in dead:
    fields = stat('/proc/' + pid + '/stat').split()
    if fields[1:3] == ['(triton_python_b)', 'Z'] and int(fields[3]) > 1:
        print('stub', pid, 'is dead: SIGKILL to its tritonserver, pid', fields[3], file=sys.stderr)
        try:
            os.kill(int(fields[3]), 9)
        except OSError:
            pass
"""
_EXIT = """sys.exit('dead Python backend stub, pid ' + ', '.join(dead) if dead else 0)
"""

#: Triton's health endpoint ({path} on {port}), then no dead Python backend stub; fails naming the dead stubs.
STUB_PROBE = _SCAN + _EXIT


def stub_probe(port: int, path: str, *, kill_server: bool = False) -> str:
    """``STUB_PROBE`` for ``port`` and ``path``; with ``kill_server``, a dead stub's tritonserver is killed first."""
    template = _SCAN + _KILL_PARENT + _EXIT if kill_server else STUB_PROBE
    return template.format(port=port, path=path)
