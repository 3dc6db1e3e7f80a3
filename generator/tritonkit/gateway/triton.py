"""One generation over Triton's gRPC stream (``tritonclient.grpc.aio``): inputs in the model's interface, deltas out.

Every request, streamed or not, goes over ``ModelStreamInfer``: the LLM-API model is decoupled and takes
no unary call. Leaving the iteration early (a client that went away cancels the task) cancels the gRPC
call, and Triton cancels the request in the model.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from tritonkit.gateway.catalog import LLM, Target, backend_common
from tritonkit.gateway.errors import APIError, bad_request, unavailable
from tritonkit.gateway.protocol import Generation
from tritonkit.triton.llmapi import REQUEST_NAMES, TEMPLATE_INPUT

__all__ = ["Piece", "build_inputs", "generate", "model_error", "without_stops"]

_NUMPY = {"BYTES": np.object_, "BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64, "UINT64": np.uint64,
          "FP32": np.float32, "FP64": np.float64, "UINT32": np.uint32}
_LENGTH = struct.Struct("<I")
#: OpenAI's defaults for the sampling fields a request leaves out, sent unless the spec set the model's own.
_OPENAI_DEFAULTS = {"temperature": 1.0, "top_p": 1.0}
#: The error codes tritonkit's models put in front of a message (``[code] ``; ``llm_common.py`` names them)
#: -> the HTTP status and OpenAI error type the gateway answers with.
_CODE = re.compile(r"^\[(?P<code>[a-z_]+)\] ")
_STATUS = {"invalid_argument": (400, "invalid_request_error"), "unsupported": (400, "invalid_request_error"),
           "context_length_exceeded": (400, "invalid_request_error"), "overloaded": (503, "server_error"),
           "engine_error": (500, "server_error")}
#: Engine finish reasons -> OpenAI's (anything else, e.g. ``cancelled``, reads as ``stop``).
_FINISH = {"stop": "stop", "length": "length", "end_id": "stop", "stop_words": "stop"}


@dataclass(frozen=True)
class Piece:
    """One response of the stream: each sequence's new text, and finish reasons on the last one.

    One sequence unless the request asked for ``n``; ``logprobs``: per sequence, OpenAI's token entries.
    """

    texts: tuple[str, ...]
    reasons: tuple[Optional[str], ...] = ()
    final: bool = False
    logprobs: Optional[tuple[list[dict[str, Any]], ...]] = None

    @property
    def text(self) -> str:
        """The first sequence's text."""
        return self.texts[0] if self.texts else ""

    @property
    def finish_reason(self) -> Optional[str]:
        """The first sequence's finish reason."""
        return self.reasons[0] if self.reasons else None


#: Tensors of small settings (flags, max_tokens, temperature, ...) made once: tritonclient only reads them.
_MADE: dict[tuple[Any, ...], Any] = {}


def _tensor(target: Target, name: str, values: list[Any]) -> Any:
    if name == "text_input" or len(values) != 1 or not isinstance(values[0], (bool, int, float)):
        return _make_tensor(target, name, values)
    key = (target.name, target.batched, name, target.inputs[name], type(values[0]), values[0])
    tensor = _MADE.get(key)
    if tensor is None:
        if len(_MADE) >= 1024:
            _MADE.clear()
        tensor = _MADE[key] = _make_tensor(target, name, values)
    return tensor


def _make_tensor(target: Target, name: str, values: list[Any]) -> Any:
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
    sampling = _with_defaults(llm, target, generation)
    if "sampling" in names:  # Triton's vLLM backend: SamplingParams as one JSON string
        params = {**_vllm_sampling(llm, sampling), **({"max_tokens": max_tokens} if max_tokens else {})}
        values: dict[str, list[Any]] = {"text_input": [text], names["stream"]: [stream],
                                        names["sampling"]: [json.dumps(params)], names["finish_reason"]: [True],
                                        names["answer_only"]: [True]}
        return [_tensor(target, name, value) for name, value in values.items() if name in target.inputs]
    values = {"text_input": [text]}
    if max_tokens is not None:
        values[names["max_tokens"]] = [max_tokens]
    elif llm.interface == "ensemble":
        values[names["max_tokens"]] = [256]
    values[names["stream"]] = [stream]
    if "finish_reason" in names:
        values[names["finish_reason"]] = [True]
    if TEMPLATE_INPUT in target.inputs:  # templated here already, or a completion prompt to continue as it is
        values[TEMPLATE_INPUT] = [False]
    if names["answer_only"] in target.inputs:  # the answer alone (echo puts the prompt back itself)
        values[names["answer_only"]] = [True]
    for key, value in sampling.items():
        name = names.get(key, key)
        if name not in target.inputs:
            raise bad_request(f"'{key}' is not supported by model '{llm.name}' (its inputs have no '{name}')",
                              param=key, code="unsupported_parameter")
        values[name] = value if isinstance(value, list) else [value]
    return [_tensor(target, name, value) for name, value in values.items() if name in target.inputs]


