"""The container-side scripts that see a dead model process: the health probe, and the watchdog around tritonserver.

A Python backend stub that died (killed, out of memory, a crash in the model's code) stays a zombie child of
tritonserver: the backend (24.07 and later) neither restarts nor reaps it, and Triton keeps answering 200 on
/v2/health/* and /v2/models/<m>/ready while every request to that model fails. In the container's own PID
namespace, a zombie named triton_python_b (the kernel's 15 characters of triton_python_backend_stub) is that
sign; the stubs of unloaded models are reaped.

- ``STUB_PROBE`` (compose healthcheck, Kubernetes readiness and liveness probes) fails while a dead stub
  exists, naming it: the container is reported unhealthy, the pod leaves the Service.
- ``watchdog_command`` runs tritonserver under a small Python parent that looks for a dead stub of its
  server every 0.1 s and kills the server on one: clients in flight get their error at once (the server's
  connections close), and the container exits, so that Docker's restart policy or the kubelet starts it
  again. A probe alone is too slow for that (Docker checks every few seconds, and restarts a container
  whose main process exits, never one that is only unhealthy).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["STUB_PROBE", "WATCHDOG", "stub_probe", "watchdog_command"]

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
_EXIT = """sys.exit('dead Python backend stub, pid ' + ', '.join(dead) if dead else 0)
"""

#: Triton's health endpoint ({path} on {port}), then no dead Python backend stub; fails naming the dead stubs.
STUB_PROBE = _SCAN + _EXIT

#: Runs its arguments (tritonserver and its flags, or a launcher of it) as a child, passes SIGTERM and SIGINT on
#: to it and exits with its exit status; SIGKILLs it when a stub in its process tree is a zombie on two looks
#: 0.1 s apart (a stub that exits on an unload is a zombie only until its server reaps it, at once). Exiting
#: ends the rest of the tree: the container's processes go with its main one. No '$': compose would expand it.
WATCHDOG = """import glob, signal, subprocess, sys, time
server = subprocess.Popen(sys.argv[1:])
for number in (signal.SIGTERM, signal.SIGINT):
    signal.signal(number, lambda number, frame: server.send_signal(number))
def dead_stubs():
    processes = {}
    for path in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError:
            continue
        fields = text[text.rfind(')') + 2:].split()
        processes[int(path.split('/')[2])] = (text[text.find('(') + 1:text.rfind(')')], fields[0], int(fields[1]))
    tree, size = {server.pid}, 0
    while len(tree) > size:
        size = len(tree)
        tree.update(pid for pid, (_, _, parent) in processes.items() if parent in tree)
    return {pid for pid, (name, state, parent) in processes.items()
            if name == 'triton_python_b' and state == 'Z' and parent in tree}
suspects = set()
while server.poll() is None:
    time.sleep(0.1)
    zombies = dead_stubs()
    if zombies & suspects and server.poll() is None:
        print('tritonkit watchdog: Python backend stub', ', '.join(map(str, sorted(zombies & suspects))), 'died;',
              'SIGKILL to', sys.argv[1], '(pid', str(server.pid) + '), so that the container is restarted',
              file=sys.stderr, flush=True)
        server.kill()
        server.wait()
    suspects = zombies
code = server.returncode
sys.exit(128 - code if code < 0 else code)
"""


def stub_probe(port: int, path: str) -> str:
    """``STUB_PROBE`` for ``port`` and ``path``."""
    return STUB_PROBE.format(port=port, path=path)


def watchdog_command(server_command: Sequence[str]) -> list[str]:
    """``server_command`` (tritonserver and its flags) run under ``WATCHDOG``, as a container's command."""
    return ["python3", "-c", WATCHDOG, *server_command]
