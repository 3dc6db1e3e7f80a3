"""The generated docker/ stack, run for real by docker-compose on a local Docker engine.

Only two things of the generated compose file are changed: the base image (a stand-in built locally,
since no registry is reachable; see conftest.py) and any GPU reservation (no GPU here). Host ports
are moved to free ones, and ``ulimits.memlock`` is lowered to the host's hard limit where root cannot
raise it. Everything else runs as generated: ``up`` turns the healthcheck healthy, a client infers
through the published ports, the restricted model-repository API wants the admin key, a real
Prometheus scrapes the metrics port, and ``down -v`` leaves no container, network or volume behind.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# A pinned package makes docker/ build an image FROM ${BASE_IMAGE}, the path every spec with Python
# packages (the LLM ones among them) takes; numpy 1.26 is what the Python backend needs anyway.
EXTRA_PIN = "numpy==1.26.4"
KEY = "compose-test-admin-key"
SERVICE = "triton"
PIN = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==\S+$")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dockerfile_pins(docker_dir: Path) -> list[str]:
    """The ``name==version`` pins the generated Dockerfile installs with pip (none without a Dockerfile)."""
    dockerfile = docker_dir / "Dockerfile"
    if not dockerfile.exists():
        return []
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: list[str] = []
    for line in text.splitlines():
        if "pip install" in line:
            pins += [word for word in line.split() if PIN.match(word)]
    return pins


def _retarget(compose: dict[str, Any], base_image: str) -> dict[str, str]:
    """Point the triton service at ``base_image``, drop GPU reservations, move host ports to free ones.

    Returns {container port: host port}.
    """
    service = compose["services"][SERVICE]
    build = service.get("build")
    if isinstance(build, dict) and "BASE_IMAGE" in (build.get("args") or {}):
        build["args"]["BASE_IMAGE"] = base_image
    else:  # no Dockerfile to build: the service runs the base image itself
        service["image"] = base_image
    for spec in compose["services"].values():
        reservations = spec.get("deploy", {}).get("resources", {}).get("reservations", {})
        reservations.pop("devices", None)
    _cap_memlock(service)
    ports: dict[str, str] = {}
    mapped = []
    for entry in service["ports"]:
        host_ip, _host_port, container_port = str(entry).split(":")
        ports[container_port] = str(_free_port())
        mapped.append(f"{host_ip}:{ports[container_port]}:{container_port}")
    service["ports"] = mapped
    return ports


def _cap_memlock(service: dict[str, Any]) -> None:
    """Lower ``ulimits.memlock`` to this host's hard limit when the file asks for more.

    Raising a hard limit needs CAP_SYS_RESOURCE, which root lacks on these machines (hard memlock 8 MiB):
    runc then refuses the generated ``memlock: -1`` ("error setting rlimit type 8"). A GPU host has it.
    """
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    ulimits = service.get("ulimits") or {}
    if hard == resource.RLIM_INFINITY or "memlock" not in ulimits:
        return
    wanted = ulimits["memlock"]
    values = [wanted.get("soft", -1), wanted.get("hard", -1)] if isinstance(wanted, dict) else [wanted]
    if any(int(v) < 0 or int(v) > hard for v in values):
        ulimits["memlock"] = hard


def _container_port(command: list[str], flag: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{flag}-port="))


@dataclass
class Stack:
    """One compose project, started from the generated files."""

    project: str
    compose_file: Path
    env: dict[str, str]
    http_port: str = ""
    grpc_port: str = ""
    metrics_port: str = ""
    built_image: Optional[str] = None
    log: list[str] = field(default_factory=list)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "--ansi", "never", "-p", self.project, "-f", str(self.compose_file), *args]
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout,
                              cwd=self.compose_file.parent, check=False)
        self.log.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
        if check and done.returncode != 0:
            raise AssertionError(f"docker-compose {args[0]} failed:\n" + self.log[-1][-4000:])
        return done

    def container(self) -> str:
        ids = self.compose("ps", "-q", SERVICE).stdout.split()
        assert len(ids) == 1, f"expected one {SERVICE} container, got {ids}"
        return ids[0]

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, command in (("containers", ["docker", "ps", "-aq"]), ("networks", ["docker", "network", "ls", "-q"]),
                              ("volumes", ["docker", "volume", "ls", "-q"])):
            out = subprocess.run([*command, "--filter", label], capture_output=True, text=True, check=True).stdout
            found[kind] = out.split()
        return found


def _wait_healthy(stack: Stack, timeout_s: float = 240) -> None:
    container = stack.container()
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        state = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .State}}", container],
                                          capture_output=True, text=True, check=True).stdout)
        status = state.get("Health", {}).get("Status", "")
        if status == "healthy":
            return
        if not state.get("Running"):
            break
        time.sleep(1)
    logs = subprocess.run(["docker", "logs", "--tail", "60", container], capture_output=True, text=True, check=False)
    raise AssertionError(f"container never became healthy (last status {status!r}):\n{logs.stdout}{logs.stderr}")


def _classic_spec(folder: Path) -> Path:
    """examples/classic.yaml (add_sub, scale, an ensemble of both) with EXTRA_PIN, written into ``folder``."""
    spec = yaml.safe_load((EXAMPLES / "classic.yaml").read_text(encoding="utf-8"))
    packages = spec.setdefault("deploy", {}).setdefault("python_packages", [])
    if EXTRA_PIN not in packages:
        packages.append(EXTRA_PIN)
    shutil.copytree(EXAMPLES / "models", folder / "models")
    path = folder / "tritonkit.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, base_image_builder: Callable[[list[str]], str]) -> Iterator[Stack]:
    out = tmp_path_factory.mktemp("compose")
    spec = _classic_spec(out)
    tritonkit = Path(sys.executable).parent / "tritonkit"
    generated = subprocess.run([str(tritonkit), "generate", str(spec), "-o", str(out)], capture_output=True,
                               text=True, check=False)
    assert generated.returncode == 0, generated.stderr
    docker_dir = out / "docker"
    pins = _dockerfile_pins(docker_dir)
    assert EXTRA_PIN in pins, "the generated Dockerfile should pip-install the spec's python_packages"
    base_image = base_image_builder(pins)

    compose = yaml.safe_load((docker_dir / "docker-compose.yml").read_text(encoding="utf-8"))
    ports = _retarget(compose, base_image)
    command = compose["services"][SERVICE]["command"]
    # Beside the generated file, so that its relative paths (../model_repository) still resolve.
    test_file = docker_dir / "docker-compose.test.yml"
    test_file.write_text(yaml.safe_dump(compose, sort_keys=False), encoding="utf-8")
    (docker_dir / ".env").write_text(f"TRITON_ADMIN_KEY={KEY}\n", encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_BUILDKIT"))}
    env["TRITON_ADMIN_KEY"] = KEY
    stack = Stack(project=f"tritonkit-test-{os.getpid()}-{int(time.time())}", compose_file=test_file, env=env,
                  http_port=ports[_container_port(command, "http")], grpc_port=ports[_container_port(command, "grpc")],
                  metrics_port=ports[_container_port(command, "metrics")])
    if "build" in compose["services"][SERVICE]:
        stack.built_image = compose["services"][SERVICE].get("image")
    try:
        stack.compose("up", "-d", "--build")
        _wait_healthy(stack)
        yield stack
    finally:
        stack.compose("down", "-v", "--timeout", "60", check=False)
        if stack.built_image:
            subprocess.run(["docker", "image", "rm", stack.built_image], capture_output=True, check=False)


def _status(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


A = np.array([[1, 2, 3, 4]], dtype=np.float32)
B = np.array([[10, 20, 30, 40]], dtype=np.float32)


def _infer_add_sub(stack: Stack) -> None:
    http = httpclient.InferenceServerClient(f"127.0.0.1:{stack.http_port}")
    inputs = [httpclient.InferInput("INPUT0", [1, 4], "FP32"), httpclient.InferInput("INPUT1", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_data_from_numpy(B)
    result = http.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("SUM"), A + B)
    np.testing.assert_array_equal(result.as_numpy("DIFF"), A - B)
    http.close()


def test_infers_through_published_ports(stack: Stack) -> None:
    _infer_add_sub(stack)
    a, b = A, B

    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    inputs = [grpcclient.InferInput("A", [1, 4], "FP32"), grpcclient.InferInput("B", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = grpc.infer("add_then_scale", inputs)
    np.testing.assert_array_equal(result.as_numpy("RESULT"), (a + b) * 10)
    grpc.close()


def test_restricted_api_wants_the_admin_key(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.http_port}/v2/repository/index"
    status, body = _status(url, {})
    assert status in (401, 403), (status, body)
    status, body = _status(url, {"triton-admin-key": "wrong-key"})
    assert status in (401, 403), (status, body)
    status, body = _status(url, {"triton-admin-key": KEY})
    assert status == 200, body
    assert {"add_sub", "scale", "add_then_scale"} <= {model["name"] for model in json.loads(body)}

    # Over gRPC, Triton (2.51 here) expects the header name prefixed with "triton-grpc-protocol-".
    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    with pytest.raises(InferenceServerException, match="restricted"):
        grpc.get_model_repository_index()
    with pytest.raises(InferenceServerException, match="restricted"):
        grpc.get_model_repository_index(headers={"triton-grpc-protocol-triton-admin-key": "wrong-key"})
    index = grpc.get_model_repository_index(headers={"triton-grpc-protocol-triton-admin-key": KEY}, as_json=True)
    assert "add_sub" in {model["name"] for model in index["models"]}
    grpc.close()


def _prometheus_query(base: str, query: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as reply:
        data = json.loads(reply.read().decode())
    assert data["status"] == "success", data
    return list(data["data"]["result"])


def test_prometheus_scrapes_the_metrics_port(stack: Stack, tmp_path: Path) -> None:
    _infer_add_sub(stack)
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10) as reply:
        assert "nv_inference_request_success" in reply.read().decode()

    config = tmp_path / "prometheus.yml"
    target = {"targets": [f"127.0.0.1:{stack.metrics_port}"]}
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "triton", "static_configs": [target]}],
    }), encoding="utf-8")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "prometheus.log"
    with log.open("wb") as sink:
        prometheus = subprocess.Popen(
            [shutil.which("prometheus") or "prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        query = 'nv_inference_request_success{job="triton",model="add_sub"} > 0'
        deadline = time.monotonic() + 60
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                result = _prometheus_query(base, query)
            except (urllib.error.URLError, ConnectionError):
                assert prometheus.poll() is None, log.read_text(encoding="utf-8")[-3000:]
        assert result, f"Prometheus never saw {query}:\n" + log.read_text(encoding="utf-8")[-3000:]
        assert float(result[0]["value"][1]) > 0
        up = _prometheus_query(base, 'up{job="triton"}')
        assert [float(series["value"][1]) for series in up] == [1.0]
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


def test_down_leaves_nothing(stack: Stack) -> None:
    assert stack.leftovers()["containers"], "the running stack should be visible by its project label"
    stack.compose("down", "-v", "--timeout", "60")
    left = stack.leftovers()
    assert left == {"containers": [], "networks": [], "volumes": []}, left
