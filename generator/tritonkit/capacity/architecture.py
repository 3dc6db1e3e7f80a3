"""The shape of a decoder-only transformer and the sizes that follow from it (parameters, bytes)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from tritonkit.errors import PlanError, Problem

__all__ = [
    "DTYPE_BYTES",
    "KV_DTYPES",
    "Architecture",
    "PlanError",
    "bytes_per_value",
    "kv_bytes_per_token",
    "parameter_count",
    "weight_bytes",
]

#: Bytes one weight or cache value takes at each serving dtype. int4 ignores the per-group scales
#: (about 3% more at group size 128), which the overhead margin absorbs.
DTYPE_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}

#: Dtypes a paged KV cache can be stored in (TensorRT-LLM: 16-bit, fp8 or int8).
KV_DTYPES = ("bf16", "fp16", "fp8", "int8")


@dataclass(frozen=True)
class Architecture:
    """What the planner needs to know about a model, read from its config, GGUF file or a preset.

    ``file_weight_bytes`` is the size of the weights as stored (a GGUF's tensors), when known.
    """

    name: str
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    tied_embeddings: bool = False
    attention_bias: bool = False
    max_context: Optional[int] = None
    file_weight_bytes: Optional[int] = None
    source: str = "preset"

    def __post_init__(self) -> None:
        for field_name in ("layers", "hidden_size", "heads", "kv_heads", "head_dim", "vocab_size",
                           "intermediate_size"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise PlanError(Problem(f"architecture field {field_name} must be a positive integer "
                                        f"(got {value!r})", path=self.source))
        if self.heads % self.kv_heads:
            raise PlanError(Problem(f"attention heads ({self.heads}) must be a multiple of the KV heads "
                                    f"({self.kv_heads})", path=self.source))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, with the derived parameter count."""
        data = asdict(self)
        data["parameters"] = parameter_count(self)
        return data


def bytes_per_value(dtype: str) -> float:
    """Return the bytes one value takes at ``dtype``.

    Raises:
        PlanError: the dtype is not one the planner knows.

    """
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise PlanError(Problem(f"unknown dtype {dtype!r}", path="--dtype",
                                hint=f"use one of {', '.join(DTYPE_BYTES)}")) from None


def parameter_count(arch: Architecture) -> int:
    """Count the weights of a Llama-style decoder (gated MLP, RMSNorm, optional QKV bias).

    Per layer: Q and O projections (hidden x heads*head_dim each), K and V (hidden x kv_heads*head_dim
    each), three MLP matrices (hidden x intermediate), two norms; plus the embedding, the final norm,
    and an output head unless it is tied to the embedding.
    """
    q_width = arch.heads * arch.head_dim
    kv_width = arch.kv_heads * arch.head_dim
    attention = 2 * arch.hidden_size * q_width + 2 * arch.hidden_size * kv_width
    if arch.attention_bias:
        attention += q_width + 2 * kv_width
    mlp = 3 * arch.hidden_size * arch.intermediate_size
    per_layer = attention + mlp + 2 * arch.hidden_size
    embedding = arch.vocab_size * arch.hidden_size
    head = 0 if arch.tied_embeddings else embedding
    return arch.layers * per_layer + embedding + head + arch.hidden_size


def weight_bytes(arch: Architecture, dtype: str) -> int:
    """Return the bytes of all weights served at ``dtype``."""
    return int(parameter_count(arch) * bytes_per_value(dtype))


def kv_bytes_per_token(arch: Architecture, kv_dtype: str, tensor_parallel: int = 1) -> int:
    """Return the KV-cache bytes one token takes on one GPU: 2 x layers x kv_heads x head_dim x bytes.

    With tensor parallelism each GPU keeps ``ceil(kv_heads / tp)`` heads (heads are replicated when
    tp exceeds the KV heads, as TensorRT-LLM does).
    """
    if kv_dtype not in KV_DTYPES:
        raise PlanError(Problem(f"unknown KV-cache dtype {kv_dtype!r}", path="--kv-dtype",
                                hint=f"use one of {', '.join(KV_DTYPES)}"))
    heads_per_gpu = math.ceil(arch.kv_heads / tensor_parallel)
    return int(2 * arch.layers * heads_per_gpu * arch.head_dim * bytes_per_value(kv_dtype))
