"""Request inputs for classic models: generated from the model's metadata or read from a JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from tritonkit.bench.options import BenchError
from tritonkit.errors import Problem
from tritonkit.served import NUMPY_DTYPES, TensorInfo

__all__ = [
    "ModelInfo",
    "Payload",
    "TensorInfo",
    "generate_payloads",
    "load_payloads",
    "numpy_dtype",
    "optional_input",
]

#: One request's inputs: tensor name -> array with the batch dimension already in place.
Payload = dict[str, "npt.NDArray[Any]"]

@dataclass(frozen=True)
class ModelInfo:
    """What bench needs to know about the model under test, read from the server."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch_size: int = 0
    decoupled: bool = False

    @property
    def is_llm(self) -> bool:
        """True when the model speaks the LLM pipeline contract (``text_input`` in, text out)."""
        return "text_input" in {t.name for t in self.inputs}


def numpy_dtype(datatype: str) -> Any:
    """Return the numpy type of a Triton datatype name such as ``FP32`` or ``BYTES``.

    Raises:
        BenchError: the datatype is not one bench can generate.

    """
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        raise BenchError(Problem(f"input datatype {datatype} is not supported by bench",
                                 hint="pass --input-data with values for it")) from None


def _concrete_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    # Variable dimensions (-1), the batch dimension included, become 1: one small request.
    return tuple(1 if d < 0 else d for d in shape)


def _random_tensor(info: TensorInfo, rng: np.random.Generator) -> npt.NDArray[Any]:
    shape = _concrete_shape(info.shape)
    dtype = numpy_dtype(info.datatype)
    if info.datatype == "BYTES":
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words = ["".join(rng.choice(letters, 8)).encode() for _ in range(int(np.prod(shape)))]
        return np.array(words, dtype=np.object_).reshape(shape)
    if info.datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if info.datatype.startswith("FP"):
        return rng.standard_normal(size=shape).astype(dtype)
    return rng.integers(0, 100, size=shape).astype(dtype)


def generate_payloads(model: ModelInfo, count: int = 16, seed: int = 0) -> list[Payload]:
    """Return ``count`` distinct random payloads shaped and typed as the model's inputs say."""
    rng = np.random.default_rng(seed)
    return [{t.name: _random_tensor(t, rng) for t in model.inputs} for _ in range(count)]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchError(Problem(f"cannot read input data: {exc.strerror}", path=str(path))) from None
    except json.JSONDecodeError as exc:
        raise BenchError(Problem(f"input data is not valid JSON: {exc.msg}", path=str(path),
                                 line=exc.lineno, col=exc.colno)) from None


def _entry_array(info: TensorInfo, value: Any, path: Path) -> npt.NDArray[Any]:
    content, shape = value, None
    if isinstance(value, dict):
        content, shape = value.get("content"), value.get("shape")
    if info.datatype == "BYTES":
        values = np.ravel(np.array(content, dtype=object))
        array = np.array([str(v).encode() for v in values], dtype=np.object_)
    else:
        array = np.asarray(content, dtype=numpy_dtype(info.datatype))
    target = tuple(shape) if shape else _concrete_shape(info.shape)
    if shape and len(target) == len(info.shape) - 1:  # the file gave the shape without the batch dimension
        target = (1, *target)
    if array.size != int(np.prod(target)):
        raise BenchError(Problem(f"input {info.name} has {array.size} values but shape {list(target)} needs "
                                 f"{int(np.prod(target))}", path=str(path),
                                 hint="give the values as {\"content\": [...], \"shape\": [...]}"))
    return array.reshape(target)


def load_payloads(model: ModelInfo, path: Path) -> list[Payload]:
    """Read payloads from a JSON file: ``{"data": [{NAME: values}, ...]}``, a list, or one object.

    Values are a (nested) list or ``{"content": [...], "shape": [...]}`` as perf_analyzer reads them.

    Raises:
        BenchError: the file is unreadable, names an unknown input, or lacks a required one.

    """
    document = _read_json(path)
    entries = document.get("data", document) if isinstance(document, dict) else document
    entries = [entries] if isinstance(entries, dict) else entries
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise BenchError(Problem("input data must hold at least one object of input values", path=str(path)))
    known = {t.name: t for t in model.inputs}
    payloads: list[Payload] = []
    for entry in entries:
        unknown = sorted(set(entry) - set(known))
        missing = sorted(t.name for t in model.inputs if t.name not in entry and not t.optional)
        if unknown or missing:
            raise BenchError(Problem(f"input data does not match model {model.name}: unknown {unknown}, "
                                     f"missing {missing}", path=str(path),
                                     hint=f"the model's inputs are {sorted(known)}"))
        payloads.append({name: _entry_array(known[name], value, path) for name, value in entry.items()})
    return payloads


def optional_input(model: ModelInfo, name: str) -> Optional[TensorInfo]:
    """Return the model's input called ``name``, if it has one."""
    return next((t for t in model.inputs if t.name == name), None)
