"""One generation over Triton's gRPC stream (``tritonclient.grpc.aio``): inputs in the model's interface, deltas out.

Every request, streamed or not, goes over ``ModelStreamInfer``: the LLM-API model is decoupled and takes
no unary call. Leaving the iteration early (a client that went away cancels the task) cancels the gRPC
call, and Triton cancels the request in the model.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from tritonkit.gateway.catalog import LLM, Target
from tritonkit.gateway.errors import APIError, bad_request, unavailable
from tritonkit.gateway.protocol import Generation
from tritonkit.model.llmapi_contract import REQUEST_NAMES

__all__ = ["Piece", "build_inputs", "generate"]

_NUMPY = {"BYTES": np.object_, "BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64, "UINT64": np.uint64,
          "FP32": np.float32, "FP64": np.float64, "UINT32": np.uint32}
#: Engine finish reasons -> OpenAI's (anything else, e.g. ``cancelled``, reads as ``stop``).
_FINISH = {"stop": "stop", "length": "length", "end_id": "stop", "stop_words": "stop"}


@dataclass(frozen=True)
class Piece:
    """One response of the stream: new text, and the finish reason on the last one."""

    text: str
    finish_reason: Optional[str] = None
    final: bool = False


def _tensor(target: Target, name: str, values: list[Any]) -> Any:
    import tritonclient.grpc as grpcclient

    datatype, rank = target.inputs[name]
    array = np.array([v.encode("utf-8") if isinstance(v, str) else v for v in values], dtype=_NUMPY[datatype])
    if target.batched:
        array = array.reshape((1, *array.shape))
    elif rank == 0:
        array = array.reshape(())
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def build_inputs(llm: LLM, target: Target, text: str, generation: Generation, stream: bool) -> list[Any]:
    """The model's inputs for ``generation`` in its interface (LLM-API or ensemble/BLS).

    Raises:
        APIError: 400 naming a sampling field the model has no input for.

    """
    names = REQUEST_NAMES[llm.interface]
    max_tokens = generation.max_tokens or llm.limit("max_output_len")
    if "sampling" in names:  # Triton's vLLM backend: SamplingParams as one JSON string
        params = {**generation.sampling, **({"max_tokens": max_tokens} if max_tokens else {})}
        values: dict[str, list[Any]] = {"text_input": [text], names["stream"]: [stream],
                                        names["sampling"]: [json.dumps(params)], names["finish_reason"]: [True]}
        return [_tensor(target, name, value) for name, value in values.items() if name in target.inputs]
    values = {"text_input": [text]}
    if max_tokens is not None:
        values[names["max_tokens"]] = [max_tokens]
    elif llm.interface == "ensemble":
        values[names["max_tokens"]] = [256]
    values[names["stream"]] = [stream]
    if "finish_reason" in names:
        values[names["finish_reason"]] = [True]
    for key, value in generation.sampling.items():
        name = names.get(key, key)
        if name not in target.inputs:
            raise bad_request(f"'{key}' is not supported by model '{llm.name}' (its inputs have no '{name}')",
                              param=key, code="unsupported_parameter")
        values[name] = value if isinstance(value, list) else [value]
    return [_tensor(target, name, value) for name, value in values.items() if name in target.inputs]


def _text(result: Any, name: str) -> Optional[str]:
    array = result.as_numpy(name)
    if array is None:
        return None
    return "".join(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1))


def _model_error(model: str, message: str) -> APIError:
    if "generation failed" in message:
        return APIError(500, f"model '{model}' failed: {message}", type_="server_error", code="engine_error")
    code = "context_length_exceeded" if "tokens" in message and "limit" in message else None
    return bad_request(f"model '{model}' refused the request: {message}", code=code)


def _transport_error(exc: BaseException, url: str) -> APIError:
    code = getattr(exc, "code", None)
    name = str(code() if callable(code) else code)
    text = str(exc)
    if "UNAVAILABLE" in name or "unavailable" in text.lower() or isinstance(exc, ConnectionError):
        return unavailable(f"the Triton server at {url} does not answer (gRPC): start it, or check --url")
    return APIError(502, f"the Triton server at {url} failed the request: {text}", type_="server_error",
                    code="triton_error")


async def _next(replies: Any, timeout_s: float) -> Any:
    """The stream's next response within ``timeout_s`` (``asyncio.timeout`` where there is one: no task per call)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout_s):
            return await replies.__anext__()
    return await asyncio.wait_for(replies.__anext__(), timeout=timeout_s)


async def generate(client: Any, url: str, target: Target, inputs: list[Any], timeout_s: float,
                   sent: Optional[Callable[[], None]] = None) -> AsyncIterator[Piece]:
    """Send one request to ``target`` and yield its responses; a request left early is cancelled in Triton.

    ``sent`` is called once gRPC has written the request (when it asks the request stream for more).
    """
    request = {"model_name": target.name, "inputs": inputs, "request_id": uuid.uuid4().hex}

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield request
        if sent is not None:
            sent()

    replies = client.stream_infer(requests())
    finished = False
    try:
        while not finished:
            try:
                result, error = await _next(replies, timeout_s)
            except StopAsyncIteration:  # the server closed the stream: the last response came
                finished = True
                break
            except asyncio.TimeoutError:
                raise APIError(504, f"model '{target.name}' sent nothing for {timeout_s:g} s",
                               type_="server_error", code="timeout") from None
            except Exception as exc:
                raise _transport_error(exc, url) from exc
            if error is not None:
                finished = True
                raise _model_error(target.name, str(error.message() if callable(error.message) else error))
            final = result.get_response().parameters["triton_final_response"].bool_param
            finished = final
            reason = _text(result, "finish_reason")
            yield Piece(_text(result, "text_output") or "", _FINISH.get(reason, "stop") if reason else None, final)
    finally:
        if not finished:
            replies.cancel()
