"""validate on NVIDIA's LLM-API layout (backend python + <version>/model.yaml): API and CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from tritonkit.cli import main
from tritonkit.errors import Problem, RepositoryError
from tritonkit.validate import Report, validate_repository, validate_tree

CONFIG = (
    'name: "tensorrt_llm"\n'
    'backend: "python"\n'
    "input [\n"
    '  { name: "text_input" data_type: TYPE_STRING dims: [ -1 ] },\n'
    '  { name: "streaming" data_type: TYPE_BOOL dims: [ 1 ] optional: true }\n'
    "]\n"
    'output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
    "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
)
MODEL_YAML = (
    "model: TinyLlama/TinyLlama-1.1B-Chat-v1.0\n"
    'backend: "pytorch"\n'
    "tensor_parallel_size: 1\n"
    "pipeline_parallel_size: 1\n"
    "triton_config:\n"
    "  max_batch_size: 0\n"
    "  decoupled: True\n"
)
MODEL_PY = b"class TritonPythonModel:\n    pass\n"


def llmapi(config: str = CONFIG, model_yaml: str = MODEL_YAML) -> dict[str, object]:
    return {"tensorrt_llm/config.pbtxt": config.encode(), "tensorrt_llm/1/model.py": MODEL_PY,
            "tensorrt_llm/1/model.yaml": model_yaml.encode()}


def check(config: str = CONFIG, model_yaml: str = MODEL_YAML, gpu: Optional[str] = None,
          triton_version: Optional[str] = None) -> Report:
    return validate_tree(llmapi(config, model_yaml), gpu=gpu, triton_version=triton_version)


def shown(problems: list[Problem]) -> list[str]:
    return [problem.format() for problem in problems]


def write(root: Path, files: dict[str, object]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else str(content).encode())
    return root


def test_nvidias_layout_passes() -> None:
    report = check()
    assert report.errors == [] and report.warnings == []


def test_a_python_model_without_model_yaml_is_not_an_llmapi_model() -> None:
    files = llmapi()
    del files["tensorrt_llm/1/model.yaml"]
    assert validate_tree(files).warnings == []


def test_yaml_syntax_error_is_located_by_the_parser() -> None:
    report = check(model_yaml="model: x\ntriton_config: {max_batch_size: 0\n")
    (error,) = report.errors
    assert error.path == "model_repository/tensorrt_llm/1/model.yaml"
    assert (error.line, error.col) == (3, 1)
    assert error.message.startswith("model.yaml is not valid YAML: ")
    assert "Failed to parse YAML engine config" in (error.hint or "")


def test_an_empty_model_yaml_is_an_error() -> None:
    (error,) = check(model_yaml="").errors
    assert "must be a mapping of LLM() arguments" in error.message and "(it is empty)" in error.message


def test_a_repeated_key_only_warns() -> None:
    report = check(model_yaml=MODEL_YAML + "backend: pytorch\n")
    assert report.errors == []
    assert [w.message for w in report.warnings] == ["duplicate key 'backend' in model.yaml: PyYAML keeps the last one"]


def test_triton_config_missing() -> None:
    (error,) = check(model_yaml="model: x\n").errors
    assert shown([error]) == [
        "model_repository/tensorrt_llm/1/model.yaml:1:1: model.yaml has no triton_config: NVIDIA's model.py reads "
        "triton_config.max_batch_size and triton_config.decoupled when it loads (KeyError: 'triton_config'); add "
        "triton_config: {max_batch_size: 0, decoupled: false} (decoupled: true to stream)"]


@pytest.mark.parametrize("missing", ["max_batch_size", "decoupled"])
def test_triton_config_needs_both_keys(missing: str) -> None:
    lines = [line for line in MODEL_YAML.splitlines(keepends=True) if missing not in line]
    (error,) = check(model_yaml="".join(lines)).errors
    assert (error.line, error.col) == (5, 1)
    assert error.message == f"triton_config has no {missing}: NVIDIA's model.py indexes triton_config[\"{missing}\"] " \
                            "when it loads (KeyError)"


def test_streaming_input_without_decoupled_warns_at_the_key() -> None:
    report = check(model_yaml=MODEL_YAML.replace("decoupled: True", "decoupled: False"))
    assert report.errors == []
    (warning,) = report.warnings
    assert (warning.path, warning.line, warning.col) == ("model_repository/tensorrt_llm/1/model.yaml", 7, 3)
    assert "streaming requests fail with \"Streaming is only supported in decoupled mode.\"" in warning.message


def test_decoupled_as_a_string_warns() -> None:
    (warning,) = check(model_yaml=MODEL_YAML.replace("decoupled: True", 'decoupled: "False"')).warnings
    assert "the string 'False', which model.py's bool() reads as true" in warning.message


def test_several_instances_need_gpu_device_ids() -> None:
    config = CONFIG.replace("count: 1", "count: 2")
    (error,) = check(config=config).errors
    assert (error.path, error.line, error.col) == ("model_repository/tensorrt_llm/config.pbtxt", 8, 20)
    assert error.message == "instance count is 2 but parameters has no gpu_device_ids: NVIDIA's model.py stops " \
                            "with \"gpu_device_ids parameter required when instance count > 1\""


def devices(value: str, count: int = 2) -> str:
    return CONFIG.replace("count: 1", f"count: {count}") + \
        f'parameters {{ key: "gpu_device_ids" value {{ string_value: "{value}" }} }}\n'


def test_gpu_device_ids_one_group_per_instance_of_tp_times_pp_gpus() -> None:
    tp2 = MODEL_YAML.replace("tensor_parallel_size: 1", "tensor_parallel_size: 2")
    assert check(config=devices("0,1;2,3"), model_yaml=tp2).errors == []
    (error,) = check(config=devices("0,1;2,3;4,5"), model_yaml=tp2).errors
    assert (error.line, error.col) == (9, 1)
    assert error.message == "gpu_device_ids has 3 ;-separated group(s) but the instance count is 2"
    (error,) = check(config=devices("0;1"), model_yaml=tp2).errors
    assert error.message == "gpu_device_ids gives instance 0 1 GPU(s) ('0') but tensor_parallel_size * " \
                            "pipeline_parallel_size in model_repository/tensorrt_llm/1/model.yaml is 2"
    (error,) = check(config=devices("0;x")).errors
    assert "group 1 ('x') is not a comma-separated list of GPU ids" in error.message


def test_gpu_device_ids_against_the_host() -> None:
    (error,) = validate_tree(llmapi(config=devices("0;7")), gpus=2).errors
    assert error.message == "gpu_device_ids names GPU 7 but the host has 2 GPU(s)"


@pytest.mark.parametrize(("gpu", "model_yaml", "message"), [
    ("A100-80GB", MODEL_YAML + "kv_cache_config:\n  dtype: fp8\n",
     "kv_cache_config.dtype 'fp8' needs a GPU of compute capability 8.9 or newer; A100-80GB has 8.0"),
    ("A100", MODEL_YAML.replace("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "nvidia/Llama-3.1-8B-Instruct-FP8"),
     "the checkpoint 'nvidia/Llama-3.1-8B-Instruct-FP8' needs a GPU of compute capability 8.9 or newer; A100 has 8.0"),
    ("H100", MODEL_YAML.replace("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "nvidia/DeepSeek-R1-0528-FP4-V2"),
     "the checkpoint 'nvidia/DeepSeek-R1-0528-FP4-V2' needs a GPU of compute capability 10.0 or newer; H100 has 9.0"),
])
def test_precision_against_the_gpu(gpu: str, model_yaml: str, message: str) -> None:
    (error,) = check(model_yaml=model_yaml, gpu=gpu).errors
    assert error.message == message


def test_precision_the_gpu_has_passes() -> None:
    fp8 = MODEL_YAML + "kv_cache_config:\n  dtype: fp8\n"
    assert check(model_yaml=fp8, gpu="L40S").errors == []
    assert check(model_yaml=fp8).errors == []  # no GPU given: nothing to compare


def test_unknown_gpu_or_release_is_refused() -> None:
    with pytest.raises(RepositoryError, match="unknown GPU 'Z9'"):
        check(gpu="Z9")
    with pytest.raises(RepositoryError, match=r"unknown Triton release '19\.01'"):
        check(triton_version="19.01")


def test_unknown_llm_keys_warn_with_the_closest() -> None:
    model_yaml = MODEL_YAML + "max_seq_lenn: 4096\nkv_cache_config:\n  free_gpu_mem_fraction: 0.5\n"
    report = check(model_yaml=model_yaml)
    assert report.errors == []
    assert shown(report.warnings) == [
        "model_repository/tensorrt_llm/1/model.yaml:8:1: warning: 'max_seq_lenn' in model.yaml: not an argument of "
        "tensorrt_llm.LLM in TRT-LLM 1.2.1; did you mean 'max_seq_len'?",
        "model_repository/tensorrt_llm/1/model.yaml:10:3: warning: 'kv_cache_config.free_gpu_mem_fraction' in "
        "model.yaml: not an argument of tensorrt_llm.llmapi.KvCacheConfig in TRT-LLM 1.2.1; did you mean "
        "'free_gpu_memory_fraction'?",
    ]


def test_newer_keys_are_judged_against_the_target_release() -> None:
    model_yaml = MODEL_YAML + "kv_cache_config:\n  disk_cache_size: 1000\n"
    (warning,) = check(model_yaml=model_yaml, triton_version="26.04").warnings
    assert warning.message == "'kv_cache_config.disk_cache_size' in model.yaml: needs TRT-LLM ≥ 1.3, the image of " \
                              "NGC 26.04 has 1.2.1"
    (gap,) = check(model_yaml=model_yaml, triton_version="26.10").warnings  # TRT-LLM unknown: keys not judged
    assert gap.message.startswith("NVIDIA's llmapi model runs in a -trtllm-python-py3 image, but NGC 26.10 documents "
                                  "no -trtllm-python-py3 image")


def test_a_triton_version_picks_the_release_too() -> None:
    model_yaml = MODEL_YAML + "kv_cache_config:\n  disk_cache_size: 1000\n"
    (warning,) = check(model_yaml=model_yaml, triton_version="2.68.0").warnings
    assert "NGC 26.04" in warning.message


def test_inputs_newer_than_the_release_warn() -> None:
    config = CONFIG.replace("optional: true }\n", 'optional: true },\n  { name: "lora_id" data_type: TYPE_UINT64 '
                                                  "dims: [ 1 ] optional: true }\n")
    (warning,) = check(config=config).warnings
    assert (warning.path, warning.line, warning.col) == ("model_repository/tensorrt_llm/config.pbtxt", 6, 3)
    assert warning.message == "input 'lora_id' is read only by the llmapi model of TRT-LLM 1.3 or newer; the image " \
                              "of NGC 26.07 has 1.2.1, whose model.py ignores it"


def test_a_release_before_the_llmapi_model_warns() -> None:
    (warning,) = check(triton_version="25.05").warnings
    assert warning.message == "NGC 25.05 ships TRT-LLM 0.19.0, older than NVIDIA's llmapi model"


def test_on_disk_through_the_api(tmp_path: Path) -> None:
    repo = write(tmp_path / "repo", llmapi(model_yaml="model: x\n"))
    (error,) = validate_repository(repo).errors
    assert error.path == "repo/tensorrt_llm/1/model.yaml"


def test_cli_reports_llmapi_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_yaml = MODEL_YAML.replace("decoupled: True", "decoupled: False") + "max_seq_lenn: 10\n"
    repo = write(tmp_path / "repo", llmapi(config=CONFIG.replace("count: 1", "count: 2"), model_yaml=model_yaml))
    assert main(["validate", str(repo)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "repo/tensorrt_llm/config.pbtxt:8:20: instance count is 2 but parameters has no gpu_device_ids: NVIDIA's "
        "model.py stops with \"gpu_device_ids parameter required when instance count > 1\"; add parameters "
        '{ key: "gpu_device_ids" value { string_value: "0;1" } }, one ;-separated group of GPU ids per instance, '
        "and launch with --no-mpi",
        "repo/tensorrt_llm/1/model.yaml:7:3: warning: config.pbtxt declares input 'streaming' but "
        "triton_config.decoupled is false: streaming requests fail with \"Streaming is only supported in "
        "decoupled mode.\"; set triton_config.decoupled: true to stream",
        "repo/tensorrt_llm/1/model.yaml:8:1: warning: 'max_seq_lenn' in model.yaml: not an argument of "
        "tensorrt_llm.LLM in TRT-LLM 1.2.1; did you mean 'max_seq_len'?",
    ]
    assert "invalid: 1 model, 1 error, 2 warnings" in err


def test_cli_json_carries_the_model_yaml_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = write(tmp_path / "repo", llmapi(model_yaml="model: x\ntriton_config: [\n"))
    assert main(["validate", "--json", str(repo)]) == 1
    out, _ = capsys.readouterr()
    assert '"path": "repo/tensorrt_llm/1/model.yaml"' in out and '"line": 3' in out
