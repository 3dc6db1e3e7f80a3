"""Server: start a real tritonserver from the wheel (or PATH), check readiness, failures and stops."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tritonkit.client import Client
from tritonkit.errors import ServerError
from tritonkit.runtime import Server
from tritonkit.runtime.locate import find_tritonserver
from tritonkit.runtime.progress import LoadEvent

pytestmark = pytest.mark.triton


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def _group_command_lines(pgid: int) -> list[str]:
    """Every argument of every process in process group ``pgid``, read from /proc."""
    words = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                words += (stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, IndexError, ValueError):
            continue
    return words


def test_serves_every_model_ready_with_metrics(basic_server: Server) -> None:
    for model in ("add_sub", "add_sub_twice", "streamer", "sleeper"):
        with urllib.request.urlopen(f"http://{basic_server.http_url}/v2/models/{model}/ready", timeout=10) as r:
            assert r.status == 200
    config = _get_json(f"http://{basic_server.http_url}/v2/models/add_sub/config")
    assert isinstance(config, dict)
    assert config["max_batch_size"] == 8
    assert [g["count"] for g in config["instance_group"]] == [2]
    with urllib.request.urlopen(basic_server.metrics_url, timeout=10) as reply:
        assert b"nv_inference_request_success" in reply.read()


def _broken_repo(make_repo) -> Path:
    repo = make_repo("basic", models=["sleeper"])
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [{name: "X" data_type: TYPE_FP32 dims: [1]}]\noutput [{name: "Y" data_type: TYPE_FP32 dims: [1]}]\n')
    (repo / "broken" / "1" / "model.py").write_text("import module_that_does_not_exist_here\n")
    (repo / "typo" / "1").mkdir(parents=True)
    (repo / "typo" / "config.pbtxt").write_text(
        'name: "typo"\nbackend: "python"\nmax_batch_size: 0\ninput [{name: "X" data_typo: TYPE_FP32 dims: [1]}]\n')
    (repo / "typo" / "1" / "model.py").write_text("")
    return repo


def test_failed_models_are_named_with_the_servers_error_and_folder(make_repo) -> None:
    repo = _broken_repo(make_repo)
    server = Server(repo, exit_timeout_s=5)
    with pytest.raises(ServerError) as caught:
        server.start()
    problems = {p.model: p for p in caught.value.problems}
    assert set(problems) == {"broken", "typo"}
    assert problems["broken"].path == str(repo.resolve() / "broken")
    assert "No module named 'module_that_does_not_exist_here'" in problems["broken"].message
    assert problems["typo"].path == str(repo.resolve() / "typo" / "config.pbtxt")
    assert (problems["typo"].line, problems["typo"].col) == (4, 28)
    assert "data_typo" in problems["typo"].message
    assert "log" not in str(caught.value).lower()
    assert not server.is_running()


def test_unsupported_backend_is_reported_before_start(make_repo) -> None:
    repo = make_repo("basic", models=["add_sub", "add_sub_twice"], onnx=True)
    server = Server(repo)
    started = time.monotonic()
    with pytest.raises(ServerError) as caught:
        server.start()
    assert time.monotonic() - started < 5
    assert server.pid is None and server.command == []
    [problem] = caught.value.problems
    assert problem.model == "onnx_model"
    assert "backend 'onnxruntime' is not in this tritonserver" in problem.message
    assert problem.hint is not None and "docker run" in problem.hint and "--skip-unsupported" in problem.hint


def test_skip_unsupported_serves_the_rest(make_repo, triton_server) -> None:
    repo = make_repo("basic", models=["add_sub"], onnx=True)
    server = triton_server(repo, skip_unsupported=True)
    assert set(server.skipped) == {"onnx_model"}
    client = server.client("http")
    assert client.models() == ["add_sub"]
    out = client.infer("add_sub", {"INPUT0": np.ones((1, 4), np.float32), "INPUT1": np.ones((1, 4), np.float32)})
    assert out["OUTPUT0"].tolist() == [[2.0] * 4]


def test_graceful_stop_lets_the_request_in_flight_finish(make_repo, triton_server) -> None:
    server = triton_server(make_repo("basic", models=["sleeper"]), exit_timeout_s=20)
    client = server.client("grpc")
    result: dict[str, object] = {}

    def call() -> None:
        try:
            result["out"] = client.infer("sleeper", {"SECONDS": np.array([2.0], np.float32)})
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.7)
    pid = server.pid
    assert pid is not None
    regions = [word for word in _group_command_lines(pid) if word.startswith("triton_python_backend_shm_region_")]
    assert regions
    assert server.stop() == 0
    thread.join(10)
    assert "error" not in result, result.get("error")
    assert result["out"]["SLEPT"].tolist() == [2.0]  # type: ignore[index]
    assert not _process_exists(pid)
    assert [r for r in regions if Path("/dev/shm", r).exists()] == []  # the stubs cleaned up, not killed


def test_explicit_mode_loads_only_the_named_models(make_repo, triton_server) -> None:
    repo = make_repo("basic", models=["add_sub", "sleeper"], onnx=True)
    server = triton_server(repo, model_control_mode="explicit", load_models=["sleeper"])
    assert server.skipped == {}
    with server.client("grpc") as client:
        assert client.models() == ["sleeper"]


def test_no_orphans_when_the_caller_is_killed(basic_repo: Path, tmp_path: Path) -> None:
    script = tmp_path / "starter.py"
    script.write_text(
        "import sys, time\nfrom tritonkit.runtime import Server\n"
        "server = Server(sys.argv[1]).start()\nprint(server.pid, flush=True)\ntime.sleep(600)\n")
    starter = subprocess.Popen([sys.executable, str(script), str(basic_repo)], stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        pid = int(starter.stdout.readline())
        assert _process_exists(pid)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        deadline = time.monotonic() + 40
        while _process_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _process_exists(pid)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()


def test_a_port_in_use_is_named(make_repo) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = Server(make_repo("basic", models=["sleeper"]), http_port=port)
        with pytest.raises(ServerError) as caught:
            server.start()
    assert f"failed to start HTTP service: Unavailable - Socket '127.0.0.1:{port}' already in use" in str(caught.value)
    hint = caught.value.first.hint
    assert hint is not None and f"--http-port (now {port})" in hint and "0 to pick a free one" in hint


_SLOW_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        steps, pause_s, hang_s = {steps}, {pause_s}, {hang_s}
        for step in range(steps):
            print(f"tritonkit: model 'slow': step {{step + 1}} of {{steps}}", flush=True)
            time.sleep(pause_s)
        print("tritonkit: model 'slow': converting the weights", flush=True)
        time.sleep(hang_s)

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[]) for _ in requests]
"""


