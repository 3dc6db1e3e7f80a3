"""Rules for one input or output tensor: name, data type, dims, reshape, format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from tritonkit.triton import BACKEND_PLATFORMS

__all__ = ["element_segments", "tensor_problems"]

_TENSORRT_PLATFORM = BACKEND_PLATFORMS["tensorrt"]

_Found = tuple[Optional[str], str, str]
_DIMS_HINT = "each dimension is an integer >= 1, or -1 for a variable size"


def element_segments(shape: Sequence[int]) -> list[int]:
    """Return the element counts of the runs of fixed dims between -1 entries."""
    segments, count = [], 1
    for dim in shape:
        if dim == -1:
            segments.append(count)
            count = 1
        else:
            count *= dim
    segments.append(count)
    return segments


def tensor_problems(kind: str, tensor: Any, config: Any) -> list[_Found]:
    """Return (field, message, hint) for each rule ``tensor`` breaks, as Triton checks them in order."""
    if not tensor.name:
        return [(None, "must specify 'name'", f"give the {kind} a name")]
    name = f"'{tensor.name}'"
    if tensor.data_type == 0:
        return [(None, f"{name} must specify 'data_type'", "set data_type, e.g. TYPE_FP32")]
    if not tensor.dims:
        return [(None, f"{name} must specify 'dims'",
                 "use dims: [ 1 ] with reshape: { shape: [ ] } for a scalar per batch item")]
    found: list[_Found] = []
    if tensor.HasField("reshape") and not tensor.reshape.shape and config.max_batch_size == 0:
        found.append(("reshape", f"{name} cannot have empty reshape for non-batching model as scalar "
                                 "tensors are not supported", "give reshape a shape, or batch the model"))
    if any(dim < 1 and dim != -1 for dim in tensor.dims):
        found.append(("dims", f"{name} dimension must be integer >= 1, or -1 to indicate a "
                              f"variable-size dimension (got {list(tensor.dims)})", _DIMS_HINT))
    elif tensor.HasField("reshape"):
        found.extend(_reshape_problems(name, list(tensor.dims), list(tensor.reshape.shape)))
    found.extend(_format_problems(kind, name, tensor, config.platform))
    return found


def _reshape_problems(name: str, dims: list[int], shape: list[int]) -> list[_Found]:
    if any(dim < 1 and dim != -1 for dim in shape):
        return [("reshape", f"{name} reshape dimensions must be integer >= 1, or -1 to indicate a "
                            f"variable-size dimension (got {shape})", _DIMS_HINT)]
    hint = f"dims {dims} and reshape {shape} must hold the same number of elements"
    if not shape:
        if -1 in dims or _product(dims) != 1:
            return [("reshape", f"{name} has different size for dims and reshape", hint)]
        return []
    if (-1 in dims) != (-1 in shape):
        return [("reshape", f"{name} has different size for dims and reshape", hint)]
    if -1 not in dims:
        if _product(dims) != _product(shape):
            return [("reshape", f"{name} has different size for dims and reshape", hint)]
        return []
    dim_segments, shape_segments = element_segments(dims), element_segments(shape)
    if len(dim_segments) != len(shape_segments):
        return [("reshape", f"{name} has different number of variable-size dimensions for dims and "
                            "reshape", hint)]
    if dim_segments != shape_segments:
        return [("reshape", f"{name} has different size for dims and reshape", hint)]
    return []


def _format_problems(kind: str, name: str, tensor: Any, platform: str) -> list[_Found]:
    found: list[_Found] = []
    if kind == "input" and tensor.format in (1, 2) and len(tensor.dims) != 3:
        found.append(("format", f"{name}: NHWC/NCHW require 3 dims", "give 3 dims, or FORMAT_NONE"))
    if tensor.is_shape_tensor and platform != _TENSORRT_PLATFORM:
        found.append(("is_shape_tensor", f"{name}: shape tensors are only supported for TensorRT "
                                          "platform", "remove is_shape_tensor"))
    if tensor.is_non_linear_format_io and platform != _TENSORRT_PLATFORM:
        found.append(("is_non_linear_format_io", f"{name}: Non-linear IO format is only supported for "
                                                  "the TensorRT platform",
                      "remove is_non_linear_format_io"))
    return found


def _product(values: Sequence[int]) -> int:
    result = 1
    for value in values:
        result *= value
    return result


def batch_io_problems(config: Any) -> list[tuple[str, int, str, str]]:
    """Return (field, index, message, hint) for batch_input / batch_output entries Triton refuses.

    Triton's ``ValidateBatchIO`` (model_config_utils.cc) stops at the first; so does this.
    """
    from tritonclient.grpc import model_config_pb2 as pb

    inputs = {t.name for t in config.input}
    outputs = {t.name for t in config.output}
    for index, item in enumerate(config.batch_input):
        kind = pb.BatchInput.Kind.Name(item.kind)
        found = _sources_problem("batch input", kind, item, inputs)
        if found is None and item.data_type not in (pb.TYPE_INT32, pb.TYPE_FP32):
            found = ("batch input data type must be TYPE_INT32 or TYPE_FP32", "use TYPE_INT32 or TYPE_FP32")
        if found is not None:
            return [("batch_input", index, *found)]
    for index, item in enumerate(config.batch_output):
        kind = pb.BatchOutput.Kind.Name(item.kind)
        found = _sources_problem("batch output", kind, item, inputs) or _targets_problem(item, outputs)
        if found is not None:
            return [("batch_output", index, *found)]
    return []


def _sources_problem(what: str, kind: str, item: Any, inputs: set[str]) -> Optional[tuple[str, str]]:
    if len(item.source_input) != 1:
        return (f"{what} kind '{kind}' expects 1 source input, got {len(item.source_input)}",
                "name exactly one source_input")
    for source in item.source_input:
        if source not in inputs:
            return (f"unknown source input name '{source}'",
                    f"source_input must be one of the inputs: {', '.join(sorted(inputs)) or 'none'}")
    return None


def _targets_problem(item: Any, outputs: set[str]) -> Optional[tuple[str, str]]:
    seen: set[str] = set()
    for target in item.target_name:
        if target not in outputs:
            return (f"unknown target output name '{target}'",
                    f"target_name must be one of the outputs: {', '.join(sorted(outputs)) or 'none'}")
        if target in seen:
            return f"target output name '{target}' can only be specified once", "name each target output once"
        seen.add(target)
    return None
