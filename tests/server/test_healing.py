"""A model's Python backend process killed mid-request: the client fails fast, the model comes back by itself.

Triton's Python backend (24.07 and later) neither restarts a dead stub nor fails the streams it was
serving, and the model stays READY; ``Server`` notices the zombie stub, restarts the server on the same
ports and removes the dead stub's shared memory. Real server, real ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from tritonkit.errors import ClientError
from tritonkit.render.k8s import STUB_PROBE
from tritonkit.runtime import Server
from tritonkit.runtime.stubs import SHM_DIR, stub_children

pytestmark = pytest.mark.triton

STREAM = {"COUNT": np.array([400], np.int32), "DELAY_S": np.array([0.05], np.float32)}  # 20 s of words
SLEEP = {"SECONDS": np.array([20.0], np.float32)}


def _stub_of(server: Server, model: str) -> tuple[int, str]:
    """(pid, shared-memory region) of ``model``'s one living stub, read from its command line."""
    assert server.pid is not None
    for pid, state in stub_children(server.pid).items():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        if state != "Z" and Path(argv[1]).parts[-3] == model:
            return pid, argv[2]
    raise AssertionError(f"no stub for {model}")


class _InFlight(threading.Thread):
    """One request to ``model`` in a thread: when its first answer came, and when and how it failed."""

    def __init__(self, server: Server, model: str) -> None:
        super().__init__(daemon=True)
        self.server, self.model = server, model
        self.started = threading.Event()
        self.failed_at: Optional[float] = None
        self.error: Optional[BaseException] = None
        self.words = 0

    def run(self) -> None:
        client = self.server.client("grpc")
        client.timeout_s = 60.0
        try:
            if self.model == "streamer":
                for _ in client.stream("streamer", STREAM):
                    self.words += 1
                    self.started.set()
            else:
                self.started.set()
                client.infer("sleeper", SLEEP)
        except ClientError as exc:
            self.failed_at, self.error = time.monotonic(), exc
        finally:
            client.close()


def _answers(server: Server, model: str) -> bool:
    try:
        with server.client("grpc") as client:
            if model == "streamer":
                return len(list(client.stream("streamer", {"COUNT": np.array([2], np.int32)}))) == 2
            return client.infer("sleeper", {"SECONDS": np.array([0.0], np.float32)})["SLEPT"].tolist() == [0.0]
    except ClientError:
        return False


@pytest.mark.parametrize("model", ["streamer", "sleeper"])
def test_a_killed_stub_fails_the_request_in_flight_and_the_model_answers_again(
        model: str, make_repo: Callable[..., Path], triton_server: Callable[..., Server]) -> None:
    said: list[str] = []
    server = triton_server(make_repo("basic", models=["streamer", "sleeper"]), notify=said.append)
    first_pid, ports = server.pid, (server.http_port, server.grpc_port)
    stub, region = _stub_of(server, model)
    assert (SHM_DIR / region).exists()
    request = _InFlight(server, model)
    request.start()
    assert request.started.wait(10)
    time.sleep(0.5)  # well into its work

    os.kill(stub, signal.SIGKILL)
    killed = time.monotonic()
    request.join(30)
    assert request.failed_at is not None, "the request in flight never failed"
    error_s = request.failed_at - killed
    deadline = killed + 30
    while not _answers(server, model):
        assert time.monotonic() < deadline, f"{model} did not answer again within 30 s; said: {said}"
        time.sleep(0.2)
    answer_s = time.monotonic() - killed
    print(f"\n{model}: in-flight error after {error_s:.2f} s, answers again after {answer_s:.2f} s")

    assert error_s < 1.5, f"the request in flight failed only {error_s:.2f} s after the kill: {request.error}"
    assert server.pid != first_pid and (server.http_port, server.grpc_port) == ports
    assert not (SHM_DIR / region).exists(), "the dead stub's shared memory was left behind"
    assert any(f"model '{model}': its backend process died" in line for line in said), said
    deadline = time.monotonic() + 5  # the server answers a moment before the watcher says so
    while not any(f"'{model}' ready again" in line for line in said):
        assert time.monotonic() < deadline, said
        time.sleep(0.05)
    assert len(server.heals) == 1 and server.heals[0][1] is not None
    # The restarted server stops cleanly: nothing of the dead stub keeps it waiting.
    assert server.stop() == 0


