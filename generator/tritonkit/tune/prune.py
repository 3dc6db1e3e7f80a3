"""Where the search starts and what it never runs: the default space, the seed, and the capacity rules.

The seed is ``plan``'s estimate where there is one (an LLM on a GPU of the catalogue: its batch size and
KV fraction), else the spec's own values. A candidate is pruned, before any run, when the capacity model
says it cannot be better than one that is run, or cannot meet the target: a batch or instance count
larger than the requests in flight (no better than the smallest value that holds them all), a preferred
batch size above ``max_batch_size``, a queue delay as long as the latency target, a prefill chunk past the
prompt's length, KV or weights that do not fit the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Union

from tritonkit.capacity import Architecture, Assumptions, Gpu, Targets, kv_bytes_per_token, plan_gpu, weight_bytes
from tritonkit.capacity.engines import engine_profile
from tritonkit.errors import TritonkitError
from tritonkit.spec.llm import LLMSpec
from tritonkit.spec.schema import ModelSpec
from tritonkit.tune.entry import Entry
from tritonkit.tune.goal import Goal
from tritonkit.tune.space import CLASSIC_DIMENSIONS, LLM_DIMENSIONS, Candidate, Dimension, Space, Value

__all__ = ["Capacity", "Pruner", "classic_rules", "default_space", "llm_rules", "seed_values"]

#: A rule: the reason a candidate is not run, or None.
Pruner = Callable[[Candidate], Optional[str]]


@dataclass(frozen=True)
class Capacity:
    """What the capacity model knows of the deployment: the GPU (None on CPU), the LLM's shape, its lengths."""

    gpu: Optional[Gpu] = None
    arch: Optional[Architecture] = None
    input_tokens: int = 128
    output_tokens: int = 64


def _powers(limit: int, base: int = 2) -> list[int]:
    values, value = [], 1
    while value < limit:
        values.append(value)
        value *= base
    return [*values, limit]


def _in_flight(goal: Goal) -> int:
    """Requests in flight at the goal's load: the concurrency, or rate x latency target (Little's law)."""
    if goal.mode == "concurrency":
        return int(goal.level)
    latency = [t.bound for t in goal.targets if t.upper and t.name.endswith("_ms")]
    return max(1, math.ceil(goal.level * (min(latency) if latency else 1000.0) / 1000.0))


def default_space(entry: Entry, model: Union[ModelSpec, LLMSpec], goal: Goal, capacity: Capacity,
                  given: dict[str, tuple[Value, ...]]) -> Space:
    """The space searched: ``--space`` where given, else defaults from the model, the load and the GPU."""
    flight = _in_flight(goal)
    defaults = _llm_defaults(model, flight, capacity) if isinstance(model, LLMSpec) \
        else _classic_defaults(model, flight, capacity)
    order = LLM_DIMENSIONS if entry.llm else CLASSIC_DIMENSIONS
    values = {**defaults, **given}
    return Space(tuple(Dimension(name, values[name]) for name in order if values.get(name)))


def _classic_defaults(model: ModelSpec, flight: int, capacity: Capacity) -> dict[str, tuple[Value, ...]]:
    counts = tuple(range(1, 5))
    defaults: dict[str, tuple[Value, ...]] = {"instance_count": counts}
    if capacity.gpu is not None:
        defaults["instance_kind"] = ("cpu", "gpu")
    if model.max_batch_size > 0:
        spec_delay = model.dynamic_batching.max_queue_delay_microseconds if model.dynamic_batching else None
        delays = {None, 0, 100, 500, 2000, *([spec_delay] if spec_delay else [])}
        defaults["max_queue_delay_microseconds"] = tuple(sorted(delays, key=lambda d: -1 if d is None else d))
        defaults["max_batch_size"] = tuple(_powers(model.max_batch_size, 4))
        sizes = [size for size in _powers(min(flight, model.max_batch_size)) if size >= 2][-2:]
        defaults["preferred_batch_size"] = ((), *((size,) for size in sizes))
    return defaults


def _llm_defaults(llm: LLMSpec, flight: int, capacity: Capacity) -> dict[str, tuple[Value, ...]]:
    top = 2 ** math.ceil(math.log2(max(flight, 1)))
    defaults: dict[str, tuple[Value, ...]] = {
        "instance_count": (1, 2),
        "max_batch_size": tuple(sorted({*_powers(top), llm.max_batch_size})),
        "prefill_chunk": (64, 128, 256, 512, 1024),
    }
    if capacity.gpu is not None:
        defaults["free_gpu_memory_fraction"] = (0.3, 0.5, 0.7, 0.9)
    return defaults


