"""``tritonkit serve`` as a real process: ports 0, endpoints on stdout, Ctrl-C, and failures before start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tritonkit.client import Client
from tritonkit.errors import ClientError

pytestmark = pytest.mark.triton

ONES = np.ones((1, 4), np.float32)
CLI = [sys.executable, "-c", "import sys; from tritonkit.cli import main; sys.exit(main())"]


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _endpoints(process: subprocess.Popen[str]) -> dict[str, str]:
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    return dict(line.strip().split(": ", 1) for line in lines if ": " in line)


def test_serve_with_ports_0_prints_them_and_stops_on_ctrl_c(repo_builder: Callable[..., Path],
                                                             tmp_path: Path) -> None:
    repo = repo_builder(tmp_path / "repo", "basic", models=["add_sub"], onnx=True)
    process = _serve(str(repo), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                     "--skip-unsupported", "--exit-timeout", "5")
    try:
        endpoints = _endpoints(process)
        assert set(endpoints) == {"http", "grpc", "metrics"}
        assert all(not value.endswith(":0") for value in endpoints.values())
        # Loopback unless --host says otherwise, as the gateway does.
        assert all(value.split("//")[-1].startswith("127.0.0.1:") for value in endpoints.values())
        with Client(endpoints["grpc"]) as client:
            out = client.infer("add_sub", {"INPUT0": ONES, "INPUT1": ONES})
            assert out["OUTPUT0"].tolist() == [[2.0] * 4]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "skipping model 'onnx_model': backend 'onnxruntime' is not in this tritonserver" in err
    assert re.search(r"^add_sub: loading \(\d+ s\)$", err, re.M) and re.search(r"^add_sub: READY \(\d+ s\)$", err, re.M)
    assert "stopped" in err
    with pytest.raises(ClientError, match="no Triton server answers"), Client(endpoints["grpc"], timeout_s=2) as client:
        client.infer("add_sub", {"INPUT0": ONES, "INPUT1": ONES})


def test_serve_reports_unsupported_models_before_start(repo_builder: Callable[..., Path], tmp_path: Path) -> None:
    repo = repo_builder(tmp_path / "repo", "basic", models=["add_sub"], onnx=True)
    started = time.monotonic()
    result = subprocess.run([*CLI, "serve", str(repo), "--http-port", "0", "--grpc-port", "0",
                             "--metrics-port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert f"{repo.resolve() / 'onnx_model'}: model 'onnx_model' cannot run on the local tritonserver" in result.stderr
    assert "docker run" in result.stderr and "--skip-unsupported" in result.stderr
    assert "starting tritonserver" not in result.stderr


def test_serve_names_the_failed_model_and_exits_1(repo_builder: Callable[..., Path], tmp_path: Path) -> None:
    repo = repo_builder(tmp_path / "repo", "basic", models=["sleeper"])
    (repo / "sleeper" / "1" / "model.py").write_text("raise RuntimeError('the weights are missing')\n")
    result = subprocess.run([*CLI, "serve", str(repo), "--http-port", "0", "--grpc-port", "0",
                             "--metrics-port", "0", "--exit-timeout", "5"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert f"{repo.resolve() / 'sleeper'}: tritonserver failed to load model 'sleeper'" in result.stderr
    assert "RuntimeError: the weights are missing" in result.stderr
    assert result.stdout == ""


def test_serve_missing_repository(tmp_path: Path) -> None:
    result = subprocess.run([*CLI, "serve", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "model repository not found" in result.stderr
    assert os.fspath(tmp_path / "nope") in result.stderr


def test_serve_a_spec_file_says_which_folder_to_serve(tmp_path: Path) -> None:
    spec = tmp_path / "tritonkit.yaml"
    spec.write_text("models: []\n")
    result = subprocess.run([*CLI, "serve", str(spec)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{spec}: is a spec file, not a model repository" in result.stderr
    assert f"run `tritonkit generate {spec}` first, which writes {tmp_path / 'model_repository'}" in result.stderr
    (tmp_path / "model_repository").mkdir()
    result = subprocess.run([*CLI, "serve", str(spec)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"did you mean {tmp_path / 'model_repository'}?" in result.stderr


def test_serve_a_project_folder_says_did_you_mean(repo_builder: Callable[..., Path], tmp_path: Path) -> None:
    repo_builder(tmp_path / "model_repository", "basic", models=["add_sub"])
    result = subprocess.run([*CLI, "serve", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{tmp_path}: is a project folder that holds model_repository/" in result.stderr
    assert f"did you mean {tmp_path / 'model_repository'}?" in result.stderr
    assert "starting tritonserver" not in result.stderr


def test_serve_an_empty_repository_warns(tmp_path: Path) -> None:
    repo = tmp_path / "model_repository"
    repo.mkdir()
    process = _serve(str(repo), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
                     "--ready-timeout", "60", "--exit-timeout", "5")
    try:
        assert set(_endpoints(process)) == {"http", "grpc", "metrics"}
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"{repo.resolve()}: warning: no model found" in err and "tritonkit generate SPEC" in err


def _children(pid: int, comm: str) -> list[int]:
    """Processes named ``comm`` (as the kernel cuts it, 15 characters) whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if text[text.find("(") + 1:text.rfind(")")] == comm[:15] and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _post(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=b"{}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_serve_explicit_mode_restricts_model_control_and_heals_a_killed_model(
        repo_builder: Callable[..., Path], tmp_path: Path) -> None:
    repo = repo_builder(tmp_path / "repo", "basic", models=["add_sub", "sleeper"])
    process = subprocess.Popen(
        [*CLI, "serve", str(repo), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
         "--exit-timeout", "5", "--model-control-mode", "explicit", "--load-model", "sleeper"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TRITONKIT_ADMIN_KEY": "serve-test-key"})
    try:
        endpoints = _endpoints(process)
        base = f"http://{endpoints['http']}/v2/repository/models"
        assert _post(f"{base}/add_sub/load", {}) == 403
        assert _post(f"{base}/sleeper/unload", {"triton-admin-key": "wrong"}) == 403
        assert _post(f"{base}/add_sub/load", {"triton-admin-key": "serve-test-key"}) == 200
        with Client(endpoints["grpc"]) as client:
            assert client.infer("add_sub", {"INPUT0": ONES, "INPUT1": ONES})["OUTPUT0"].tolist() == [[2.0] * 4]

        [triton] = _children(process.pid, "tritonserver")
        stubs = _children(triton, "triton_python_backend_stub")
        assert len(stubs) == 3  # sleeper's one instance, add_sub's two
        os.kill(stubs[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        answered = False
        while not answered and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                with Client(endpoints["grpc"], timeout_s=5) as client:
                    # add_sub, loaded through model control before the kill, is loaded again by the restart.
                    answered = client.infer("add_sub", {"INPUT0": ONES, "INPUT1": ONES})["OUTPUT0"].tolist() == [
                        [2.0] * 4] and client.infer("sleeper", {"SECONDS": np.array([0.0], np.float32)}) is not None
            except ClientError:
                continue
        assert answered, "the models did not answer again within 30 s"
        assert _children(process.pid, "tritonserver") != [triton]
        said: list[str] = []
        assert process.stderr is not None
        reader = threading.Thread(target=lambda: said.extend(iter(process.stderr.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 30  # the server answers a moment before serve says it is back
        while not any("ready again" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        process.wait(60)
        reader.join(10)
        err = "".join(said)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert process.returncode == 0, err
    assert "model control (load, unload, index) needs the header 'triton-admin-key: $TRITONKIT_ADMIN_KEY'" in err
    assert "serve-test-key" not in err
    assert re.search(r"^model '(sleeper|add_sub)': its backend process died \(instance \w+_0_\d, pid \d+\)", err, re.M)
    assert re.search(r"^'(sleeper|add_sub)' ready again \([\d.]+ s after the restart began\)$", err, re.M), err
    assert "stopped" in err
