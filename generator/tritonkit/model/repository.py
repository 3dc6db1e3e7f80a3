"""The whole spec to the models of one repository, with every spec error collected in one pass."""

from __future__ import annotations

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import Loc
from tritonkit.model.checks import check_models
from tritonkit.model.classic import build_classic_unit
from tritonkit.model.deploy import build_deployment
from tritonkit.model.k8s import build_kubernetes_plan
from tritonkit.model.types import ModelUnit, RepositoryModel
from tritonkit.spec.load import LoadedSpec

__all__ = ["LLM_MODEL_SUFFIXES", "build_repository", "llm_model_names"]

#: The models one ``llms:`` entry can become, by suffix of its name ("" is the ensemble, or the Python front
#: of a streaming engine; ``_engine_unary`` is that front's name in repositories of earlier versions).
LLM_MODEL_SUFFIXES = ("", "_preprocessing", "_engine", "_engine_unary", "_postprocessing", "_bls")


def llm_model_names(name: str) -> list[str]:
    """The model names generated for the LLM called ``name``."""
    return [name + suffix for suffix in LLM_MODEL_SUFFIXES]


def _generated_names(loaded: LoadedSpec) -> tuple[dict[str, Loc], list[Problem]]:
    names: dict[str, Loc] = {}
    problems: list[Problem] = []
    for index, llm in enumerate(loaded.spec.llms):
        for name in llm_model_names(llm.name):
            if name in names:
                problems.append(loaded.problem(("llms", index, "name"), f"makes model {name!r} twice",
                                               "give every llms entry a unique name", model=name))
            names[name] = ("llms", index)
    return names, problems


def _build_units(loaded: LoadedSpec) -> tuple[list[ModelUnit], list[Problem]]:
    units: list[ModelUnit] = []
    problems: list[Problem] = []
    for index in range(len(loaded.spec.models)):
        try:
            units.append(build_classic_unit(loaded, index))
        except SpecError as exc:
            problems += exc.problems
    if loaded.spec.llms:
        from tritonkit.model.llm import build_llm_units

        for index in range(len(loaded.spec.llms)):
            try:
                units.extend(build_llm_units(loaded, index))
            except SpecError as exc:
                problems += exc.problems
    return units, problems


def build_repository(loaded: LoadedSpec) -> RepositoryModel:
    """Build every model the spec describes.

    Raises:
        SpecError: every problem found in the spec, sorted by line.

    """
    generated, problems = _generated_names(loaded)
    problems += check_models(loaded, generated)
    units, build_problems = _build_units(loaded)
    problems += build_problems
    if problems:
        raise SpecError(problems)
    deployment = build_deployment(loaded, units)
    return RepositoryModel(units=tuple(units), triton_version=loaded.spec.triton.version, deployment=deployment,
                           kubernetes=build_kubernetes_plan(loaded, units, deployment))