def _plan_estimate(capacity: Capacity, goal: Goal) -> Optional[tuple[int, float]]:
    """``plan``'s batch size and KV fraction for this GPU and load, or None where it cannot say."""
    if capacity.gpu is None or capacity.arch is None:
        return None
    profile = engine_profile("pytorch")
    targets = Targets(concurrency=_in_flight(goal), input_tokens=capacity.input_tokens,
                      output_tokens=capacity.output_tokens)
    try:
        plan = plan_gpu(capacity.arch, capacity.gpu, targets,
                        Assumptions(step_overhead_ms=profile.fixed_ms, per_sequence_ms=profile.per_sequence_ms))
    except TritonkitError:
        return None
    return plan.max_batch_size, plan.kv_free_gpu_memory_fraction


def seed_values(model: Union[ModelSpec, LLMSpec], goal: Goal, capacity: Capacity) -> tuple[dict[str, Value], str]:
    """The candidate the search starts from (projected onto the space later), and where it came from."""
    group = model.instance_group[0] if model.instance_group else None
    values: dict[str, Value] = {"instance_count": group.count if group else 1,
                                "instance_kind": "gpu" if capacity.gpu is not None else "cpu"}
    if isinstance(model, ModelSpec):
        batching = model.dynamic_batching
        values.update(max_batch_size=model.max_batch_size,
                      max_queue_delay_microseconds=batching.max_queue_delay_microseconds if batching else None,
                      preferred_batch_size=tuple(batching.preferred_batch_size) if batching else ())
        return values, "the spec's own values"
    values.update(prefill_chunk=int(model.engine.parameters.get("prefill_chunk", 256)),
                  free_gpu_memory_fraction=model.kv_cache.free_gpu_memory_fraction,
                  max_batch_size=2 ** math.ceil(math.log2(_in_flight(goal))))
    estimate = _plan_estimate(capacity, goal)
    if estimate is None:
        return values, "the spec's values, max_batch_size to hold the requests in flight (no GPU plan here)"
    values.update(max_batch_size=estimate[0], free_gpu_memory_fraction=estimate[1])
    assert capacity.gpu is not None
    return values, f"plan's estimate for {capacity.gpu.name} (max_batch_size, KV fraction) and the spec's values"


def _smallest_holding(dimension: Dimension, needed: int) -> Optional[int]:
    holding = [v for v in dimension.values if isinstance(v, int) and v >= needed]
    return holding[0] if holding else None


def _number(candidate: Candidate, name: str) -> Optional[int]:
    value = candidate.get_or(name, None)
    return value if isinstance(value, int) else None


def _sizes(candidate: Candidate) -> tuple[int, ...]:
    value = candidate.get_or("preferred_batch_size", ())
    return value if isinstance(value, tuple) else ()


def _off(candidate: Candidate) -> bool:
    """True when the candidate turns dynamic batching off."""
    return candidate.has("max_queue_delay_microseconds") and candidate["max_queue_delay_microseconds"] is None


@dataclass(frozen=True)
class _ClassicLoad:
    """What the classic rules read: the requests in flight, the loop, the latency target, the batch cap."""

    flight: int
    closed: bool
    latency_ms: Optional[float]
    cap: Optional[int]

    def preferred(self, c: Candidate) -> Optional[str]:
        sizes, mbs = _sizes(c), _number(c, "max_batch_size")
        if sizes and _off(c):
            return "preferred batch sizes without dynamic batching change nothing"
        if mbs is not None and any(size > mbs for size in sizes):
            return "a preferred batch size is larger than max_batch_size"
        if self.closed and any(size > self.flight for size in sizes):
            return f"a preferred batch size above the {self.flight} requests in flight is never reached"
        return None

    def in_flight(self, c: Candidate) -> Optional[str]:
        mbs, count = _number(c, "max_batch_size"), _number(c, "instance_count")
        if self.closed and mbs is not None and self.cap is not None and mbs > self.cap:
            return (f"a batch never fills past the {self.flight} requests in flight: no better than max_batch_size "
                    f"{self.cap} (it waits out the queue delay instead)")
        if self.closed and count is not None and count > self.flight:
            return f"more instances than the {self.flight} requests in flight stay idle"
        return None

    def delay(self, c: Candidate) -> Optional[str]:
        wait = _number(c, "max_queue_delay_microseconds")
        if self.closed and self.flight == 1 and wait:
            return "one request in flight has no company to wait for"
        if wait is not None and self.latency_ms is not None and wait >= self.latency_ms * 1000:
            return f"a request alone waits {wait} us, past the {self.latency_ms:g} ms target"
        return None


