"""tritonkit: one spec file to a versioned Triton Inference Server model repository."""

from __future__ import annotations

from tritonkit.errors import (
    ClientError,
    DriftError,
    Problem,
    RepositoryError,
    ServerError,
    SpecError,
    TritonkitError,
    WriteConflictError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ClientError",
    "DriftError",
    "Problem",
    "RepositoryError",
    "ServerError",
    "SpecError",
    "TritonkitError",
    "WriteConflictError",
]
