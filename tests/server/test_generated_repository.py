"""A generated repository loads in a real tritonserver and serves what the spec meant."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tritonkit.write.generate import generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    shutil.copytree(EXAMPLES / "models", root / "models")
    shutil.copy(EXAMPLES / "classic.yaml", root / "classic.yaml")
    generate(root / "classic.yaml", root)
    return root / "model_repository"


@pytest.fixture(scope="module")
def server(generated: Path, triton_server_module):  # type: ignore[no-untyped-def]
    return triton_server_module(generated)


def test_every_model_is_ready_and_the_manifest_is_ignored(server, generated: Path) -> None:  # type: ignore[no-untyped-def]
    assert (generated / ".tritonkit-manifest.json").is_file()
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert set(index) == {"add_sub", "scale", "add_then_scale"}
    for name in index:
        assert client.is_model_ready(name), name
    assert not any("manifest" in line for line in server.log_lines() if "error" in line.lower())


def test_served_config_matches_the_spec(server) -> None:  # type: ignore[no-untyped-def]
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    config = client.get_model_config("add_sub")
    assert config["max_batch_size"] == 64
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_CPU", 2)]
    assert config["version_policy"] == {"latest": {"num_versions": 2}}
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("INPUT0", "TYPE_FP32", [4]), ("INPUT1", "TYPE_FP32", [4])]
    scale = client.get_model_config("scale")
    assert scale["parameters"]["factor"]["string_value"] == "10"
    ensemble = client.get_model_config("add_then_scale")
    assert ensemble["platform"] == "ensemble"
    assert [s["model_version"] for s in ensemble["ensemble_scheduling"]["step"]] == [-1, -1]


def _inputs(module, a: np.ndarray, b: np.ndarray):  # type: ignore[no-untyped-def]
    tensors = [module.InferInput("A", list(a.shape), "FP32"), module.InferInput("B", list(b.shape), "FP32")]
    tensors[0].set_data_from_numpy(a)
    tensors[1].set_data_from_numpy(b)
    return tensors


def test_ensemble_answers_over_http_and_grpc(server) -> None:  # type: ignore[no-untyped-def]
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.float32)
    http = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    result = http.infer("add_then_scale", _inputs(httpclient, a, b))
    np.testing.assert_allclose(result.as_numpy("RESULT"), (a + b) * 10)
    grpc = grpcclient.InferenceServerClient(server.grpc_url.removeprefix("grpc://"))
    result = grpc.infer("add_then_scale", _inputs(grpcclient, a, -b))
    np.testing.assert_allclose(result.as_numpy("RESULT"), (a - 1) * 10)