def classic_rules(space: Space, goal: Goal) -> list[Pruner]:
    """The capacity rules of a classic model at this load."""
    flight = _in_flight(goal)
    latency_ms = min((t.bound for t in goal.targets if t.upper and t.name.endswith("_ms")), default=None)
    names = {d.name for d in space.dimensions}
    cap = _smallest_holding(space.dimension("max_batch_size"), flight) if "max_batch_size" in names else None
    load = _ClassicLoad(flight, goal.mode == "concurrency", latency_ms, cap)
    return [load.preferred, load.in_flight, load.delay]


def llm_rules(space: Space, goal: Goal, capacity: Capacity) -> list[Pruner]:
    """The capacity rules of the PyTorch engine at this load, on this GPU."""
    flight = _in_flight(goal)
    names = {d.name for d in space.dimensions}
    chunk_cap = _smallest_holding(space.dimension("prefill_chunk"), capacity.input_tokens) \
        if "prefill_chunk" in names else None
    fractions = tuple(v for v in space.dimension("free_gpu_memory_fraction").values if isinstance(v, float)) \
        if "free_gpu_memory_fraction" in names else ()

    # Not divided by the instance count: the engine's model is decoupled, its execute returns at once, so
    # Triton may hand one instance most of the requests in flight (measured: 2 instances of SmolLM2 on this
    # CPU at concurrency 4 gave 35.8 output tok/s with max_batch_size 2 and 38.7 with 4).
    cap = _smallest_holding(space.dimension("max_batch_size"), flight) if "max_batch_size" in names else None

    def batch(c: Candidate) -> Optional[str]:
        mbs = _number(c, "max_batch_size")
        if goal.mode == "concurrency" and mbs is not None and cap is not None and mbs > cap:
            return f"the engine never holds more than the {flight} requests in flight: no better than {cap}"
        return None

    def chunk(c: Candidate) -> Optional[str]:
        size = _number(c, "prefill_chunk")
        if size is not None and chunk_cap is not None and size > chunk_cap:
            return f"a {capacity.input_tokens}-token prompt prefills in one chunk, as with {chunk_cap}"
        return None

    def memory(c: Candidate) -> Optional[str]:
        return _memory_rule(c, capacity, _number(c, "instance_count") or 1, _number(c, "max_batch_size"), fractions)

    return [batch, chunk, memory]


def _memory_rule(c: Candidate, capacity: Capacity, count: int, mbs: Optional[int],
                 fractions: tuple[float, ...]) -> Optional[str]:
    """KV cache and weights against the GPU's memory (the capacity model of ``plan``).

    The engine's static KV slots take what ``max_batch_size`` whole sequences need, less only when that
    is more than the fraction allows: every fraction that fits behaves as the smallest one that fits.
    """
    gpu, arch = capacity.gpu, capacity.arch
    if gpu is None or arch is None or not isinstance(mbs, int):
        return None
    weights = weight_bytes(arch, "bf16") * count
    if weights > 0.9 * gpu.memory_bytes:
        return f"{count} copies of the weights take {weights / 1e9:.1f} GB of {gpu.memory_gb:g} GB"
    fraction = c.get_or("free_gpu_memory_fraction", None)
    if not isinstance(fraction, float):
        return None
    kv = kv_bytes_per_token(arch, "bf16") * mbs * (capacity.input_tokens + capacity.output_tokens) * count
    free = gpu.memory_bytes - weights
    if kv > fraction * free:
        return f"the KV cache of {mbs} sequences ({kv / 1e9:.2f} GB) does not fit {fraction:g} of the free memory"
    fitting = [f for f in fractions if kv <= f * free]
    if fitting and fraction > fitting[0]:
        return f"the KV cache fits {fitting[0]:g} of the free memory already: the engine takes no more"
    return None
