"""GPU sizing: tensor parallelism, batch, replicas, speed, TTFT and cost, checked by hand arithmetic."""

from __future__ import annotations

import math

import pytest

from tritonkit.capacity import (
    Assumptions,
    Gpu,
    PlanError,
    Targets,
    find_gpu,
    grade_for,
    kv_bytes_per_token,
    load_architecture,
    load_catalog,
    plan_candidates,
    plan_gpu,
    weight_bytes,
)

CATALOG = load_catalog()


def gpu(name: str) -> Gpu:
    return find_gpu(CATALOG, name)


@pytest.mark.parametrize("name", ["H100-80GB", "A100-80GB"])
def test_llama3_70b_at_bf16_needs_tensor_parallel_on_80gb_gpus(name: str) -> None:
    arch = load_architecture("llama-3-70b")
    plan = plan_gpu(arch, gpu(name), Targets(concurrency=1, target_tps=1))
    assert plan.tensor_parallel == 2  # the smallest group that holds 141 GB of weights plus one request
    assert plan.weights_gb_per_gpu == pytest.approx(weight_bytes(arch, "bf16") / 2 / 1e9)
    assert plan.weights_gb_per_gpu + plan.kv_cache_gb_per_gpu <= 80


def test_llama3_8b_single_user_decode_is_the_bandwidth_roof() -> None:
    arch = load_architecture("llama-3-8b")
    targets = Targets(concurrency=1, input_tokens=1000, output_tokens=200, target_tps=1)
    plan = plan_gpu(arch, gpu("H100-80GB"), targets)
    read = weight_bytes(arch, "bf16") + (1000 + 100) * 128 * 1024  # weights + live KV at mid-generation
    expected = 3350e9 * 0.75 / read
    assert plan.tokens_per_s_per_user == pytest.approx(expected, rel=1e-9)
    assert (plan.tensor_parallel, plan.replicas, plan.grade) == (1, 1, "A")
    # Prefill: 2 x params x input tokens at half of 989 dense TFLOP/s; then one decode step.
    prefill_s = 2 * 8_030_261_248 * 1000 / (989e12 * 0.5)
    assert plan.ttft_ms == pytest.approx((prefill_s + 1 / expected) * 1000, rel=1e-9)


def test_kv_cache_figures_are_consistent() -> None:
    arch = load_architecture("llama-3-8b")
    targets = Targets(concurrency=64, input_tokens=2048, output_tokens=512)
    plan = plan_gpu(arch, gpu("A100-40GB"), targets)
    free_gb = 40 - plan.weights_gb_per_gpu
    assert plan.kv_cache_gb_per_gpu == pytest.approx(plan.kv_free_gpu_memory_fraction * free_gb)
    assert plan.kv_free_gpu_memory_fraction <= (40 * 0.9 - plan.weights_gb_per_gpu) / free_gb
    per_token = kv_bytes_per_token(arch, "bf16", plan.tensor_parallel)
    assert plan.kv_max_tokens == int(plan.kv_cache_gb_per_gpu * 1e9 // per_token)
    assert plan.max_batch_size * 2560 <= plan.kv_max_tokens
    assert plan.replicas * plan.max_batch_size >= 64
    assert plan.total_gpus == plan.tensor_parallel * plan.replicas


def test_more_users_or_faster_targets_cost_more_gpus() -> None:
    arch = load_architecture("llama-3-8b")
    few = plan_gpu(arch, gpu("L40S"), Targets(concurrency=8, target_tps=30))
    many = plan_gpu(arch, gpu("L40S"), Targets(concurrency=256, target_tps=30))
    fast = plan_gpu(arch, gpu("L40S"), Targets(concurrency=8, target_tps=70))
    assert many.total_gpus > few.total_gpus
    assert fast.total_gpus > few.total_gpus
    for plan in (few, many, fast):
        assert plan.meets_target and plan.tokens_per_s_per_user >= 30


def test_ttft_target_shrinks_the_batch() -> None:
    arch = load_architecture("llama-3-8b")
    loose = plan_gpu(arch, gpu("H100-80GB"), Targets(concurrency=64, input_tokens=2048))
    tight = plan_gpu(arch, gpu("H100-80GB"), Targets(concurrency=64, input_tokens=2048, ttft_ms=1000))
    assert tight.max_batch_size < loose.max_batch_size
    assert tight.ttft_burst_ms <= 1000 < loose.ttft_burst_ms


def test_unreachable_target_is_reported_not_hidden() -> None:
    plan = plan_gpu(load_architecture("llama-3-70b"), gpu("L4"), Targets(concurrency=4, target_tps=30))
    assert not plan.meets_target
    assert plan.tokens_per_s_per_user < 30
    assert any("not reachable" in note for note in plan.notes)


@pytest.mark.parametrize(("speed", "grade"), [(70, "A"), (69.9, "B"), (30, "B"), (15, "C"), (14.9, "-")])
def test_grades(speed: float, grade: str) -> None:
    assert grade_for(speed) == grade


def test_model_too_large_for_any_group_of_the_gpu() -> None:
    arch = load_architecture("llama-3-70b")
    with pytest.raises(PlanError) as caught:
        plan_gpu(arch, gpu("T4"), Targets())
    assert "does not fit on up to 8 x T4" in caught.value.first.message
    # int4: 35.3 GB of weights; 2 x T4 hold 17.6 GB each (over 16 x 0.9), 4 x T4 hold 8.8 GB each.
    assert plan_gpu(arch, gpu("T4"), Targets(dtype="int4", concurrency=1, target_tps=1)).tensor_parallel == 4


def test_fp8_needs_a_gpu_with_fp8() -> None:
    arch = load_architecture("llama-3-8b")
    with pytest.raises(PlanError, match="no FP8"):
        plan_gpu(arch, gpu("A100-80GB"), Targets(dtype="fp8"))
    fp8 = plan_gpu(arch, gpu("H100-80GB"), Targets(dtype="fp8", concurrency=1))
    bf16 = plan_gpu(arch, gpu("H100-80GB"), Targets(dtype="bf16", concurrency=1))
    assert fp8.tokens_per_s_per_user > 1.9 * bf16.tokens_per_s_per_user  # half the bytes per step
    assert Targets(dtype="int4").cache_dtype == "bf16" and Targets(dtype="fp8").cache_dtype == "fp8"


def test_request_longer_than_the_context_is_refused() -> None:
    with pytest.raises(PlanError, match="context of 8192"):
        plan_gpu(load_architecture("smollm2-135m"), gpu("L4"), Targets(input_tokens=8000, output_tokens=500))


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("concurrency", 0, "--concurrency"), ("input_tokens", -5, "--input-tokens"),
    ("output_tokens", 2.5, "--output-tokens"), ("target_tps", float("nan"), "--target-tps"),
    ("ttft_ms", -1.0, "--ttft-ms"),
])
def test_nonsense_targets_are_refused(field: str, value: float, flag: str) -> None:
    with pytest.raises(PlanError) as caught:
        Targets(**{field: value})  # type: ignore[arg-type]
    assert caught.value.first.path == flag


