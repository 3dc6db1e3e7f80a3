"""Size a deployment: tensor parallelism, batch and replicas per GPU from memory and bandwidth roofs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from tritonkit.capacity.architecture import (
    KV_DTYPES,
    Architecture,
    PlanError,
    bytes_per_value,
    kv_bytes_per_token,
    parameter_count,
    weight_bytes,
)
from tritonkit.capacity.gpus import Gpu
from tritonkit.errors import Problem

__all__ = ["GRADES", "Assumptions", "GpuPlan", "Targets", "grade_for", "plan_candidates", "plan_gpu"]

#: Per-user decode speed (tokens/s) a grade needs: 70 = A, 30 = B, 15 = C.
GRADES: tuple[tuple[str, float], ...] = (("A", 70.0), ("B", 30.0), ("C", 15.0))


def grade_for(tokens_per_s: float) -> str:
    """Return the grade (A, B, C) a per-user decode speed reaches, or ``-`` below C."""
    return next((name for name, floor in GRADES if tokens_per_s >= floor), "-")


def _positive(value: float, name: str, *, integer: bool = False) -> None:
    bad = isinstance(value, bool) or not math.isfinite(value) or value <= 0
    if bad or (integer and int(value) != value):
        kind = "a positive integer" if integer else "a positive number"
        raise PlanError(Problem(f"{name} must be {kind} (got {value!r})", path=f"--{name}"))


@dataclass(frozen=True)
class Targets:
    """What the service must do: peak concurrent requests, their lengths, speed per user, serving dtypes."""

    concurrency: int = 16
    input_tokens: int = 1024
    output_tokens: int = 256
    target_tps: float = 30.0
    ttft_ms: Optional[float] = None
    dtype: str = "bf16"
    kv_dtype: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("concurrency", "input_tokens", "output_tokens"):
            _positive(getattr(self, name), name.replace("_", "-"), integer=True)
        _positive(self.target_tps, "target-tps")
        if self.ttft_ms is not None:
            _positive(self.ttft_ms, "ttft-ms")
        bytes_per_value(self.dtype)
        if self.kv_dtype is not None and self.kv_dtype not in KV_DTYPES:
            raise PlanError(Problem(f"unknown KV-cache dtype {self.kv_dtype!r}", path="--kv-dtype",
                                    hint=f"use one of {', '.join(KV_DTYPES)}"))

    @property
    def cache_dtype(self) -> str:
        """The KV-cache dtype: as given, else the weights' dtype when it is 16-bit or fp8, else bf16."""
        if self.kv_dtype is not None:
            return self.kv_dtype
        return self.dtype if self.dtype in ("bf16", "fp16", "fp8") else "bf16"

    @property
    def tokens_per_request(self) -> int:
        """Input plus output tokens: the KV cache one request holds at its end."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Assumptions:
    """The stated margins: memory kept back for runtime use, fractions of peak reached in practice.

    ``step_overhead_ms`` is a fixed cost added to every decode step (kernel launches, scheduling) and
    ``per_sequence_ms`` a cost per sequence in the step (sampling, bookkeeping); both are 0 by default
    and come from an engine profile (``engine_profile``) when the plan names the engine.
    """

    memory_overhead: float = 0.10
    bandwidth_efficiency: float = 0.75
    compute_efficiency: float = 0.50
    max_kv_fraction: float = 0.95
    step_overhead_ms: float = 0.0
    per_sequence_ms: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            flag = "--" + name.replace("_", "-")
            if name in ("step_overhead_ms", "per_sequence_ms"):
                if not math.isfinite(value) or value < 0:
                    raise PlanError(Problem(f"{name} must be 0 or more (got {value})", path=flag))
            elif not 0 < value < 1 and not (name.endswith("efficiency") and value == 1):
                raise PlanError(Problem(f"{name} must lie between 0 and 1 (got {value})", path=flag))


@dataclass(frozen=True)
class GpuPlan:
    """The sized deployment on one GPU model. Per-replica figures describe one tensor-parallel group."""

    gpu: str
    tensor_parallel: int
    replicas: int
    total_gpus: int
    max_batch_size: int
    batch_at_peak: int
    tokens_per_s_per_user: float
    aggregate_tokens_per_s: float
    grade: str
    meets_target: bool
    ttft_ms: float
    ttft_burst_ms: float
    weights_gb_per_gpu: float
    kv_cache_gb_per_gpu: float
    kv_free_gpu_memory_fraction: float
    kv_max_tokens: int
    cost_per_hour: Optional[float] = None
    cost_per_million_tokens: Optional[float] = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class _Replica:
    """One tensor-parallel group of ``tp`` GPUs serving one copy of the model."""

    arch: Architecture
    gpu: Gpu
    tp: int
    targets: Targets
    assumptions: Assumptions

    @property
    def weights_per_gpu(self) -> float:
        return weight_bytes(self.arch, self.targets.dtype) / self.tp

    @property
    def kv_per_token(self) -> int:
        return kv_bytes_per_token(self.arch, self.targets.cache_dtype, self.tp)

    @property
    def kv_fraction(self) -> float:
        """Share of the memory left after the weights that the paged KV cache may take."""
        free = self.gpu.memory_bytes - self.weights_per_gpu
        budget = self.gpu.memory_bytes * (1 - self.assumptions.memory_overhead) - self.weights_per_gpu
        if free <= 0 or budget <= 0:
            return 0.0
        return min(self.assumptions.max_kv_fraction, math.floor(budget / free * 100) / 100)

    @property
    def kv_bytes(self) -> float:
        return self.kv_fraction * max(0.0, self.gpu.memory_bytes - self.weights_per_gpu)

    @property
    def kv_tokens(self) -> int:
        return int(self.kv_bytes // self.kv_per_token)

    @property
    def batch_limit(self) -> int:
        """Most requests whose full KV cache (input + output) fits at once."""
        return self.kv_tokens // self.targets.tokens_per_request

    def _tflops(self) -> float:
        fp8 = self.targets.dtype == "fp8" and self.gpu.tflops_fp8 is not None
        peak = self.gpu.tflops_fp8 if fp8 and self.gpu.tflops_fp8 else self.gpu.tflops_16bit
        return peak * 1e12 * self.assumptions.compute_efficiency

    def step_s(self, batch: int) -> float:
        """One decode step: reading weights and the batch's live KV, or the batch's FLOPs, if slower."""
        context = self.targets.input_tokens + self.targets.output_tokens / 2
        read = self.weights_per_gpu + batch * context * self.kv_per_token
        memory_s = read / (self.gpu.bandwidth_gb_s * 1e9 * self.assumptions.bandwidth_efficiency)
        compute_s = 2 * parameter_count(self.arch) * batch / self.tp / self._tflops()
        engine_ms = self.assumptions.step_overhead_ms + self.assumptions.per_sequence_ms * batch
        return max(memory_s, compute_s) + engine_ms / 1000

    def prefill_s(self) -> float:
        """Prefill of one prompt: 2 x params x input tokens FLOPs shared by the group's GPUs."""
        flops = 2 * parameter_count(self.arch) * self.targets.input_tokens / self.tp
        floor = self.weights_per_gpu / (self.gpu.bandwidth_gb_s * 1e9 * self.assumptions.bandwidth_efficiency)
        return max(flops / self._tflops(), floor)

    def tps(self, batch: int) -> float:
        return 1.0 / self.step_s(batch)

    def ttft_burst_s(self, batch: int) -> float:
        """First token of the last of ``batch`` prompts arriving together (prefills run one by one)."""
        return batch * self.prefill_s() + self.step_s(batch)

    def meets(self, batch: int) -> bool:
        ttft_ms = self.targets.ttft_ms
        fast = self.tps(batch) >= self.targets.target_tps
        return fast and (ttft_ms is None or self.ttft_burst_s(batch) * 1000 <= ttft_ms)

    def best_batch(self) -> int:
        """Largest batch up to the concurrency that fits and still meets the targets (0: none does)."""
        low, high = 0, min(self.batch_limit, self.targets.concurrency)
        while low < high:
            middle = (low + high + 1) // 2
            if self.meets(middle):
                low = middle
            else:
                high = middle - 1
        return low


