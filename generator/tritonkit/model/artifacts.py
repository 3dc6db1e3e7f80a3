"""Resolve the files a spec points at, and read a model's inputs and outputs from its ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import Loc
from tritonkit.model.types import FileSource
from tritonkit.spec.load import LoadedSpec
from tritonkit.spec.schema import TensorSpec
from tritonkit.triton import BACKEND_FILES

__all__ = ["collect_files", "read_onnx_io", "resolve_path"]


def resolve_path(loaded: LoadedSpec, value: str, loc: Loc, *, kind: str = "file") -> Path:
    """Resolve a path from the spec: relative paths start at the spec's folder and may not leave it.

    Raises:
        SpecError: the path escapes the spec's folder tree, or does not exist.

    """
    raw = Path(value).expanduser()
    base = loaded.base_dir
    if raw.is_absolute():
        path = raw
    else:
        path = (base / raw).resolve()
        if not path.is_relative_to(base.resolve()):
            raise SpecError(loaded.problem(
                loc, f"is {value!r}, which leaves the spec's folder",
                "move the file under the spec's folder, or give an absolute path if you mean it"))
    if not path.exists():
        raise SpecError(loaded.problem(
            loc, f"is {value!r}, but no such {kind} exists (looked for {_shown(path, base)})",
            "check the path; relative paths start at the spec file's folder"))
    return path


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)


def collect_files(source: Path, target_name: str) -> dict[str, FileSource]:
    """Files to place in a version folder: one file, or a folder copied as ``target_name/...``."""
    if source.is_file():
        return {target_name: FileSource(path=source)}
    files: dict[str, FileSource] = {}
    for item in sorted(source.rglob("*")):
        if item.is_file():
            files[f"{target_name}/{item.relative_to(source).as_posix()}"] = FileSource(path=item)
    return files


# ONNX TensorProto element types to Triton data types.
_ONNX_TYPES = {
    1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
    7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 12: "TYPE_UINT32",
    13: "TYPE_UINT64", 16: "TYPE_BF16",
}


def _onnx_tensor(value_info: object, max_batch_size: int) -> tuple[Optional[TensorSpec], Optional[str]]:
    tensor_type = value_info.type.tensor_type  # type: ignore[attr-defined]
    name = value_info.name  # type: ignore[attr-defined]
    data_type = _ONNX_TYPES.get(tensor_type.elem_type)
    if data_type is None:
        return None, f"tensor {name!r} has ONNX element type {tensor_type.elem_type}, which Triton has no type for"
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim]
    if max_batch_size > 0:
        if not dims or dims[0] != -1:
            return None, (f"tensor {name!r} has shape {dims} with a fixed first dimension, but max_batch_size > 0 "
                          "needs a variable batch dimension")
        dims = dims[1:]
    if not dims:
        dims = [1]
    return TensorSpec(name=name, data_type=data_type, dims=dims), None


def read_onnx_io(loaded: LoadedSpec, path: Path, max_batch_size: int,
                 loc: Loc) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Read inputs and outputs from an ONNX file (without loading external weight data).

    Raises:
        SpecError: the file is not ONNX, or its shapes cannot be served with this max_batch_size.

    """
    import onnx

    model_path = path / BACKEND_FILES["onnxruntime"] if path.is_dir() else path
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:
        raise SpecError(loaded.problem(loc, f"could not be read as ONNX: {exc}",
                                       "give a valid .onnx file, or list input and output by hand")) from exc
    initializers = {init.name for init in model.graph.initializer}
    problems: list[Problem] = []
    result: list[list[TensorSpec]] = [[], []]
    for slot, infos in enumerate((model.graph.input, model.graph.output)):
        for info in infos:
            if info.name in initializers:
                continue
            tensor, error = _onnx_tensor(info, max_batch_size)
            if error:
                problems.append(loaded.problem(loc, error, "export the model with a dynamic batch axis, "
                                               "or set max_batch_size: 0"))
            elif tensor is not None:
                result[slot].append(tensor)
    if problems:
        raise SpecError(problems)
    return result[0], result[1]
