"""The LLM-API layout as generate writes it: tensors against the facts file, model.yaml, launch, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import SpecError
from tritonkit.triton.llmapi import EXTENSION_INPUTS, EXTENSION_OUTPUTS
from tritonkit.write.generate import generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# NVIDIA's triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt for TensorRT-LLM 1.2.x
# (shared/reference/trtllm-today.md section 1.2): name -> (dtype, dims, optional).
NVIDIA_INPUTS = {
    "text_input": ("TYPE_STRING", [-1], False), "streaming": ("TYPE_BOOL", [1], True),
    "sampling_param_best_of": ("TYPE_INT32", [1], True), "sampling_param_temperature": ("TYPE_FP32", [1], True),
    "sampling_param_top_k": ("TYPE_INT32", [1], True), "sampling_param_top_p": ("TYPE_FP32", [1], True),
    "sampling_param_frequency_penalty": ("TYPE_FP32", [1], True),
    "sampling_param_presence_penalty": ("TYPE_FP32", [1], True),
    "sampling_param_max_tokens": ("TYPE_INT32", [1], True), "sampling_param_stop": ("TYPE_STRING", [-1], True),
    "sampling_param_seed": ("TYPE_UINT64", [1], True),
    "sampling_param_exclude_input_from_output": ("TYPE_BOOL", [1], True),
    "sampling_param_return_perf_metrics": ("TYPE_BOOL", [1], True), "return_finish_reason": ("TYPE_BOOL", [1], True),
    "return_stop_reason": ("TYPE_BOOL", [1], True), "return_cumulative_logprob": ("TYPE_BOOL", [1], True),
    "stop": ("TYPE_BOOL", [1], True),
}
NVIDIA_OUTPUTS = {
    "text_output": ("TYPE_STRING", [-1]), "finish_reason": ("TYPE_STRING", [-1]), "stop_reason": ("TYPE_STRING", [-1]),
    "cumulative_logprob": ("TYPE_FP32", [-1]), "kv_cache_reused_block": ("TYPE_INT32", [-1]),
    "kv_cache_missed_block": ("TYPE_INT32", [-1]), "kv_cache_alloc_new_blocks": ("TYPE_INT32", [-1]),
    "kv_cache_alloc_total_blocks": ("TYPE_INT32", [-1]), "kv_cache_hit_rate": ("TYPE_FP32", [-1]),
    "arrival_time_ns": ("TYPE_INT64", [1]), "first_scheduled_time_ns": ("TYPE_INT64", [1]),
    "first_token_time_ns": ("TYPE_INT64", [1]), "last_token_time_ns": ("TYPE_INT64", [1]),
    "acceptance_rate": ("TYPE_FP32", [1]), "total_accepted_draft_tokens": ("TYPE_INT32", [1]),
    "total_draft_tokens": ("TYPE_INT32", [1]),
}


def _generate(tmp_path: Path, spec_text: str) -> Path:
    (tmp_path / "spec.yaml").write_text(spec_text)
    generate(tmp_path / "spec.yaml", tmp_path)
    return tmp_path


def _server_command(compose: dict[str, Any]) -> list[str]:
    """The server's command line in a compose service, after the stub watchdog that starts it."""
    command = list(compose["command"])
    return command[3:] if command[:2] == ["python3", "-c"] else command


def _config(path: Path) -> pb.ModelConfig:
    return text_format.Parse(path.read_text(), pb.ModelConfig())


@pytest.fixture
def gpu_example(tmp_path: Path) -> Path:
    shutil.copy(EXAMPLES / "trtllm_llmapi.yaml", tmp_path / "spec.yaml")
    generate(tmp_path / "spec.yaml", tmp_path)
    return tmp_path