def _slow_repo(root: Path, steps: int, pause_s: float, hang_s: float) -> Path:
    folder = root / "slow"
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text('name: "slow"\nbackend: "python"\nmax_batch_size: 0\n'
                                         'input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
                                         'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n')
    (folder / "1" / "model.py").write_text(_SLOW_MODEL.format(steps=steps, pause_s=pause_s, hang_s=hang_s))
    return root


def test_a_slow_load_that_reports_progress_is_waited_for(tmp_path: Path, triton_server) -> None:
    """Eight seconds of loading against a 4 s timeout: each step resets it, and each is shown as it comes."""
    events: list[LoadEvent] = []
    started = time.monotonic()
    server = triton_server(_slow_repo(tmp_path, steps=8, pause_s=1.0, hang_s=0), startup_timeout_s=4.0,
                           progress=events.append)
    assert time.monotonic() - started >= 8.0
    assert server.client("http").is_model_ready("slow")
    seen = [(e.model, e.state, e.detail) for e in events if e.model == "slow"]
    assert seen[0] == ("slow", "loading", "")
    assert [d for _, state, d in seen if state == "step"] == [f"step {i} of 8" for i in range(1, 9)] + [
        "converting the weights"]
    assert seen[-1][:2] == ("slow", "ready")


def test_a_load_that_goes_silent_ends_naming_its_step(tmp_path: Path) -> None:
    server = Server(_slow_repo(tmp_path, steps=1, pause_s=0.1, hang_s=120), startup_timeout_s=3.0,
                    exit_timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(ServerError) as caught:
        server.start()
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "no sign of progress for 3 s" in message
    assert "still loading 'slow' at: converting the weights" in message
    assert not server.is_running()


def _wheel_copy(dist: Path, site: Path) -> Path:
    """A copy of the wheel's server layout (binary hard-linked or copied, the rest linked) under ``site``."""
    copy = site / "pytriton" / "tritonserver"
    (copy / "bin").mkdir(parents=True)
    try:
        os.link(dist / "bin" / "tritonserver", copy / "bin" / "tritonserver")
    except OSError:
        shutil.copy2(dist / "bin" / "tritonserver", copy / "bin" / "tritonserver")
    (site / "nvidia_pytriton.libs").symlink_to(dist.parent.parent / "nvidia_pytriton.libs")
    for name in ("python_backend_stubs", "caches"):
        if (dist / name).exists():
            (copy / name).symlink_to(dist / name)
    (copy / "backends" / "python").mkdir(parents=True)
    for entry in (dist / "backends" / "python").iterdir():
        if entry.is_file():
            (copy / "backends" / "python" / entry.name).symlink_to(entry)
    return copy


def test_a_stub_already_in_the_backend_folder_is_handled(make_repo, tmp_path: Path) -> None:
    installation = find_tritonserver()
    if installation.dist_dir is None:
        pytest.skip("the stub folders are the nvidia-pytriton wheel's layout; this server is not from it")
    dist = _wheel_copy(installation.dist_dir, tmp_path / "site")
    # Installed by hand as Triton's docs say, but not a stub this Python can use: the wheel's own must win.
    stub = dist / "backends" / "python" / "triton_python_backend_stub"
    stub.write_text("#!/bin/sh\nexit 3\n")
    stub.chmod(0o755)
    repo = make_repo("basic", models=["add_sub"])
    process = subprocess.Popen([sys.executable, "-m", "tritonkit", "serve", str(repo), "--tritonserver",
                                str(dist / "bin" / "tritonserver"), "--http-port", "0", "--grpc-port", "0",
                                "--metrics-port", "0", "--exit-timeout", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        http = process.stdout.readline().strip().split(": ", 1)[-1]
        with Client(http, protocol="http") as client:
            ones = np.ones((1, 4), np.float32)
            assert client.infer("add_sub", {"INPUT0": ones, "INPUT1": ones})["OUTPUT0"].tolist() == [[2.0] * 4]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "FileExistsError" not in err
