"""The spec's own rules, which Triton does not have, located at the spec key that breaks them.

Triton's load-time rules are not here: they live once in :mod:`tritonkit.validate`, which runs
over the rendered repository, and the pipeline maps each problem back to its spec key.
What stays is what only a spec can say: names that repeat, an artifact to copy, tensors a
Python model must list, and what the ``ModelConfig`` message cannot even hold (a scheduler
beside an ensemble's steps).
"""

from __future__ import annotations

from tritonkit.errors import Problem
from tritonkit.locations import Loc
from tritonkit.spec.load import LoadedSpec
from tritonkit.spec.schema import ModelSpec

__all__ = ["check_models"]

#: Spec keys an ensemble cannot have: no file to copy, and one scheduler (its steps) per ModelConfig.
_NOT_FOR_ENSEMBLES = ("artifact", "dynamic_batching", "sequence_batching")


def _batching_problems(loaded: LoadedSpec, model: ModelSpec, loc: Loc) -> list[Problem]:
    # Triton loads this and never batches (validate warns); a spec asking for it has a mistake in it.
    if model.dynamic_batching is None or model.max_batch_size != 0:
        return []
    return [loaded.problem((*loc, "dynamic_batching"), "needs max_batch_size > 0 (the model does not batch)",
                           "set max_batch_size, or remove dynamic_batching", at_key=True, model=model.name)]


def _kind_problems(loaded: LoadedSpec, model: ModelSpec, loc: Loc) -> list[Problem]:
    problems: list[Problem] = []
    if model.backend == "ensemble":
        for key in _NOT_FOR_ENSEMBLES:
            if getattr(model, key) not in (None, [], {}):
                problems.append(loaded.problem((*loc, key), "cannot be set on an ensemble",
                                               "remove it; each step model carries its own", at_key=True,
                                               model=model.name))
    elif model.artifact is None:
        problems.append(loaded.problem(loc, f"has backend {model.backend} but no artifact",
                                       "add `artifact:` pointing at the model file", model=model.name))
    if model.backend in ("python", "ensemble") and (not model.input or not model.output):
        problems.append(loaded.problem(loc, f"must list its input and output (backend {model.backend})",
                                       "add `input:` and `output:` entries with name, data_type and dims",
                                       model=model.name))
    return problems


def check_models(loaded: LoadedSpec, generated_names: dict[str, Loc]) -> list[Problem]:
    """Check every ``models:`` entry; ``generated_names`` are model names the ``llms:`` entries produce."""
    problems: list[Problem] = []
    seen: dict[str, Loc] = dict(generated_names)
    for index, model in enumerate(loaded.spec.models):
        loc: Loc = ("models", index)
        if model.name in seen:
            problems.append(loaded.problem((*loc, "name"), f"repeats the model name {model.name!r}",
                                           "give every model (and every llms entry's models) a unique name",
                                           model=model.name))
        seen[model.name] = loc
        problems += _kind_problems(loaded, model, loc)
        problems += _batching_problems(loaded, model, loc)
    return problems