def test_gpu_example_declares_nvidia_tensors_field_by_field(gpu_example: Path) -> None:
    config = _config(gpu_example / "model_repository" / "llama" / "config.pbtxt")
    assert config.name == "llama" and config.backend == "python"
    inputs = {t.name: (pb.DataType.Name(t.data_type), list(t.dims), t.optional) for t in config.input}
    outputs = {t.name: (pb.DataType.Name(t.data_type), list(t.dims)) for t in config.output}
    # NVIDIA's tensors as NVIDIA declares them, and tritonkit's additions (its model serves both engines).
    assert {name: inputs[name] for name in NVIDIA_INPUTS if name in inputs} == NVIDIA_INPUTS
    assert {name: outputs[name] for name in NVIDIA_OUTPUTS if name in outputs} == NVIDIA_OUTPUTS
    assert set(inputs) - set(NVIDIA_INPUTS) == {t.name for t in EXTENSION_INPUTS}
    assert set(outputs) - set(NVIDIA_OUTPUTS) == {t.name for t in EXTENSION_OUTPUTS}
    assert all(inputs[t.name][2] for t in EXTENSION_INPUTS)  # optional: NVIDIA's clients never send them
    assert not config.HasField("model_transaction_policy")  # auto_complete_config sets it from model.yaml
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 1)]