def test_nonsense_assumptions_are_refused() -> None:
    with pytest.raises(PlanError, match="memory_overhead"):
        Assumptions(memory_overhead=1.5)
    with pytest.raises(PlanError, match="step_overhead_ms"):
        Assumptions(step_overhead_ms=-1)


def test_fixed_step_overhead_is_added_to_every_decode_step() -> None:
    arch = load_architecture("smollm2-135m")
    targets = Targets(concurrency=1, target_tps=1)
    roof = plan_gpu(arch, gpu("H100-80GB"), targets)
    slowed = plan_gpu(arch, gpu("H100-80GB"), targets, Assumptions(step_overhead_ms=5))
    assert 1 / slowed.tokens_per_s_per_user == pytest.approx(1 / roof.tokens_per_s_per_user + 0.005)
    assert slowed.ttft_ms == pytest.approx(roof.ttft_ms + 5)


def test_cost_per_million_tokens() -> None:
    arch = load_architecture("llama-3-8b")
    plan = plan_gpu(arch, gpu("H100-80GB"), Targets(concurrency=32), price_per_hour=2.0)
    assert plan.cost_per_hour == pytest.approx(2.0 * plan.total_gpus)
    tokens_per_hour = 32 * plan.tokens_per_s_per_user * 3600
    assert plan.cost_per_million_tokens == pytest.approx(plan.cost_per_hour / tokens_per_hour * 1e6)
    assert plan_gpu(arch, gpu("H100-80GB"), Targets()).cost_per_hour is None


def test_candidates_skip_gpus_that_cannot_serve() -> None:
    plans, skipped = plan_candidates(load_architecture("llama-3-70b"), CATALOG, Targets())
    assert [name for name, _ in skipped] == ["T4"]
    assert {plan.gpu for plan in plans} == {gpu.name for gpu in CATALOG} - {"T4"}
    assert all(plan.tensor_parallel >= 2 for plan in plans if plan.gpu in ("H100-80GB", "A100-80GB"))
    with pytest.raises(PlanError) as caught:
        plan_candidates(load_architecture("llama-3-70b"), (gpu("T4"),), Targets())
    assert caught.value.first.message.startswith("T4:")


def test_smollm2_fits_one_gpu_everywhere_and_batch_is_capped_by_concurrency() -> None:
    arch = load_architecture("smollm2-135m")
    plans, skipped = plan_candidates(arch, CATALOG, Targets(concurrency=8))
    assert not skipped
    for plan in plans:
        assert (plan.tensor_parallel, plan.replicas, plan.max_batch_size) == (1, 1, 8)
        assert not math.isnan(plan.tokens_per_s_per_user)
