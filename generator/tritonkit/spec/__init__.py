"""YAML spec to typed, frozen models, with the line and column of every key."""

from tritonkit.spec.document import Document
from tritonkit.spec.llm import EngineSpec, KVCacheSpec, LLMSpec
from tritonkit.spec.load import LoadedSpec, load_spec
from tritonkit.spec.root import Spec
from tritonkit.spec.schema import InstanceGroup, ModelSpec, TensorSpec

__all__ = [
    "Document",
    "EngineSpec",
    "InstanceGroup",
    "KVCacheSpec",
    "LLMSpec",
    "LoadedSpec",
    "ModelSpec",
    "Spec",
    "TensorSpec",
    "load_spec",
]
