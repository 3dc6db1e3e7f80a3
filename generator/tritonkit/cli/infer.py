"""``tritonkit infer``: send one request to a served model and print its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer

from tritonkit.cli._app import app, out_console
from tritonkit.errors import ClientError, Problem
from tritonkit.runtime.client import Client
from tritonkit.runtime.tensors import Array, ModelInfo

_CONNECTION = "Connection"


def _load_value(text: str) -> Any:
    """``@file.npy`` / ``@file.json`` / a JSON literal / otherwise the text itself (for BYTES inputs)."""
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise ClientError(Problem("input file not found", path=str(path)))
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ClientError(Problem(f"not JSON: {exc.msg}", path=str(path), line=exc.lineno, col=exc.colno,
                                      hint="use a .npy file or a JSON file")) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_inputs(pairs: list[str]) -> dict[str, Any]:
    """Turn ``NAME=VALUE`` options into ``{name: value}``."""
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=@file.npy or NAME=JSON, got {pair!r}", param_hint="--input")
        values[name] = _load_value(text)
    return values


def _fit_one(array: Array, shape: tuple[int, ...], batching: bool) -> Array:
    if array.ndim == len(shape):
        return array
    if batching and array.ndim + 1 == len(shape):
        return array[np.newaxis, ...]
    if array.size == 1 and all(d in (1, -1) for d in shape):  # one value for a one-element tensor
        return array.reshape((1,) * len(shape))
    return array


def fit_batch(info: ModelInfo, values: dict[str, Any]) -> dict[str, Any]:
    """Shape values given without the batch dimension, or as one bare value, to the model's inputs.

    A CLI convenience, the same for strings (BYTES) as for numbers: ``-i TEXT=hello`` fills a ``[-1, 1]``
    input, ``-i X=[1, 2]`` a ``[-1, 2]`` one. Values the model has no input for are left to the client's check.
    """
    fitted = {}
    for name, value in values.items():
        tensor = info.input(name)
        array = np.asarray(value, dtype=object if tensor and tensor.datatype == "BYTES" else None)
        fitted[name] = _fit_one(array, tuple(tensor.shape), info.max_batch_size > 0) if tensor else array
    return fitted


def to_jsonable(array: Array) -> dict[str, Any]:
    """``{"datatype", "shape", "data"}`` with BYTES decoded as UTF-8 where they are text."""
    if array.dtype == np.object_:
        data = [item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
                for item in array.reshape(-1)]
        data_array = np.array(data, dtype=object).reshape(array.shape)
        return {"datatype": "BYTES", "shape": list(array.shape), "data": data_array.tolist()}
    return {"datatype": str(array.dtype), "shape": list(array.shape), "data": array.tolist()}


def _print_outputs(outputs: dict[str, Array]) -> None:
    for name, array in outputs.items():
        shown = to_jsonable(array)
        out_console.print(f"{name} {shown['datatype']} {shown['shape']}: {json.dumps(shown['data'])}", markup=False)


@app.command()
def infer(
    model: Annotated[str, typer.Argument(help="Model to call, e.g. add_sub in the default example.",
                                         show_default=False)],
    input: Annotated[Optional[list[str]], typer.Option(
        "--input", "-i", help="NAME=@file.npy, NAME=@file.json or NAME=JSON; "
        "repeatable. Plain text is a string. The batch dimension is added when left out.")] = None,
    output: Annotated[Optional[list[str]], typer.Option(
        "--output-name", help="Name of an output to return (repeatable; default: all).")] = None,
    url: Annotated[Optional[str], typer.Option(
        "--url", help="Server host:port (default localhost:8001 for grpc, "
        "localhost:8000 for http).", rich_help_panel=_CONNECTION)] = None,
    protocol: Annotated[str, typer.Option(
        "--protocol", help="grpc or http.", rich_help_panel=_CONNECTION)] = "grpc",
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for the answer.",
        rich_help_panel=_CONNECTION)] = 60.0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the outputs as JSON on stdout.")] = False,
) -> int:
    """Send one request to MODEL and print its outputs (every response, for a decoupled model).

    Example: tritonkit infer add_sub -i INPUT0=[1,2,3,4] -i INPUT1=[1,1,1,1]
    """
    values = parse_inputs(input or [])
    output = output or []
    with Client(url, protocol=protocol, timeout_s=timeout) as client:
        info = client.model(model)
        values = fit_batch(info, values)
        if info.decoupled and protocol == "grpc":
            responses = list(client.stream(model, values))
        else:
            responses = [client.infer(model, values, outputs=output or None)]
    responses = [{k: v for k, v in r.items() if not output or k in output} for r in responses]
    if as_json:
        rendered = [{name: to_jsonable(array) for name, array in r.items()} for r in responses]
        body = {"model": model, "responses": rendered} if info.decoupled else {"model": model, "outputs": rendered[0]}
        out_console.print(json.dumps(body), markup=False)
        return 0
    for index, response in enumerate(responses):
        if info.decoupled:
            out_console.print(f"response {index}:", markup=False)
        _print_outputs(response)
    return 0
