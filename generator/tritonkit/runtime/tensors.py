"""What a served model expects (names, datatypes, shapes) and numpy values checked and shaped to match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from tritonkit.errors import ClientError, Problem
from tritonkit.served import NUMPY_DTYPES, TensorInfo

__all__ = ["ModelInfo", "TensorInfo", "model_info", "numpy_dtype", "prepare_inputs"]

#: A numpy array of any dtype.
Array = npt.NDArray[Any]

@dataclass(frozen=True)
class ModelInfo:
    """A served model's metadata and the parts of its config a client needs."""

    name: str
    versions: tuple[str, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch_size: int = 0
    decoupled: bool = False
    #: The model that streams for this one (its ``streaming_model`` parameter, else ``<name>_bls``).
    streaming_model: str = ""

    def input(self, name: str) -> Optional[TensorInfo]:
        """The input called ``name``, or None."""
        return next((t for t in self.inputs if t.name == name), None)


def numpy_dtype(datatype: str) -> Any:
    """The numpy dtype for a Triton datatype (BYTES is ``object``)."""
    return NUMPY_DTYPES.get(datatype, np.object_)


def model_info(metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
    """Build a :class:`ModelInfo` from the server's metadata and config, in either protocol's JSON form."""
    config = config.get("config", config)
    optional = {i.get("name"): bool(i.get("optional", False)) for i in config.get("input", [])}

    def tensors(key: str) -> tuple[TensorInfo, ...]:
        return tuple(TensorInfo(t["name"], t["datatype"], tuple(int(d) for d in t.get("shape", [])),
                                optional.get(t["name"], False) if key == "inputs" else False)
                     for t in metadata.get(key, []))

    policy = config.get("model_transaction_policy", {})
    streaming = (config.get("parameters") or {}).get("streaming_model", {}).get("string_value", "")
    return ModelInfo(name=str(metadata["name"]), versions=tuple(str(v) for v in metadata.get("versions", [])),
                     inputs=tensors("inputs"), outputs=tensors("outputs"),
                     max_batch_size=int(config.get("max_batch_size", 0)), decoupled=bool(policy.get("decoupled")),
                     streaming_model=str(streaming or f"{metadata['name']}_bls"))


def _expects(info: ModelInfo) -> str:
    return "; the model expects " + ", ".join(t.describe() for t in info.inputs)


def _as_bytes_array(value: Any, tensor: TensorInfo, model: str) -> Array:
    array = np.asarray(value, dtype=object)
    flat = array.reshape(-1)
    for index, item in enumerate(flat):
        if isinstance(item, str):
            flat[index] = item.encode("utf-8")
        elif not isinstance(item, (bytes, np.bytes_)):
            raise ClientError(Problem(f"input '{tensor.name}' of model '{model}' is BYTES, got {type(item).__name__}",
                                      model=model, hint="pass str or bytes values"))
    return flat.reshape(array.shape)


def _as_numeric_array(value: Any, tensor: TensorInfo, model: str) -> Array:
    target = np.dtype(numpy_dtype(tensor.datatype))
    array = np.asarray(value)
    if array.dtype.kind in "USO" or not np.can_cast(array.dtype, target, casting="same_kind"):
        raise ClientError(Problem(
            f"input '{tensor.name}' of model '{model}' is {tensor.datatype}, got numpy {array.dtype}",
            model=model, hint=f"pass values convertible to {target} ({tensor.describe()})"))
    return array.astype(target, copy=False)


def _check_shape(array: Array, tensor: TensorInfo, info: ModelInfo) -> None:
    expected = tensor.shape
    fits = len(array.shape) == len(expected) and all(e < 0 or e == a for e, a in zip(expected, array.shape))
    if not fits:
        hint = "add a leading batch dimension" if len(array.shape) + 1 == len(expected) else "reshape it"
        raise ClientError(Problem(
            f"input '{tensor.name}' of model '{info.name}' has shape {list(array.shape)}, "
            f"the model expects {list(expected)} (-1: any size)", model=info.name, hint=hint))


def prepare_inputs(info: ModelInfo, values: Mapping[str, Any],
                   where: Optional[str] = None) -> list[tuple[str, str, Array]]:
    """Check ``values`` against the model's inputs and convert them: ``[(name, datatype, array)]``.

    ``where`` (the server's URL) locates the errors.

    Raises:
        ClientError: an unknown or missing input, a value of the wrong type, or a wrong shape;
            the message lists what the model expects.

    """
    try:
        return _prepare(info, values)
    except ClientError as exc:
        raise ClientError([replace(p, path=p.path or where) for p in exc.problems]) from None


def _prepare(info: ModelInfo, values: Mapping[str, Any]) -> list[tuple[str, str, Array]]:
    unknown = [name for name in values if info.input(name) is None]
    if unknown:
        raise ClientError(Problem(f"model '{info.name}' has no input named {', '.join(map(repr, unknown))}"
                                  + _expects(info), model=info.name))
    missing = [t.name for t in info.inputs if not t.optional and t.name not in values]
    if missing:
        raise ClientError(Problem(f"model '{info.name}' needs input {', '.join(map(repr, missing))}"
                                  + _expects(info), model=info.name))
    prepared = []
    for name, value in values.items():
        tensor = info.input(name)
        assert tensor is not None  # checked above
        convert = _as_bytes_array if tensor.datatype == "BYTES" else _as_numeric_array
        array = convert(value, tensor, info.name)
        _check_shape(array, tensor, info)
        prepared.append((name, tensor.datatype, array))
    return prepared
