"""The typed spec: strict, frozen pydantic models whose keys reuse Triton's field names.

Blocks that mirror a Triton message one to one (``sequence_batching``, ``model_warmup``,
``optimization``) stay plain mappings here and are checked against ``model_config.proto``'s own
descriptors in ``tritonkit.model``, so the schema is never written twice.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from tritonkit.spec.deploy import BuildSpec

__all__ = [
    "DATA_TYPES",
    "DynamicBatching",
    "EnsembleStep",
    "InstanceGroup",
    "ModelSpec",
    "ParameterValue",
    "QueuePolicy",
    "ResponseCache",
    "StrictModel",
    "TensorSpec",
    "TransactionPolicy",
    "TritonTarget",
    "VersionPolicy",
    "normalize_data_type",
]


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


#: Triton's data types (``model_config.proto`` DataType) by their short name.
DATA_TYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "STRING", "BF16",
)
_DTYPE_ALIASES = {"BYTES": "STRING", "FLOAT32": "FP32", "FLOAT16": "FP16", "FLOAT64": "FP64",
                  "BFLOAT16": "BF16", "FLOAT": "FP32", "HALF": "FP16", "DOUBLE": "FP64"}

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def normalize_data_type(value: Any) -> Any:
    """Accept ``fp32``, ``FP32``, ``TYPE_FP32`` and ``BYTES``; return Triton's ``TYPE_`` name."""
    if not isinstance(value, str):
        return value
    name = value.strip().upper()
    name = name[5:] if name.startswith("TYPE_") else name
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DATA_TYPES:
        raise ValueError(f"unknown data type {value!r}; use one of {', '.join(DATA_TYPES)} (BYTES = STRING)")
    return "TYPE_" + name


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a usable model name: use letters, digits, '_', '-' and '.', "
                         "not starting with '.' or '-'")
    return value


def _check_dims(value: list[int]) -> list[int]:
    for dim in value:
        if dim == 0 or dim < -1:
            raise ValueError(f"dimension {dim} is not allowed: each dim must be >= 1, or -1 for variable size")
    return value


ModelName = Annotated[str, AfterValidator(_check_name)]
DataType = Annotated[str, BeforeValidator(normalize_data_type)]
Dims = Annotated[list[int], AfterValidator(_check_dims)]
ParameterValue = Union[bool, int, float, str]
NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]


class TensorSpec(StrictModel):
    """One input or output (``ModelInput`` / ``ModelOutput`` in model_config.proto)."""

    name: Annotated[str, Field(min_length=1)]
    data_type: DataType
    dims: Dims
    optional: bool = False
    reshape: Optional[list[int]] = None
    allow_ragged_batch: bool = False
    label_filename: Optional[str] = None


class QueuePolicy(StrictModel):
    """``ModelQueuePolicy``: how long requests may wait and how many may queue."""

    timeout_action: Literal["REJECT", "DELAY"] = "REJECT"
    default_timeout_microseconds: NonNegative = 0
    allow_timeout_override: bool = False
    max_queue_size: NonNegative = 0


class DynamicBatching(StrictModel):
    """``ModelDynamicBatching``: server-side batching of queued requests."""

    preferred_batch_size: list[Positive] = []
    max_queue_delay_microseconds: NonNegative = 0
    preserve_ordering: bool = False
    priority_levels: NonNegative = 0
    default_priority_level: NonNegative = 0
    default_queue_policy: Optional[QueuePolicy] = None
    priority_queue_policy: dict[Positive, QueuePolicy] = {}


class InstanceGroup(StrictModel):
    """``ModelInstanceGroup``: how many copies of the model run, and where."""

    kind: Literal["gpu", "cpu", "model", "auto"] = "auto"
    count: Positive = 1
    gpus: Optional[list[NonNegative]] = None
    name: Optional[str] = None

    @model_validator(mode="after")
    def _gpus_need_gpu_kind(self) -> InstanceGroup:
        if self.gpus is not None and self.kind in ("cpu", "model"):
            raise ValueError(f"gpus cannot be listed for kind {self.kind!r}; use kind: gpu, or remove gpus")
        return self


class _Latest(StrictModel):
    num_versions: Positive = 1


class _Specific(StrictModel):
    versions: Annotated[list[Positive], Field(min_length=1)]


class _All(StrictModel):
    pass


class VersionPolicy(StrictModel):
    """``ModelVersionPolicy``: exactly one of ``latest``, ``all``, ``specific``."""

    latest: Optional[_Latest] = None
    all: Optional[_All] = None
    specific: Optional[_Specific] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        chosen = [n for n in ("latest", "all", "specific") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of latest, all, specific "
                             "(e.g. {latest: {num_versions: 2}} or {specific: {versions: [1]}})")
        return self


class TransactionPolicy(StrictModel):
    """``ModelTransactionPolicy``."""

    decoupled: bool = False


class ResponseCache(StrictModel):
    """``ModelResponseCache``."""

    enable: bool = False


class EnsembleStep(StrictModel):
    """One step of an ensemble: ``input_map``/``output_map`` map the step model's tensor to an ensemble tensor."""

    model_name: ModelName
    model_version: int = -1
    input_map: dict[str, str] = {}
    output_map: dict[str, str] = {}


Backend = Literal["tensorrt", "onnxruntime", "pytorch", "python", "ensemble"]


class ModelSpec(StrictModel):
    """A classic Triton model, or an ensemble of them."""

    name: ModelName
    backend: Backend
    artifact: Optional[str] = None
    default_model_filename: Optional[str] = None
    max_batch_size: NonNegative = 0
    input: list[TensorSpec] = []
    output: list[TensorSpec] = []
    dynamic_batching: Optional[DynamicBatching] = None
    sequence_batching: Optional[dict[str, Any]] = None
    instance_group: list[InstanceGroup] = []
    model_warmup: list[dict[str, Any]] = []
    response_cache: Optional[ResponseCache] = None
    version_policy: Optional[VersionPolicy] = None
    model_transaction_policy: Optional[TransactionPolicy] = None
    parameters: dict[str, ParameterValue] = {}
    optimization: Optional[dict[str, Any]] = None
    steps: list[EnsembleStep] = []
    files: dict[str, str] = {}
    raw_config: Optional[str] = None
    build: Optional[BuildSpec] = None


_RELEASE_RE = re.compile(r"^\d{2}\.\d{2}$")


def _check_release(value: str) -> str:
    if not _RELEASE_RE.match(value):
        raise ValueError(f"{value!r} is not an NGC release; write it as yy.mm, e.g. \"25.10\" (quoted)")
    return value


class TritonTarget(StrictModel):
    """The Triton release the repository targets (picks image tags and schema checks), and how it is served.

    ``target: dynamo-triton`` says clients reach the models through Dynamo's frontend (NVIDIA's
    Dynamo-Triton) rather than Triton's own endpoints: ``validate`` then warns where Dynamo refuses or
    changes a request, as ``validate --target dynamo-triton`` does. What ``generate`` writes is the same.
    """

    version: Annotated[str, BeforeValidator(lambda v: f"{v:.2f}" if isinstance(v, float) else v),
                       AfterValidator(_check_release)] = "25.10"
    target: Literal["triton", "dynamo-triton"] = "triton"