def _tp_sizes(arch: Architecture, gpu: Gpu) -> list[int]:
    sizes, tp = [], 1
    while tp <= gpu.max_per_node:
        if arch.heads % tp == 0:
            sizes.append(tp)
        tp *= 2
    return sizes


def _check_support(arch: Architecture, gpu: Gpu, targets: Targets) -> None:
    needs_fp8 = [name for name, dtype in (("--dtype", targets.dtype), ("--kv-dtype", targets.cache_dtype))
                 if dtype == "fp8"]
    if needs_fp8 and gpu.tflops_fp8 is None:
        raise PlanError(Problem(f"{gpu.name} has no FP8 support", path=needs_fp8[0],
                                hint="use bf16, int8 or int4 on this GPU, or pick an Ada/Hopper GPU"))
    if arch.max_context is not None and targets.tokens_per_request > arch.max_context:
        raise PlanError(Problem(f"input + output tokens ({targets.tokens_per_request}) exceed the model's "
                                f"context of {arch.max_context}", path="--input-tokens",
                                hint="ask for fewer tokens per request"))


def _fitting_replicas(arch: Architecture, gpu: Gpu, targets: Targets,
                      assumptions: Assumptions) -> list[_Replica]:
    replicas = [_Replica(arch, gpu, tp, targets, assumptions) for tp in _tp_sizes(arch, gpu)]
    fitting = [replica for replica in replicas if replica.batch_limit >= 1]
    if not fitting:
        largest = replicas[-1]
        need_gb = weight_bytes(arch, targets.dtype) / 1e9
        raise PlanError(Problem(
            f"{arch.name} at {targets.dtype} ({need_gb:.1f} GB of weights plus "
            f"{targets.tokens_per_request} tokens of KV cache) does not fit on up to {largest.tp} x "
            f"{gpu.name} "
            f"({gpu.memory_gb:g} GB each, {assumptions.memory_overhead:.0%} kept back)", path="--gpu",
            hint="use a smaller --dtype (fp8, int8, int4), fewer tokens per request, or a larger GPU"))
    return fitting


