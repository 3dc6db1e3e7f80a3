"""tritonkit: one spec file to a versioned Triton Inference Server model repository.

The public API mirrors the commands: ``load_spec`` and ``generate`` (``tritonkit generate``),
``validate_repository`` (``tritonkit validate``), ``Server`` (``tritonkit serve``) and the client
helpers in ``tritonkit.client``. Heavy parts are imported on first use.
"""

from __future__ import annotations

from typing import Any

from tritonkit.errors import (
    ClientError,
    DriftError,
    Problem,
    RepositoryError,
    ServerError,
    SpecError,
    TritonkitError,
    WriteConflictError,
    WriteError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "DriftError",
    "Problem",
    "RepositoryError",
    "Server",
    "ServerError",
    "SpecError",
    "TritonkitError",
    "WriteConflictError",
    "WriteError",
    "__version__",
    "generate",
    "load_spec",
    "validate_repository",
]

_LAZY = {
    "AsyncClient": ("tritonkit.runtime.aio", "AsyncClient"),
    "Client": ("tritonkit.runtime.client", "Client"),
    "Server": ("tritonkit.runtime.server", "Server"),
    "generate": ("tritonkit.write.generate", "generate"),
    "load_spec": ("tritonkit.spec.load", "load_spec"),
    "validate_repository": ("tritonkit.validate", "validate_repository"),
}


def __getattr__(name: str) -> Any:
    """Import the public API's heavier members on first use (protobuf, tritonclient, pydantic)."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'tritonkit' has no attribute {name!r}")