def _vllm_sampling(llm: LLM, sampling: dict[str, Any]) -> dict[str, Any]:
    """``sampling`` as vLLM's ``SamplingParams`` keywords (its structured output under ``guided_decoding``).

    Triton's vLLM backend sends back text only, so per-token log probabilities are refused here.
    """
    params = dict(sampling)
    if "logprobs" in params:
        raise bad_request(f"'logprobs' is not supported by model '{llm.name}': Triton's vLLM backend returns "
                          "no per-token log probabilities", param="logprobs", code="unsupported_parameter")
    if "logit_bias" in params:
        params["logit_bias"] = json.loads(params["logit_bias"])
    if "json_schema" in params:
        params["guided_decoding"] = {"json": json.loads(params.pop("json_schema"))}
    if params.pop("json_object", False):
        params["guided_decoding"] = {"json_object": True}
    return params


def _with_defaults(llm: LLM, target: Target, generation: Generation) -> dict[str, Any]:
    """The request's sampling settings, ``n`` and ``logprobs`` included, with OpenAI's defaults added.

    A default is added for a field the request leaves out where the spec chose none and the model takes it.
    """
    sampling = dict(generation.sampling)
    if generation.n > 1:
        sampling["n"] = generation.n
    if generation.logprobs is not None:
        sampling["logprobs"] = generation.logprobs
    names = REQUEST_NAMES[llm.interface]
    chosen = llm.spec_defaults
    takes = set(target.inputs) if "sampling" not in names else None
    added = {key: value for key, value in _OPENAI_DEFAULTS.items() if key not in sampling and key not in chosen
             and (takes is None or names.get(key, key) in takes)}
    return {**sampling, **added} if added else sampling


def _strings(raw: bytes) -> list[bytes]:
    """The elements of a BYTES tensor's raw content: each a 4-byte little-endian length, then the bytes."""
    items, offset = [], 0
    while offset + 4 <= len(raw):
        (size,) = _LENGTH.unpack_from(raw, offset)
        items.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


def _texts(response: Any) -> dict[str, list[str]]:
    """Every BYTES output of a ``ModelInferResponse`` as its strings (one per sequence).

    Read straight from the message: ``InferResult.as_numpy`` builds a numpy array per output, and this is
    done for every token of every stream.
    """
    texts = {}
    raw = response.raw_output_contents
    for index, output in enumerate(response.outputs):
        if output.datatype != "BYTES":
            continue
        items = _strings(raw[index]) if index < len(raw) else list(output.contents.bytes_contents)
        texts[output.name] = [item.decode("utf-8", errors="replace") for item in items]
    return texts


def _piece(texts: dict[str, list[str]], final: bool, n: int) -> Piece:
    """A response's outputs as a Piece; for one sequence (``n`` 1), ``text_output``'s elements are one text."""
    found = texts.get("text_output", [])
    reasons = tuple(_FINISH.get(r, "stop") if r else None for r in texts.get("finish_reason", []))
    entries = texts.get("logprobs")
    logprobs = tuple(json.loads(e) if e else [] for e in entries) if entries is not None else None
    if n == 1 and len(found) > 1:  # one sequence's text in several elements
        found = ["".join(found)]
    return Piece(tuple(found) or ("",), reasons, final, logprobs)


def model_error(model: str, message: str) -> APIError:
    """A model's error as an OpenAI error, by the code tritonkit's models put in front of the message.

    A message without one (another backend's) is read as the model refusing the request.
    """
    found = _CODE.match(message)
    code = found.group("code") if found else None
    status, kind = _STATUS.get(code or "", (400, "invalid_request_error"))
    if status == 500:
        return APIError(status, f"model '{model}' failed: {message}", type_=kind, code=code)
    if status == 503:
        return APIError(status, f"model '{model}' is busy: {message}", type_=kind, code=code,
                        headers={"Retry-After": "1"})
    return APIError(status, f"model '{model}' refused the request: {message}", type_=kind,
                    code=code if code != "invalid_argument" else None)