def test_gpu_example_model_yaml_and_launch(gpu_example: Path) -> None:
    settings = yaml.safe_load((gpu_example / "model_repository" / "llama" / "1" / "model.yaml").read_text())
    assert settings["model"] == "nvidia/Llama-3.1-8B-Instruct-FP8" and settings["backend"] == "pytorch"
    assert settings["tensor_parallel_size"] == 2 and settings["max_seq_len"] == 7168 + 1024
    assert settings["kv_cache_config"] == {"enable_block_reuse": True, "free_gpu_memory_fraction": 0.85,
                                           "dtype": "fp8"}
    assert settings["triton_config"] == {"max_batch_size": 0, "decoupled": True}
    assert settings["enable_chunked_prefill"] is True
    compose = yaml.safe_load((gpu_example / "docker" / "docker-compose.yml").read_text())["services"]["triton"]
    # The example also runs the OpenAI gateway, so its image adds tritonkit to NGC's.
    assert compose["build"]["args"]["BASE_IMAGE"] == "nvcr.io/nvidia/tritonserver:26.04-trtllm-python-py3"
    assert _server_command(compose)[:2] == ["trtllm-llmapi-launch", "tritonserver"]
    assert compose["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2
    assert compose["ipc"] == "host"


def test_several_instances_get_gpu_device_ids_and_start_without_mpi(tmp_path: Path) -> None:
    spec = (EXAMPLES / "trtllm_llmapi.yaml").read_text().replace(
        "    max_batch_size: 64\n", "    max_batch_size: 64\n    instance_group: [{count: 2, gpus: [0, 1, 2, 3]}]\n")
    root = _generate(tmp_path, spec)
    config = _config(root / "model_repository" / "llama" / "config.pbtxt")
    assert config.parameters["gpu_device_ids"].string_value == "0,1;2,3"
    assert config.instance_group[0].count == 2
    compose = yaml.safe_load((root / "docker" / "docker-compose.yml").read_text())["services"]["triton"]
    assert _server_command(compose)[0] == "tritonserver"
    assert compose["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0", "1", "2", "3"]


@pytest.mark.parametrize(("old", "new", "message"), [
    ("        enable_chunked_prefill: true\n", "        enable_chunked_prefil: true\n",
     "did you mean 'enable_chunked_prefill'?"),
    ("        enable_chunked_prefill: true\n", "        max_seq_len: 4096\n", "set max_input_len + max_output_len"),
    ("    max_batch_size: 64\n", "    max_batch_size: 64\n    instance_group: [{count: 1, gpus: [0, 1, 2]}]\n",
     "does not divide"),
    ("    max_batch_size: 64\n", "    max_batch_size: 64\n    layout: ensemble\n", "serves only the LLM-API layout"),
    ('  version: "26.04"', '  version: "24.10"', "has no LLM-API Triton model"),
])
def test_bad_llmapi_specs_name_the_key_and_write_nothing(tmp_path: Path, old: str, new: str, message: str) -> None:
    spec = (EXAMPLES / "trtllm_llmapi.yaml").read_text()
    assert old in spec
    with pytest.raises(SpecError) as caught:
        _generate(tmp_path, spec.replace(old, new))
    assert message in str(caught.value)
    assert "spec.yaml:" in str(caught.value)
    assert not (tmp_path / "model_repository").exists()


def test_instances_sharing_a_gpu_may_not_overbook_the_kv_cache(tmp_path: Path) -> None:
    spec = (EXAMPLES / "trtllm_llmapi.yaml").read_text().replace("tensor_parallel_size: 2", "tensor_parallel_size: 1")
    group = "    instance_group: [{count: 2, gpus: [0]}]\n"
    spec = spec.replace("    max_batch_size: 64\n", "    max_batch_size: 64\n" + group)
    with pytest.raises(SpecError, match=r"lower it to 0.47"):
        _generate(tmp_path, spec)


def test_the_cpp_engine_is_refused_on_a_release_without_it(tmp_path: Path) -> None:
    spec = (EXAMPLES / "trtllm.yaml").read_text().replace('version: "25.10"', 'version: "26.08"')
    with pytest.raises(SpecError, match="do not ship"):
        _generate(tmp_path, spec)


VLLM_SPEC = """\
triton: {version: "26.04"}
llms:
  - name: qwen
    engine:
      kind: vllm
      model: Qwen/Qwen2.5-7B-Instruct
      tensor_parallel_size: 2
      llm_args: {enforce_eager: true}
    max_batch_size: 128
    max_input_len: 4096
    max_output_len: 1024
    kv_cache: {free_gpu_memory_fraction: 0.85, enable_reuse: true, dtype: fp8}
"""


def test_vllm_kind_writes_the_backend_layout(tmp_path: Path) -> None:
    import json

    root = _generate(tmp_path, VLLM_SPEC)
    config = _config(root / "model_repository" / "qwen" / "config.pbtxt")
    assert config.backend == "vllm"
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb.ModelInstanceGroup.KIND_MODEL, 1)]
    args = json.loads((root / "model_repository" / "qwen" / "1" / "model.json").read_text())
    assert args == {"model": "Qwen/Qwen2.5-7B-Instruct", "tensor_parallel_size": 2, "pipeline_parallel_size": 1,
                    "max_num_seqs": 128, "max_model_len": 5120, "gpu_memory_utilization": 0.85,
                    "enable_prefix_caching": True, "kv_cache_dtype": "fp8", "enforce_eager": True}
    compose = yaml.safe_load((root / "docker" / "docker-compose.yml").read_text())["services"]["triton"]
    assert compose["image"] == "nvcr.io/nvidia/tritonserver:26.04-vllm-python-py3"
    assert compose["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2


@pytest.mark.parametrize(("old", "new", "message"), [
    ("enforce_eager: true", "enforce_eagre: true", "did you mean 'enforce_eager'?"),
    ("enforce_eager: true", "disable_log_requests: true", "removed in vLLM 0.10"),
    ("enforce_eager: true", "max_model_len: 10", r"set max_input_len \+ max_output_len instead"),
    ("    max_batch_size: 128\n", "    max_batch_size: 128\n    layout: llmapi\n", "serves only the vLLM backend"),
])
def test_bad_vllm_specs_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _generate(tmp_path, VLLM_SPEC.replace(old, new))


def test_validate_reads_model_json(tmp_path: Path) -> None:
    from tritonkit.validate import validate_repository

    root = _generate(tmp_path, VLLM_SPEC)
    model_json = root / "model_repository" / "qwen" / "1" / "model.json"
    model_json.write_text('{"model": "x",}')
    report = validate_repository(root / "model_repository")
    assert [(p.line, p.col) for p in report.errors] == [(1, 15)]
    model_json.unlink()
    assert "has no model.json" in validate_repository(root / "model_repository").errors[0].message