def _probe(server: Server) -> subprocess.CompletedProcess[str]:
    """The generated Kubernetes liveness probe's script, run against this server."""
    script = STUB_PROBE.format(port=8000, path="/v2/health/live").replace(":8000", f":{server.http_port}")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False)


def test_with_healing_off_the_death_is_reported_and_the_probe_fails(
        make_repo: Callable[..., Path], triton_server: Callable[..., Server]) -> None:
    said: list[str] = []
    server = triton_server(make_repo("basic", models=["sleeper"]), notify=said.append, heal=False)
    pid = server.pid
    stub, _ = _stub_of(server, "sleeper")
    before = _probe(server)
    # This machine's other servers are visible here (a pod sees only its own): ours must not be named.
    assert before.returncode == 0 or str(stub) not in before.stderr, before.stderr
    os.kill(stub, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not any("died" in line for line in said):
        assert time.monotonic() < deadline, said
        time.sleep(0.1)
    assert "model 'sleeper': its backend process died" in said[0]
    assert "healing is off" in said[-1]
    assert server.pid == pid and server.heals == []
    # What Triton itself says: ready, yet every request fails.
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/sleeper/ready", timeout=5) as reply:
        assert reply.status == 200
    with pytest.raises(ClientError, match="is not healthy"), server.client("grpc") as client:
        client.infer("sleeper", {"SECONDS": np.array([0.0], np.float32)})
    after = _probe(server)
    assert after.returncode != 0 and "dead Python backend stub, pid" in after.stderr and str(stub) in after.stderr


def _post(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=b"{}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("mode", ["explicit", "poll"])
def test_model_control_needs_the_admin_key(mode: str, make_repo: Callable[..., Path],
                                           triton_server: Callable[..., Server]) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server = triton_server(make_repo("basic", models=["sleeper", "add_sub"]), model_control_mode=mode,
                           load_models=["sleeper"] if mode == "explicit" else [], admin_key="k-" + mode)
    base = f"http://{server.http_url}/v2/repository"
    for headers in ({}, {"triton-admin-key": "wrong"}):
        assert _post(f"{base}/models/add_sub/load", headers) == 403
        assert _post(f"{base}/models/sleeper/unload", headers) == 403
        assert _post(f"{base}/index", headers) == 403
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with pytest.raises(InferenceServerException, match=r"(?i)unauthenticated|permission|restricted"):
            grpc.unload_model("sleeper")
        with pytest.raises(InferenceServerException, match=r"(?i)unauthenticated|permission|restricted"):
            grpc.get_model_repository_index()
        if mode == "explicit":
            assert _post(f"{base}/models/add_sub/load", {"triton-admin-key": "k-explicit"}) == 200
            grpc.unload_model("sleeper", headers=server.admin_headers("grpc"))
            with server.client("http") as client:  # the Server's own client sends the key
                assert client.models() == ["add_sub"]
        else:
            # Poll mode refuses load/unload for everyone; the key opens the index.
            assert [m["name"] for m in grpc.get_model_repository_index(
                headers=server.admin_headers("grpc"), as_json=True)["models"]] == ["add_sub", "sleeper"]
    finally:
        grpc.close()


def test_without_model_control_the_index_stays_open(make_repo: Callable[..., Path],
                                                    triton_server: Callable[..., Server]) -> None:
    server = triton_server(make_repo("basic", models=["sleeper"]))
    assert not server.restricted and server.admin_headers("grpc") == {}
    assert _post(f"http://{server.http_url}/v2/repository/index", {}) == 200
    assert not any("restricted" in word for word in server.command)