def _choose(fitting: list[_Replica]) -> tuple[_Replica, int, bool]:
    """Pick the group size that meets the targets with the fewest GPUs (then the smallest group)."""
    concurrency = fitting[0].targets.concurrency
    best: Optional[tuple[int, int, _Replica, int]] = None
    for replica in fitting:
        batch = replica.best_batch()
        if batch >= 1:
            total = replica.tp * math.ceil(concurrency / batch)
            if best is None or (total, replica.tp) < best[:2]:
                best = (total, replica.tp, replica, batch)
    if best is not None:
        return best[2], best[3], True
    smallest = fitting[0]
    return smallest, min(smallest.batch_limit, concurrency), False


def plan_gpu(arch: Architecture, gpu: Gpu, targets: Targets, assumptions: Optional[Assumptions] = None,
             price_per_hour: Optional[float] = None) -> GpuPlan:
    """Size the deployment of ``arch`` on ``gpu`` for ``targets``.

    Raises:
        PlanError: the GPU lacks a dtype asked for, the request exceeds the model's context, or the model
            does not fit on any tensor-parallel group the GPU allows.

    """
    assumptions = assumptions or Assumptions()
    _check_support(arch, gpu, targets)
    fitting = _fitting_replicas(arch, gpu, targets, assumptions)
    replica, batch, met = _choose(fitting)
    replicas = math.ceil(targets.concurrency / batch)
    at_peak = math.ceil(targets.concurrency / replicas)
    per_user = replica.tps(at_peak)
    notes = [] if met else [_miss_note(fitting, targets)]
    price = price_per_hour if price_per_hour is not None else gpu.price_per_hour
    cost_h = price * replica.tp * replicas if price is not None else None
    aggregate = targets.concurrency * per_user
    return GpuPlan(
        gpu=gpu.name, tensor_parallel=replica.tp, replicas=replicas, total_gpus=replica.tp * replicas,
        max_batch_size=batch, batch_at_peak=at_peak, tokens_per_s_per_user=per_user,
        aggregate_tokens_per_s=aggregate, grade=grade_for(per_user), meets_target=met,
        ttft_ms=(replica.prefill_s() + replica.step_s(1)) * 1000,
        ttft_burst_ms=replica.ttft_burst_s(at_peak) * 1000,
        weights_gb_per_gpu=replica.weights_per_gpu / 1e9, kv_cache_gb_per_gpu=replica.kv_bytes / 1e9,
        kv_free_gpu_memory_fraction=replica.kv_fraction, kv_max_tokens=replica.kv_tokens,
        cost_per_hour=cost_h,
        cost_per_million_tokens=None if cost_h is None else cost_h / (aggregate * 3600) * 1e6,
        notes=tuple(notes))


def _miss_note(fitting: list[_Replica], targets: Targets) -> str:
    fastest = fitting[-1]
    text = (f"target {targets.target_tps:g} tok/s per user not reachable: at most "
            f"{fastest.tps(1):.1f} tok/s at TP={fastest.tp}, batch 1")
    if targets.ttft_ms is not None:
        text += f"; TTFT {fastest.ttft_burst_s(1) * 1000:.0f} ms at batch 1 (target {targets.ttft_ms:g} ms)"
    return text


def plan_candidates(arch: Architecture, catalog: tuple[Gpu, ...], targets: Targets,
                    assumptions: Optional[Assumptions] = None,
                    price_per_hour: Optional[float] = None) -> tuple[list[GpuPlan], list[tuple[str, str]]]:
    """Plan on every GPU of ``catalog``; GPUs that cannot serve the model are returned with the reason.

    Raises:
        PlanError: no GPU of the catalogue can serve the model (every reason is listed).

    """
    plans: list[GpuPlan] = []
    skipped: list[tuple[str, str]] = []
    for gpu in catalog:
        try:
            plans.append(plan_gpu(arch, gpu, targets, assumptions, price_per_hour))
        except PlanError as exc:
            skipped.append((gpu.name, exc.first.message))
    if not plans:
        raise PlanError([Problem(f"{name}: {reason}", path="--gpu") for name, reason in skipped])
    return plans, skipped
