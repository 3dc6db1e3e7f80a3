"""Cross-field checks of the spec that pydantic cannot see, located at the spec line that causes them."""

from __future__ import annotations

import math

from tritonkit.errors import Problem
from tritonkit.spec.document import Loc
from tritonkit.spec.load import LoadedSpec, suggest
from tritonkit.spec.schema import DynamicBatching, ModelSpec, TensorSpec

__all__ = ["check_models"]

_NOT_FOR_ENSEMBLES = ("artifact", "instance_group", "model_warmup", "dynamic_batching", "sequence_batching",
                      "optimization")


def _batching_problems(loaded: LoadedSpec, model: ModelSpec, loc: Loc) -> list[Problem]:
    batching: DynamicBatching | None = model.dynamic_batching
    if batching is None:
        return []
    at = (*loc, "dynamic_batching")
    problems: list[Problem] = []
    if model.max_batch_size == 0:
        problems.append(loaded.problem(at, "needs max_batch_size > 0 (the model does not batch)",
                                       "set max_batch_size, or remove dynamic_batching", model=model.name))
    for i, size in enumerate(batching.preferred_batch_size):
        if size > model.max_batch_size > 0:
            problems.append(loaded.problem((*at, "preferred_batch_size", i),
                                           f"is {size}, larger than max_batch_size {model.max_batch_size}",
                                           "use sizes <= max_batch_size", model=model.name))
    levels = batching.priority_levels
    if levels and not 1 <= batching.default_priority_level <= levels:
        problems.append(loaded.problem((*at, "default_priority_level"),
                                       f"must be between 1 and priority_levels ({levels})",
                                       "set default_priority_level in that range", model=model.name))
    for level in batching.priority_queue_policy:
        if not 1 <= level <= levels:
            problems.append(loaded.problem((*at, "priority_queue_policy", level),
                                           f"names level {level}, outside 1..priority_levels ({levels})",
                                           "use a level that exists, or raise priority_levels", at_key=True,
                                           model=model.name))
    if batching.preserve_ordering and levels > 1:
        problems.append(loaded.problem((*at, "preserve_ordering"),
                                       "cannot be used with more than one priority level",
                                       "set priority_levels to 0 or 1, or preserve_ordering to false",
                                       model=model.name))
    return problems


def _reshape_problems(loaded: LoadedSpec, model: ModelSpec, loc: Loc) -> list[Problem]:
    problems: list[Problem] = []
    for slot in ("input", "output"):
        tensors: list[TensorSpec] = getattr(model, slot)
        for i, tensor in enumerate(tensors):
            if tensor.reshape is None or -1 in tensor.dims or -1 in tensor.reshape:
                continue
            if math.prod(tensor.dims) != math.prod(tensor.reshape or [1]):
                problems.append(loaded.problem(
                    (*loc, slot, i, "reshape"),
                    f"has {math.prod(tensor.reshape or [1])} elements but dims {tensor.dims} have "
                    f"{math.prod(tensor.dims)}", "make the element counts equal", model=model.name))
    return problems


def _kind_problems(loaded: LoadedSpec, model: ModelSpec, loc: Loc, names: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    if model.backend == "ensemble":
        for key in _NOT_FOR_ENSEMBLES:
            if getattr(model, key) not in (None, [], {}):
                problems.append(loaded.problem((*loc, key), "cannot be set on an ensemble",
                                               "remove it; each step model carries its own", at_key=True,
                                               model=model.name))
        if not model.steps:
            problems.append(loaded.problem(loc, "is an ensemble without steps",
                                           "add `steps:` with model_name, input_map and output_map",
                                           model=model.name))
        for i, step in enumerate(model.steps):
            if step.model_name not in names:
                close = suggest(step.model_name, names)
                problems.append(loaded.problem(
                    (*loc, "steps", i, "model_name"), f"names {step.model_name!r}, which the spec does not define",
                    f"did you mean {close!r}?" if close else "add that model to the spec", model=model.name))
    elif model.artifact is None:
        problems.append(loaded.problem(loc, f"has backend {model.backend} but no artifact",
                                       "add `artifact:` pointing at the model file", model=model.name))
    if model.backend in ("python", "ensemble") and (not model.input or not model.output):
        problems.append(loaded.problem(loc, f"must list its input and output (backend {model.backend})",
                                       "add `input:` and `output:` entries with name, data_type and dims",
                                       model=model.name))
    return problems


def _cache_problems(loaded: LoadedSpec, model: ModelSpec, loc: Loc) -> list[Problem]:
    if not (model.response_cache and model.response_cache.enable):
        return []
    decoupled = model.model_transaction_policy is not None and model.model_transaction_policy.decoupled
    if decoupled or model.sequence_batching is not None:
        why = "decoupled models" if decoupled else "sequence batching"
        return [loaded.problem((*loc, "response_cache"), f"cannot be enabled with {why}",
                               "disable response_cache for this model", model=model.name)]
    return []


def check_models(loaded: LoadedSpec, generated_names: dict[str, Loc]) -> list[Problem]:
    """Check every ``models:`` entry; ``generated_names`` are model names the ``llms:`` entries produce."""
    problems: list[Problem] = []
    seen: dict[str, Loc] = dict(generated_names)
    names = set(generated_names) | {m.name for m in loaded.spec.models}
    for index, model in enumerate(loaded.spec.models):
        loc: Loc = ("models", index)
        if model.name in seen:
            problems.append(loaded.problem((*loc, "name"), f"repeats the model name {model.name!r}",
                                           "give every model (and every llms entry's models) a unique name",
                                           model=model.name))
        seen[model.name] = loc
        problems += _kind_problems(loaded, model, loc, names)
        problems += _batching_problems(loaded, model, loc)
        problems += _reshape_problems(loaded, model, loc)
        problems += _cache_problems(loaded, model, loc)
    return problems
