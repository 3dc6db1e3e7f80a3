"""The GPU catalogue: memory, bandwidth and dense tensor throughput of each GPU, read from JSON data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from tritonkit.capacity.architecture import PlanError
from tritonkit.errors import Problem

__all__ = ["Gpu", "find_gpu", "load_catalog"]

_NUMBERS = ("memory_gb", "bandwidth_gb_s", "tflops_16bit")


@dataclass(frozen=True)
class Gpu:
    """One GPU model. Throughputs are dense tensor-core figures; ``tflops_fp8`` is None without FP8."""

    name: str
    memory_gb: float
    bandwidth_gb_s: float
    tflops_16bit: float
    tflops_fp8: Optional[float] = None
    max_per_node: int = 8
    price_per_hour: Optional[float] = None
    source: str = ""

    @property
    def memory_bytes(self) -> float:
        """Memory in bytes (the datasheet's GB are 10^9 bytes)."""
        return self.memory_gb * 1e9

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return asdict(self)


def load_catalog(path: Optional[Path] = None) -> tuple[Gpu, ...]:
    """Return the GPUs of ``path``, or of the built-in catalogue when ``path`` is None.

    Raises:
        PlanError: the file cannot be read, or an entry lacks a field or has a nonsense value.

    """
    where = str(path) if path is not None else "gpus.json"
    try:
        text = (path.read_text(encoding="utf-8") if path is not None
                else resources.files("tritonkit.capacity").joinpath("gpus.json").read_text(encoding="utf-8"))
        data = json.loads(text)
    except OSError as exc:
        message = f"cannot read the GPU catalogue: {exc.strerror or exc}"
        raise PlanError(Problem(message, path=where)) from None
    except json.JSONDecodeError as exc:
        problem = Problem(f"not valid JSON: {exc.msg}", path=where, line=exc.lineno, col=exc.colno)
        raise PlanError(problem) from None
    entries = data.get("gpus") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise PlanError(Problem("a GPU catalogue is a JSON object with a non-empty list 'gpus'", path=where,
                                hint='e.g. {"gpus": [{"name": "X", "memory_gb": 80, "bandwidth_gb_s": 3350, '
                                     '"tflops_16bit": 989}]}'))
    return tuple(_gpu(entry, where, index) for index, entry in enumerate(entries))


def _gpu(entry: Any, where: str, index: int) -> Gpu:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise PlanError(Problem(f"gpus[{index}] must be an object with a 'name'", path=where))
    name = entry["name"]
    for key in (*_NUMBERS, "tflops_fp8", "price_per_hour", "max_per_node"):
        value = entry.get(key)
        required = key in _NUMBERS
        if value is None and not required:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            message = f"gpus[{index}] ({name}): {key} must be a positive number (got {value!r})"
            raise PlanError(Problem(message, path=where))
    known = {"name", "source", "max_per_node", *_NUMBERS, "tflops_fp8", "price_per_hour"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise PlanError(Problem(f"gpus[{index}] ({name}): unknown field(s) {', '.join(unknown)}", path=where,
                                hint=f"known fields: {', '.join(sorted(known))}"))
    return Gpu(name=name, memory_gb=float(entry["memory_gb"]), bandwidth_gb_s=float(entry["bandwidth_gb_s"]),
               tflops_16bit=float(entry["tflops_16bit"]),
               tflops_fp8=None if entry.get("tflops_fp8") is None else float(entry["tflops_fp8"]),
               max_per_node=int(entry.get("max_per_node", 8)),
               price_per_hour=None if entry.get("price_per_hour") is None else float(entry["price_per_hour"]),
               source=str(entry.get("source", "")))


def find_gpu(catalog: tuple[Gpu, ...], name: str) -> Gpu:
    """Return the GPU called ``name`` (case and punctuation ignored: ``h100``, ``H100-80GB``).

    A name that is a prefix of exactly one entry (``h200``) also matches.

    Raises:
        PlanError: no entry, or several, match.

    """
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    wanted = norm(name)
    exact = [gpu for gpu in catalog if norm(gpu.name) == wanted]
    matches = exact or [gpu for gpu in catalog if norm(gpu.name).startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(gpu.name for gpu in (matches or catalog))
    what = "is ambiguous" if matches else "is not in the GPU catalogue"
    raise PlanError(Problem(f"GPU {name!r} {what}", path="--gpu",
                            hint=f"use one of {names}, or add it with --gpu-catalog FILE"))
