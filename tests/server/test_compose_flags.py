"""The tritonserver command line written into docker-compose.yml, run on the local server.

No Docker engine here, so the compose command is exercised by starting the wheel's tritonserver with
the same flags (container paths and ports mapped to local ones): a flag this server rejects fails here.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from tritonkit.model import build_repository
from tritonkit.model.deploy import build_deployment
from tritonkit.render.docker import render_docker
from tritonkit.spec.load import load_spec
from tritonkit.write.generate import generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "s3cret-test-key"
# Flags the Server class sets itself; their values are passed to it, and checked in its command.
OWN_FLAGS = ("--model-repository=", "--http-port=", "--grpc-port=", "--metrics-port=", "--model-control-mode=",
             "--exit-timeout-secs=", "--log-verbose=")


def _triton_service(spec: Path) -> dict[str, Any]:
    loaded = load_spec(spec)
    rendered = render_docker(build_deployment(loaded, build_repository(loaded).units))
    data = rendered["docker/docker-compose.yml"]
    assert isinstance(data, bytes)
    service: dict[str, Any] = yaml.safe_load(data)["services"]["triton"]
    return service


def _compose_command(spec: Path) -> list[str]:
    """The server's command line, after the stub watchdog that starts it (render/probes.watchdog_command)."""
    command = list(_triton_service(spec)["command"])
    return command[3:] if command[:2] == ["python3", "-c"] else command


def _local_args(command: list[str], repo: Path) -> list[str]:
    """The compose command with the container's paths and the key's variable mapped to local values."""
    assert command[0] == "tritonserver"
    mapped = []
    for arg in command[1:]:
        arg = arg.replace("=/models", f"={repo}")
        if "${TRITON_ADMIN_KEY" in arg:
            arg = arg[: arg.index("${")] + KEY
        mapped.append(arg)
    return mapped


def _value(args: list[str], prefix: str) -> str:
    return next(a[len(prefix):] for a in args if a.startswith(prefix))


def _status(url: str, data: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.triton
def test_compose_command_starts_the_local_server(tmp_path: Path, triton_server) -> None:
    generate(EXAMPLES / "classic.yaml", tmp_path)
    repo = tmp_path / "model_repository"
    args = _local_args(_compose_command(EXAMPLES / "classic.yaml"), repo)
    assert any(a.startswith("--http-restricted-api=model-repository:triton-admin-key=") for a in args)
    extra = [a for a in args if not a.startswith(OWN_FLAGS)]
    server = triton_server(repo, model_control_mode=_value(args, "--model-control-mode="),
                           exit_timeout_s=float(_value(args, "--exit-timeout-secs=")),
                           log_verbose=int(_value(args, "--log-verbose=")), extra_args=extra)
    mapped_ports = {"--http-port=": server.http_port, "--grpc-port=": server.grpc_port,
                    "--metrics-port=": server.metrics_port}
    for arg in args:
        prefix = next((p for p in mapped_ports if arg.startswith(p)), None)
        expected = f"{prefix}{mapped_ports[prefix]}" if prefix else arg
        assert expected in server.command, f"{expected} is not in the server's command line"
    probe = _triton_service(EXAMPLES / "classic.yaml")["healthcheck"]["test"]
    assert probe[:2] == ["CMD", "python3"]
    local_probe = [sys.executable, *(a.replace("localhost:8000", f"localhost:{server.http_port}") for a in probe[2:])]
    assert subprocess.run(local_probe, timeout=30, check=False).returncode == 0
    with server.client("http") as client:
        for name in ("add_sub", "scale", "add_then_scale"):
            assert client.is_model_ready(name), name
    index = f"http://127.0.0.1:{server.http_port}/v2/repository/index"
    assert _status(index, b"{}", {}) == 403
    assert _status(index, b"{}", {"triton-admin-key": "wrong"}) == 403
    assert _status(index, b"{}", {"triton-admin-key": KEY}) == 200


@pytest.mark.triton
def test_response_cache_flag_is_accepted(tmp_path: Path, triton_server) -> None:
    spec = yaml.safe_load((EXAMPLES / "classic.yaml").read_text(encoding="utf-8"))
    spec["models"][1]["response_cache"] = {"enable": True}
    spec["models"][0]["artifact"] = str(EXAMPLES / "models" / "add_sub.py")
    spec["models"][1]["artifact"] = str(EXAMPLES / "models" / "scale.py")
    spec["deploy"] = {"restricted_apis": [], "model_control_mode": "explicit", "exit_timeout_secs": 5}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    generate(path, tmp_path)
    repo = tmp_path / "model_repository"
    args = _local_args(_compose_command(path), repo)
    assert "--cache-config=local,size=268435456" in args
    assert not any("restricted" in a for a in args)
    extra = [a for a in args if not a.startswith(OWN_FLAGS)]
    server = triton_server(repo, model_control_mode="explicit", exit_timeout_s=5.0, extra_args=extra)
    for arg in extra:
        assert arg in server.command
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        data = np.arange(4, dtype=np.float32).reshape(1, 4)
        for _ in range(3):
            tensor = httpclient.InferInput("INPUT", [1, 4], "FP32")
            tensor.set_data_from_numpy(data)
            result = client.infer("scale", [tensor]).as_numpy("OUTPUT")
            assert np.allclose(result, data * 10)
        stats = client.get_inference_statistics("scale")["model_stats"][0]["inference_stats"]
    finally:
        client.close()
    assert int(stats["cache_hit"]["count"]) == 2 and int(stats["cache_miss"]["count"]) == 1
