"""Triton's own facts, written once: backends and their files, version policies, and the config.pbtxt reader.

Everything exported here is what Triton's core decides (``constants.h``, ``model_config_utils.cc``,
``model_lifecycle.cc``), not tritonkit's choices; every other layer reads it from here. NVIDIA's facts
have their own modules: the NGC release matrix (``releases``), the LLM-API model's interface (``llmapi``)
the ensemble layout's tensor contract (``inflight_batcher``) and where Dynamo's front door differs from
Triton's own (``dynamo``), each marking the few additions that are tritonkit's.
"""

from __future__ import annotations

from tritonkit.triton.backends import (
    BACKEND_FILES,
    BACKEND_PLATFORMS,
    ENSEMBLE,
    FILE_BACKENDS,
    NGC_BACKENDS,
    PLATFORM_BACKENDS,
    PLATFORM_FILES,
    default_model_file,
)
from tritonkit.triton.config import parse_config
from tritonkit.triton.versions import loaded_versions

__all__ = [
    "BACKEND_FILES",
    "BACKEND_PLATFORMS",
    "ENSEMBLE",
    "FILE_BACKENDS",
    "NGC_BACKENDS",
    "PLATFORM_BACKENDS",
    "PLATFORM_FILES",
    "default_model_file",
    "loaded_versions",
    "parse_config",
]