def _transport_error(exc: BaseException, url: str) -> APIError:
    code = getattr(exc, "code", None)
    name = str(code() if callable(code) else code)
    text = str(exc)
    if "UNAVAILABLE" in name or "unavailable" in text.lower() or isinstance(exc, ConnectionError):
        return unavailable(f"the Triton server at {url} does not answer (gRPC): start it, or check --url")
    return APIError(502, f"the Triton server at {url} failed the request: {text}", type_="server_error",
                    code="triton_error")


class _Silence:
    """Cancels a gRPC call that has sent nothing for ``timeout_s``: one timer per request, not one per response.

    Each response only notes the time; the timer, when it fires, re-arms itself for the rest of the
    window, or cancels the call (its pending read then ends, and ``expired`` says why).
    """

    def __init__(self, replies: Any, timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._replies, self._timeout_s = replies, timeout_s
        #: When the last response came (the loop's clock).
        self.last = self._loop.time()
        self.expired = False
        self._timer = self._loop.call_at(self.last + timeout_s, self._check)

    def _check(self) -> None:
        due = self.last + self._timeout_s
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check)
            return
        self.expired = True
        self._replies.cancel()

    def heard(self) -> None:
        """A response came: the window starts again."""
        self.last = self._loop.time()

    def close(self) -> None:
        """Stop the timer (the call has ended)."""
        self._timer.cancel()


async def generate(client: Any, url: str, target: Target, inputs: list[Any], timeout_s: float,
                   sent: Optional[Callable[[], None]] = None, n: int = 1) -> AsyncIterator[Piece]:
    """Send one request to ``target`` and yield its responses; a request left early is cancelled in Triton.

    ``sent`` is called once gRPC has written the request (when it asks the request stream for more); ``n``:
    the sequences the request asked for.
    """
    # No request id: a request left early is cancelled through gRPC (Triton's request cancellation), never
    # by id, and the streaming layout's unary front sends requests without an id to the engine together.
    request = {"model_name": target.name, "inputs": inputs}

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield request
        if sent is not None:
            sent()

    replies = client.stream_infer(requests())
    silence = _Silence(replies, timeout_s)
    finished = False
    try:
        while not finished:
            try:
                result, error = await replies.__anext__()
            except StopAsyncIteration:  # the server closed the stream: the last response came
                finished = True
                break
            except BaseException as exc:  # grpc ends a cancelled call's read with CancelledError
                if silence.expired:
                    finished = True
                    raise APIError(504, f"model '{target.name}' sent nothing for {timeout_s:g} s",
                                   type_="server_error", code="timeout") from None
                if not isinstance(exc, Exception):
                    raise
                raise _transport_error(exc, url) from exc
            silence.heard()
            if error is not None:
                finished = True
                raise model_error(target.name, str(error.message() if callable(error.message) else error))
            response = result.get_response()
            final = response.parameters["triton_final_response"].bool_param
            finished = final
            yield _piece(_texts(response), final, n)
    finally:
        silence.close()
        if not finished:
            replies.cancel()


async def without_stops(pieces: AsyncIterator[Piece], stops: list[str]) -> AsyncIterator[Piece]:
    """``pieces`` with the stop string cut from the end of each sequence that stopped on one, as OpenAI answers.

    The ensemble layout's engine keeps a stop word's tokens in its output, as TensorRT-LLM's does (NVIDIA's
    clients count on it); an OpenAI client expects the text before it. While streaming, the end of a text
    that may be the start of a stop string is held back until the next piece tells.
    """
    stop_start = backend_common().stop_start
    held: dict[int, str] = {}
    async for piece in pieces:
        texts = []
        for index, text in enumerate(piece.texts):
            text = held.pop(index, "") + text
            reason = piece.reasons[index] if index < len(piece.reasons) else None
            if piece.final or reason is not None:
                if reason == "stop":
                    text = next((text[: -len(s)] for s in stops if text.endswith(s)), text)
            else:
                keep = stop_start(text, stops)
                if keep:
                    text, held[index] = text[:-keep], text[-keep:]
            texts.append(text)
        yield Piece(tuple(texts), piece.reasons, piece.final, piece.logprobs)
