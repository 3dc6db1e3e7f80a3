"""Rules for ONNX Runtime models: the declared inputs and outputs against the ONNX file, in every loaded version.

These are the ONNX Runtime backend's load-time checks (onnxruntime_backend ``src/onnxruntime.cc``
``ValidateInputs``/``ValidateOutputs`` and ``onnxruntime_utils.cc`` ``CompareDimsSupported``), run on
the graph's declared inputs and outputs without starting a session. A config without inputs and
outputs is left alone: the backend's auto-complete fills them from the file.
"""

from __future__ import annotations

from typing import Any, Optional

from tritonkit.errors import Problem
from tritonkit.triton import default_model_file
from tritonkit.validate._report import ModelEntry, Sink
from tritonkit.validate._view import RepositoryView

__all__ = ["check_onnx"]

#: ONNX TensorProto element types -> Triton data types (onnxruntime_backend ConvertFromOnnxDataType).
_ONNX_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16",
               6: "TYPE_INT32", 7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16",
               11: "TYPE_FP64", 12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}


class _Tensor:
    def __init__(self, value_info: Any) -> None:
        tensor_type = value_info.type.tensor_type
        self.dtype = _ONNX_TYPES.get(tensor_type.elem_type, f"onnx element type {tensor_type.elem_type}")
        self.shape: Optional[list[int]] = None
        if tensor_type.HasField("shape"):
            self.shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]


def check_onnx(view: RepositoryView, entry: ModelEntry, sink: Sink, backend: str) -> None:
    """Compare the config's inputs and outputs with every loaded version's ONNX graph."""
    config = entry.config
    if backend != "onnxruntime" or config is None or not (config.input or config.output):
        return
    filename = default_model_file("onnxruntime", config.platform, config.default_model_filename)
    for version in entry.available_versions():
        data = view.version_file(entry.name, str(version), filename or "")
        if data is None:
            continue  # missing, or a folder holding model.onnx and its external data
        path = f"{entry.folder}/{version}/{filename}"
        graph = _load(data, path, entry, sink)
        if graph is None:
            continue
        found = _input_problem(entry, graph, version) or _output_problem(entry, graph)
        if found is not None:
            where, message, hint = found
            sink.error(entry, where, message, hint=hint)


def _load(data: bytes, path: str, entry: ModelEntry, sink: Sink) -> Optional[Any]:
    import onnx

    try:
        return onnx.load_model_from_string(data).graph
    except Exception as exc:  # protobuf raises DecodeError, and others, for a file that is not ONNX
        sink.add(Problem(f"unable to load model '{entry.name}': {path.rsplit('/', 1)[-1]} is not an ONNX model "
                         f"({type(exc).__name__})", path=path, model=entry.name,
                         hint="export the model again (torch.onnx.export / onnx.save)"))
        return None


_Found = Optional[tuple[tuple[Any, ...], str, str]]


def _input_problem(entry: ModelEntry, graph: Any, version: int) -> _Found:
    config = entry.config
    assert config is not None
    initializers = {i.name for i in graph.initializer}
    inputs = {i.name: _Tensor(i) for i in graph.input if i.name not in initializers}
    allowed = {**inputs, **{i.name: _Tensor(i) for i in graph.input if i.name in initializers}}
    expected = sum(1 for t in config.input if not t.optional) + len(config.batch_input)
    if config.input and len(inputs) != expected:
        return (("input",), f"unable to load model '{entry.name}', configuration expects {expected} inputs, "
                            f"model provides {len(inputs)} (version {version})",
                f"the ONNX file's inputs are: {', '.join(inputs) or 'none'}")
    for index, tensor in enumerate(config.input):
        found = _tensor_problem(entry, "input", index, tensor, allowed, exact=False)
        if found is not None:
            return found
    return None


def _output_problem(entry: ModelEntry, graph: Any) -> _Found:
    config = entry.config
    assert config is not None
    outputs = {o.name: _Tensor(o) for o in graph.output}
    batch_outputs = {name for item in config.batch_output for name in item.target_name}
    for index, tensor in enumerate(config.output):
        found = _tensor_problem(entry, "output", index, tensor, outputs, exact=True,
                                check_dims=tensor.name not in batch_outputs)
        if found is not None:
            return found
    return None


def _tensor_problem(entry: ModelEntry, kind: str, index: int, tensor: Any, graph_tensors: dict[str, _Tensor],
                    exact: bool, check_dims: bool = True) -> _Found:
    from tritonclient.grpc import model_config_pb2

    where = (kind, index)
    model_tensor = graph_tensors.get(tensor.name)
    if model_tensor is None:
        names = ", ".join(sorted(graph_tensors)) or "none"
        return ((*where, "name"), f"unexpected inference {kind} '{tensor.name}', allowed {kind}s are: {names}",
                f"use the ONNX file's {kind} names (onnx.load(...).graph.{kind})")
    dtype = model_config_pb2.DataType.Name(tensor.data_type)
    if dtype != model_tensor.dtype:
        return ((*where, "data_type"), f"unable to load model '{entry.name}', configuration expects datatype "
                                       f"{dtype} for {kind} '{tensor.name}', model provides {model_tensor.dtype}",
                f"set data_type: {model_tensor.dtype}")
    if not check_dims or not model_tensor.shape:
        return None
    dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
    message = _dims_problem(entry.name, tensor.name, model_tensor.shape, dims, entry.config.max_batch_size > 0
                            if entry.config is not None else False, exact)
    return ((*where, "dims"), message, _dims_hint(model_tensor.shape, dims)) if message else None


def _dims_problem(model: str, name: str, shape: list[int], dims: list[int], batching: bool, exact: bool) -> str:
    prefix = f"model '{model}', tensor '{name}': "
    if batching and shape[0] != -1:
        return (prefix + "for the model to support batching the shape should have at least 1 dimension and the "
                f"first dimension must be -1; but shape expected by the model is {_show(shape)}")
    full = [-1, *dims] if batching else dims
    same = len(shape) == len(full) and all(m == c for m, c in zip(shape, full) if exact or m != -1)
    if same:
        return ""
    if batching:
        return (prefix + f"the model expects {len(shape)} dimensions (shape {_show(shape)}) but the model "
                f"configuration specifies {len(full)} dimensions (an initial batch dimension because "
                f"max_batch_size > 0 followed by the explicit tensor shape, making complete shape {_show(full)})")
    return (prefix + f"the model expects {len(shape)} dimensions (shape {_show(shape)}) but the model "
            f"configuration specifies {len(dims)} dimensions (shape {_show(dims)})")


def _dims_hint(shape: list[int], dims: list[int]) -> str:
    if shape and shape[0] == -1 and len(shape) == len(dims) + 2:
        return f"dims leave out the batch dimension: use dims {_show(shape[1:])}"
    return f"the file's shape is {_show(shape)} (-1 = any size); with max_batch_size > 0 leave out its first, " \
           "batch dimension"


def _show(dims: list[int]) -> str:
    return "[" + ",".join(map(str, dims)) + "]"
