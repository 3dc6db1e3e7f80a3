"""The spec entry ``tune`` works on: finding it, putting a candidate into it, and the keys written back.

A candidate changes the typed spec in memory (frozen pydantic models, copied with the new values), so
every candidate goes through the same pipeline as ``generate``. The winner is written back into the
spec's text as key paths, so comments and layout stay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

from tritonkit.errors import Problem, TuneError
from tritonkit.spec.llm import LLMSpec
from tritonkit.spec.load import LoadedSpec
from tritonkit.spec.schema import DynamicBatching, InstanceGroup, ModelSpec
from tritonkit.tune.space import CLASSIC_DIMENSIONS, LLM_DIMENSIONS, Candidate

__all__ = ["Entry", "apply_candidate", "find_entry", "spec_settings"]

Setting = tuple[tuple[Union[str, int], ...], Optional[str]]


@dataclass(frozen=True)
class Entry:
    """One ``models:`` or ``llms:`` entry: where it is, and the Triton model whose config ``tune`` loads."""

    section: str
    index: int
    name: str

    @property
    def llm(self) -> bool:
        """True for an ``llms:`` entry."""
        return self.section == "llms"

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The settings ``tune`` may search for this kind of entry."""
        return LLM_DIMENSIONS if self.llm else CLASSIC_DIMENSIONS

    def spec_of(self, loaded: LoadedSpec) -> Union[ModelSpec, LLMSpec]:
        """The entry's typed spec."""
        entries: list[Union[ModelSpec, LLMSpec]] = list(loaded.spec.llms if self.llm else loaded.spec.models)
        return entries[self.index]


def _tunable(loaded: LoadedSpec) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for index, model in enumerate(loaded.spec.models):
        if model.backend != "ensemble" and model.sequence_batching is None:
            found[model.name] = Entry("models", index, model.name)
    for index, llm in enumerate(loaded.spec.llms):
        if llm.engine.kind == "pytorch" and llm.resolved_layout == "llmapi":
            found[llm.name] = Entry("llms", index, llm.name)
    return found


def find_entry(loaded: LoadedSpec, name: Optional[str]) -> Entry:
    """The entry ``--model`` names, or the spec's only tunable one.

    Raises:
        TuneError: no entry has that name, the entry is not one tune searches (an ensemble, a sequence
            batcher, an LLM other than the PyTorch engine in the LLM-API layout), or several could be meant.

    """
    tunable = _tunable(loaded)
    names = ", ".join(sorted(tunable)) or "none"
    if name is None:
        if len(tunable) == 1:
            return next(iter(tunable.values()))
        raise TuneError(Problem(f"the spec has {len(tunable)} models tune can search", path="--model",
                                hint=f"pass --model with one of: {names}"))
    if name in tunable:
        return tunable[name]
    known = {m.name for m in loaded.spec.models} | {llm.name for llm in loaded.spec.llms}
    why = ("is not one tune searches: it tunes classic models without a sequence batcher and the PyTorch "
           "engine's LLMs in the LLM-API layout" if name in known else "names no entry of the spec")
    raise TuneError(Problem(f"{name!r} {why}", path="--model", hint=f"tunable models: {names}"))


def _groups(groups: list[InstanceGroup], candidate: Candidate, default_kind: str) -> list[InstanceGroup]:
    base = groups[0] if groups else InstanceGroup(kind=default_kind)  # type: ignore[arg-type]
    update: dict[str, object] = {}
    if candidate.has("instance_count"):
        update["count"] = candidate["instance_count"]
    if candidate.has("instance_kind"):
        update["kind"] = candidate["instance_kind"]
        if candidate["instance_kind"] == "cpu":
            update["gpus"] = None
    return [base.model_copy(update=update)] if update else groups


def _apply_classic(model: ModelSpec, candidate: Candidate) -> ModelSpec:
    update: dict[str, object] = {}
    if candidate.has("max_batch_size"):
        update["max_batch_size"] = candidate["max_batch_size"]
    batching: Optional[DynamicBatching] = model.dynamic_batching
    if candidate.has("max_queue_delay_microseconds"):
        delay = candidate["max_queue_delay_microseconds"]
        batching = None if delay is None else (batching or DynamicBatching()).model_copy(
            update={"max_queue_delay_microseconds": delay})
    sizes = candidate.get_or("preferred_batch_size", None)
    if isinstance(sizes, tuple) and batching is not None:
        batching = batching.model_copy(update={"preferred_batch_size": list(sizes)})
    update["dynamic_batching"] = batching
    update["instance_group"] = _groups(model.instance_group, candidate, "auto")
    return model.model_copy(update=update)


def _apply_llm(llm: LLMSpec, candidate: Candidate) -> LLMSpec:
    update: dict[str, object] = {"instance_group": _groups(llm.instance_group, candidate, "auto")}
    if candidate.has("max_batch_size"):
        update["max_batch_size"] = candidate["max_batch_size"]
    if candidate.has("prefill_chunk"):
        parameters = {**llm.engine.parameters, "prefill_chunk": candidate["prefill_chunk"]}
        update["engine"] = llm.engine.model_copy(update={"parameters": parameters})
    if candidate.has("free_gpu_memory_fraction"):
        update["kv_cache"] = llm.kv_cache.model_copy(
            update={"free_gpu_memory_fraction": candidate["free_gpu_memory_fraction"]})
    return llm.model_copy(update=update)


def apply_candidate(loaded: LoadedSpec, entry: Entry, candidate: Candidate) -> LoadedSpec:
    """The loaded spec with ``candidate`` put into ``entry`` (the document, for locations, stays the same)."""
    spec = loaded.spec
    if entry.llm:
        llms = list(spec.llms)
        llms[entry.index] = _apply_llm(llms[entry.index], candidate)
        return replace(loaded, spec=spec.model_copy(update={"llms": llms}))
    models = list(spec.models)
    models[entry.index] = _apply_classic(models[entry.index], candidate)
    return replace(loaded, spec=spec.model_copy(update={"models": models}))


def _yaml(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def spec_settings(entry: Entry, candidate: Candidate) -> list[Setting]:
    """The key paths (inside the entry) and YAML values that put ``candidate`` into the spec's text."""
    places: dict[str, tuple[Union[str, int], ...]] = {
        "max_batch_size": ("max_batch_size",), "instance_count": ("instance_group", 0, "count"),
        "instance_kind": ("instance_group", 0, "kind"), "prefill_chunk": ("engine", "parameters", "prefill_chunk"),
        "free_gpu_memory_fraction": ("kv_cache", "free_gpu_memory_fraction")}
    settings: list[Setting] = [(places[name], _yaml(value)) for name, value in candidate.items if name in places]
    if candidate.has("max_queue_delay_microseconds") and candidate["max_queue_delay_microseconds"] is None:
        return [*settings, (("dynamic_batching",), None)]
    if candidate.has("max_queue_delay_microseconds"):
        settings.append((("dynamic_batching", "max_queue_delay_microseconds"),
                         _yaml(candidate["max_queue_delay_microseconds"])))
    if candidate.has("preferred_batch_size"):
        sizes = candidate["preferred_batch_size"]
        settings.append((("dynamic_batching", "preferred_batch_size"), _yaml(sizes) if sizes else None))
    return settings
