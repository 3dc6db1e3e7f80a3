"""Spec to Triton objects: ``ModelConfig`` messages, the files of each version folder, cross-field checks."""

from tritonkit.model.repository import build_repository, llm_model_names
from tritonkit.model.types import FileSource, ModelUnit, RepositoryModel

__all__ = ["FileSource", "ModelUnit", "RepositoryModel", "build_repository", "llm_model_names"]
