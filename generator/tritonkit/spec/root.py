"""The root of the spec file: target release, classic models, LLM pipelines, deployment."""

from __future__ import annotations

from tritonkit.spec.deploy import DeploySpec
from tritonkit.spec.llm import LLMSpec
from tritonkit.spec.schema import ModelSpec, StrictModel, TritonTarget

__all__ = ["Spec"]


class Spec(StrictModel):
    """The whole spec file."""

    triton: TritonTarget = TritonTarget()
    models: list[ModelSpec] = []
    llms: list[LLMSpec] = []
    deploy: DeploySpec = DeploySpec()
