"""Rules for ONNX Runtime models: the declared inputs and outputs against the ONNX file, in every loaded version.

These are the ONNX Runtime backend's load-time checks (onnxruntime_backend ``src/onnxruntime.cc``
``ValidateInputs``/``ValidateOutputs``, ``ValidateBooleanSequenceControl``/``ValidateTypedSequenceControl``
and ``onnxruntime_utils.cc`` ``CompareDimsSupported``), run on the graph's declared inputs and outputs
without starting a session. The backend expects one graph input per required ``input`` and
``batch_input``, and, with sequence batching, one per control kind the config uses (START, END, READY,
CORRID) and one per ``state``; each control's graph input must exist, hold [1] per batch item and have
the control's type. A config without inputs and outputs is left alone: the backend's auto-complete
fills them from the file.
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
#: The names the backend prints for ONNX element types in its sequence-control messages (OnnxDataTypeName).
_ONNX_NAMES = {"TYPE_FP32": "FLOAT", "TYPE_UINT8": "UINT8", "TYPE_INT8": "INT8", "TYPE_UINT16": "UINT16",
               "TYPE_INT16": "INT16", "TYPE_INT32": "INT32", "TYPE_INT64": "INT64", "TYPE_STRING": "STRING",
               "TYPE_BOOL": "BOOL", "TYPE_FP16": "FLOAT16", "TYPE_FP64": "DOUBLE", "TYPE_UINT32": "UINT32",
               "TYPE_UINT64": "UINT64", "TYPE_BF16": "BFLOAT16"}
#: Control kinds in the order the backend checks and counts them (ModelInstanceState's constructor).
_CONTROL_KINDS = ("CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_READY",
                  "CONTROL_SEQUENCE_CORRID")
_BOOLEAN_TYPES = (("int32_false_true", "TYPE_INT32"), ("fp32_false_true", "TYPE_FP32"),
                  ("bool_false_true", "TYPE_BOOL"))


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
    controls = _controls(config)
    for index, (name, dtype) in controls:
        found = _control_problem(entry, index, name, dtype, inputs)
        if found is not None:
            return found
    states = len(config.sequence_batching.state) if config.HasField("sequence_batching") else 0
    expected = sum(1 for t in config.input if not t.optional) + len(config.batch_input) + len(controls) + states
    if config.input and len(inputs) != expected:
        added = [f"{len(controls)} sequence control{'s' * (len(controls) != 1)}"] if controls else []
        added += [f"{states} sequence state{'s' * (states != 1)}"] if states else []
        counted = f" (counting {' and '.join(added)})" if added else ""
        return (("input",), f"unable to load model '{entry.name}', configuration expects {expected} inputs, "
                            f"model provides {len(inputs)} (version {version}){counted}",
                f"the ONNX file's inputs are: {', '.join(inputs) or 'none'}; the backend expects one per "
                "required input and batch_input, one per sequence control kind and one per sequence state")
    for index, tensor in enumerate(config.input):
        found = _tensor_problem(entry, "input", index, tensor, allowed, exact=False)
        if found is not None:
            return found
    return None


def _controls(config: Any) -> list[tuple[int, tuple[str, str]]]:
    """Return (control_input index, (tensor name, Triton type)) for each control kind the config uses.

    Kinds come in the backend's order; core has already refused a kind given twice or without its values.
    The type of a START/END/READY control is that of its values list, CORRID's is its data_type.
    """
    from tritonclient.grpc import model_config_pb2

    if not config.HasField("sequence_batching"):
        return []
    kinds = model_config_pb2.ModelSequenceBatching.Control.Kind
    found: list[tuple[int, tuple[str, str]]] = []
    # CORRID's type comes as "data_type:<type>" so that the hint can tell the two kinds apart
    for kind in _CONTROL_KINDS:
        for index, control_input in enumerate(config.sequence_batching.control_input):
            control = next((c for c in control_input.control if c.kind == kinds.Value(kind)), None)
            if control is None:
                continue
            if kind == "CONTROL_SEQUENCE_CORRID":
                dtype = "data_type:" + model_config_pb2.DataType.Name(control.data_type)
            else:
                dtype = next((t for field, t in _BOOLEAN_TYPES if len(getattr(control, field))), "TYPE_INVALID")
            found.append((index, (control_input.name, dtype)))
            break
    return found


def _control_problem(entry: ModelEntry, index: int, name: str, dtype: str,
                     inputs: dict[str, _Tensor]) -> _Found:
    where = ("sequence_batching", "control_input", index)
    tensor = inputs.get(name)
    if tensor is None:
        return (where, f"configuration specified sequence control '{name}', but model does not provide that "
                       f"input", f"the ONNX file's inputs are: {', '.join(inputs) or 'none'}")
    batching = entry.config is not None and entry.config.max_batch_size > 0
    if tensor.shape is not None:
        debatched = tensor.shape[1:] if batching else tensor.shape
        if debatched != [1]:
            return (where, f"unable to load model '{entry.name}', sequence control '{name}' in model has dims "
                           f"{_show(debatched)} but dims [1] is expected",
                    "export the control input with shape [batch, 1] (or [1] without batching)")
    typed = dtype.startswith("data_type:")
    dtype = dtype.split(":", 1)[-1]
    if dtype != tensor.dtype:
        model_type = _ONNX_NAMES.get(tensor.dtype, "UNDEFINED")
        return (where, f"unable to load model '{entry.name}', sequence control '{name}', the model expects "
                       f"data-type {model_type} but the model configuration specifies data-type {dtype}",
                _control_type_hint(name, tensor.dtype, typed))
    return None


def _control_type_hint(name: str, model_type: str, typed: bool) -> str:
    lists = {t: field for field, t in _BOOLEAN_TYPES}
    if not typed:  # a START/END/READY control
        if model_type in lists:
            return f"the graph's '{name}' is {model_type}: give the control {lists[model_type]}"
        return f"the graph's '{name}' is {model_type}; a START/END/READY control is INT32, FP32 or BOOL"
    return f"the graph's '{name}' is {model_type}: set the control's data_type: {model_type}"


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
