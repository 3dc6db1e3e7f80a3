"""What a served model expects, as its metadata says: tensor names, datatypes, shapes, and numpy types.

Shared by the client helpers (``tritonkit.runtime``) and the load tester (``tritonkit.bench``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NUMPY_DTYPES", "TensorInfo"]

#: Triton's wire datatypes and the numpy type that carries each (BYTES travels as ``object``; BF16 has none).
NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


@dataclass(frozen=True)
class TensorInfo:
    """One input or output as the server describes it (``shape`` holds -1 for variable dims, batch included)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False

    def describe(self) -> str:
        """``NAME DATATYPE [d0, d1]``, as an error message shows it."""
        return f"{self.name} {self.datatype} [{', '.join(str(d) for d in self.shape)}]"
