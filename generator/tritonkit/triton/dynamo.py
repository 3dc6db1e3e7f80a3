"""Where serving a repository through Dynamo's front door differs from Triton's own endpoints, as Dynamo says it.

NVIDIA now ships Triton as Dynamo-Triton: the ``dynamo.triton`` worker runs tritonserver in process,
registers every model of the repository as a tensor model, and Dynamo's frontend takes the requests over
KServe gRPC. Each fact here keeps the documentation's own words and the public page they are on;
``validate --target dynamo-triton`` turns them into warnings and notes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DYNAMO_TRITON",
    "FRONT_DOOR",
    "HALF_PRECISION",
    "HALF_PRECISION_TYPES",
    "MODEL_VERSION",
    "ROUND_ROBIN",
    "SHARED_MEMORY",
    "TARGETS",
    "WORKER_SOURCE",
    "Limitation",
]

#: The serving targets ``validate`` knows: Triton's own endpoints, or Dynamo's frontend in front of Triton.
TARGETS = ("triton", "dynamo-triton")
DYNAMO_TRITON = "dynamo-triton"

_GUIDE = "https://docs.nvidia.com/dynamo/dev/knowledge-base/modular-components/backends/triton/overview"
_GUIDE_SOURCE = "https://github.com/ai-dynamo/dynamo/blob/main/docs/backends/triton/README.md"
#: The worker refuses half-precision inputs itself ("Dynamo's tensor protocol currently lacks Float16 / BFloat16
#: variants"), and a BF16 output has no Dynamo type at all (``TRITON_TO_DYNAMO_DTYPE`` in ``util.py``).
WORKER_SOURCE = "https://github.com/ai-dynamo/dynamo/blob/main/components/src/dynamo/triton/handlers.py"


@dataclass(frozen=True)
class Limitation:
    """One documented difference: its name in Dynamo's guide, the guide's own words, and where they are."""

    name: str
    words: str
    source: str


#: The DataType names (model_config.proto) that Dynamo's tensor protocol cannot carry.
HALF_PRECISION_TYPES = frozenset({"TYPE_FP16", "TYPE_BF16"})

HALF_PRECISION = Limitation(
    "FP16 / BFloat16 tensors",
    "Requests with half-precision input/output tensors are rejected (unknown variant 'Float16' / Invalid data "
    "type). The Dynamo tensor DataType enum has no Float16/BFloat16 variant.",
    _GUIDE)

ROUND_ROBIN = Limitation(
    "Routing: Round-Robin only",
    "KV-aware routing is LLM-oriented; tensor models use round-robin",
    _GUIDE)

MODEL_VERSION = Limitation(
    "Model version selection",
    "Dynamo routes by model name only (triton.tritonserver.<model_name>) with no version concept, so "
    "version-specific requests are served by the model's default version.",
    _GUIDE_SOURCE)

SHARED_MEMORY = Limitation(
    "Shared-memory tensor I/O",
    "System / CUDA shared-memory inputs and outputs are unsupported — the frontend does not expose the KServe "
    "shared-memory region control RPCs. Send tensors inline.",
    _GUIDE_SOURCE)

FRONT_DOOR = Limitation(
    "KServe gRPC front door",
    "Tensor models use the KServe gRPC protocol, so requests go through the bundled gRPC client rather than `curl`.",
    _GUIDE_SOURCE)
