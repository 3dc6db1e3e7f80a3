"""The planner's arithmetic: model memory, KV cache, decode and prefill roofs, and GPU sizing.

Pure functions over small frozen dataclasses. The only I/O is reading a model's config or GGUF file
(a Hugging Face model's config.json from the local Hugging Face cache, else downloaded from the hub:
``hub.py``) and a GPU catalogue; ``spec_edit`` edits spec text it is given, and the CLI writes it.
"""

from __future__ import annotations

from tritonkit.capacity.architecture import (
    DTYPE_BYTES,
    KV_DTYPES,
    Architecture,
    PlanError,
    kv_bytes_per_token,
    parameter_count,
    weight_bytes,
)
from tritonkit.capacity.estimate import (
    GRADES,
    Assumptions,
    GpuPlan,
    Targets,
    grade_for,
    plan_candidates,
    plan_gpu,
)
from tritonkit.capacity.gpus import Gpu, find_gpu, load_catalog
from tritonkit.capacity.presets import PRESETS, find_preset
from tritonkit.capacity.sources import architecture_from_config, architecture_from_gguf, load_architecture
from tritonkit.capacity.spec_edit import SpecChange, SpecEdit, SpecValues, edit_spec_text, spec_values

__all__ = [
    "DTYPE_BYTES",
    "GRADES",
    "KV_DTYPES",
    "PRESETS",
    "Architecture",
    "Assumptions",
    "Gpu",
    "GpuPlan",
    "PlanError",
    "SpecChange",
    "SpecEdit",
    "SpecValues",
    "Targets",
    "architecture_from_config",
    "architecture_from_gguf",
    "edit_spec_text",
    "find_gpu",
    "find_preset",
    "grade_for",
    "kv_bytes_per_token",
    "load_architecture",
    "load_catalog",
    "parameter_count",
    "plan_candidates",
    "plan_gpu",
    "spec_values",
    "weight_bytes",
]
