"""One asyncio client per run: model metadata, server statistics, and timed requests over gRPC or HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tritonkit.bench.options import BenchError, BenchOptions, check_protocol
from tritonkit.bench.payload import ModelInfo, Payload, TensorInfo
from tritonkit.bench.wire import WireConnections, build_infer_request, output_text
from tritonkit.errors import Problem

__all__ = ["BenchClient", "Sample", "open_client"]


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it; times are ``time.perf_counter()`` seconds."""

    start_s: float
    end_s: float
    error: Optional[str] = None
    ttft_s: Optional[float] = None
    itl_s: tuple[float, ...] = ()
    output_tokens: int = 0
    output_text: str = ""

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.error is None

    @property
    def latency_s(self) -> float:
        """End-to-end latency: request sent to last response received."""
        return self.end_s - self.start_s


def error_kind(exc: BaseException) -> str:
    """Name a failure by its transport status (``INTERNAL``, ``400``, ``timeout``) for counting."""
    status = getattr(exc, "status", None)
    code = status() if callable(status) else None
    if code:
        return str(code).replace("StatusCode.", "")
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


def _tensor_info(raw: dict[str, Any], optional: frozenset[str]) -> TensorInfo:
    shape = tuple(int(d) for d in raw.get("shape", []))
    return TensorInfo(raw["name"], raw["datatype"], shape, raw["name"] in optional)


class BenchClient:
    """The requests of one run, prepared once, sent from one event loop by many coroutines.

    gRPC goes through ``tritonclient.grpc.aio`` (unary and streaming); HTTP infers go through
    ``wire.WireConnections`` (pre-built bytes), its metadata and statistics through ``tritonclient.http.aio``.
    No thread per request.
    """

    def __init__(self, options: BenchOptions, module: Any, client: Any) -> None:
        self._options = options
        self._module = module
        self._client = client
        self._prepared: list[list[Any]] = []
        self._wire = WireConnections(options.url) if options.protocol == "http" else None
        self._wire_requests: list[bytes] = []
        self._want_text = False
        self._count_tokens: Callable[[str], int] = lambda text: 1 if text else 0

    @property
    def protocol(self) -> str:
        """``grpc`` or ``http``."""
        return self._options.protocol

    async def close(self) -> None:
        """Close the underlying connection pool or channel."""
        if self._wire is not None:
            self._wire.close()
        await self._client.close()

    async def model_info(self) -> ModelInfo:
        """Read the model's metadata and config from the server.

        Raises:
            BenchError: the server is unreachable or does not serve the model.

        """
        name = self._options.model
        try:
            if not await self._client.is_model_ready(name):
                raise BenchError(Problem(f"model {name} is not ready", path=self._options.url, model=name,
                                         hint="check the name: `curl -X POST localhost:8000/v2/repository/index` "
                                              "lists the models (on the server's HTTP port)"))
            metadata = await self._call_json("get_model_metadata", name)
            config = await self._call_json("get_model_config", name)
        except (InferenceServerException, OSError) as exc:
            reason = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
            raise BenchError(Problem(f"cannot read model {name}: {reason}", path=self._options.url,
                                     model=name,
                                     hint="start a server with `tritonkit serve REPO`, or pass the right --url "
                                          "and --protocol")) from None
        config = config.get("config", config)
        optional = frozenset(i["name"] for i in config.get("input", []) if i.get("optional"))
        return ModelInfo(name=name,
                         inputs=tuple(_tensor_info(t, optional) for t in metadata.get("inputs", [])),
                         outputs=tuple(_tensor_info(t, frozenset()) for t in metadata.get("outputs", [])),
                         max_batch_size=int(config.get("max_batch_size", 0)),
                         decoupled=bool(config.get("model_transaction_policy", {}).get("decoupled", False)))

    async def statistics(self) -> list[dict[str, Any]]:
        """Return Triton's statistics of every model (the target and, for ensembles, its steps)."""
        stats = await self._call_json("get_inference_statistics", "")
        return list(stats.get("model_stats", []))

    async def _call_json(self, method: str, name: str) -> dict[str, Any]:
        call = getattr(self._client, method)
        if self.protocol == "grpc":
            return dict(await call(name, as_json=True))
        return dict(await call(name))

    def prepare(self, payloads: list[Payload], count_tokens: Optional[Callable[[str], int]] = None) -> None:
        """Build each payload's request once (bytes for HTTP, input objects for gRPC); text is counted if given."""
        self._want_text = count_tokens is not None
        if count_tokens is not None:
            self._count_tokens = count_tokens
        if self._wire is not None:
            self._wire_requests = [build_infer_request(self._wire.host, self._options.model, p, self._want_text)
                                   for p in payloads]
        else:
            self._prepared = [self._infer_inputs(p) for p in payloads]

    def _infer_inputs(self, payload: Payload) -> list[Any]:
        inputs = []
        for name, array in payload.items():
            datatype = np_to_triton_dtype(array.dtype)
            item = self._module.InferInput(name, list(array.shape), datatype)
            item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs

    async def send(self, index: int) -> Sample:
        """Send the ``index``-th prepared payload (modulo their number) and time it."""
        start = time.perf_counter()
        try:
            if self._wire is not None:
                text = await self._send_wire(index)
            elif self._options.stream:
                return await self._send_stream(self._prepared[index % len(self._prepared)], start)
            else:
                result = await self._client.infer(self._options.model, self._prepared[index % len(self._prepared)],
                                                  client_timeout=self._options.timeout_s)
                text = _text_output(result)
        except Exception as exc:  # every failure is counted by its kind; a load test goes on
            return Sample(start, time.perf_counter(), error=error_kind(exc))
        end = time.perf_counter()
        return Sample(start, end, output_tokens=self._count_tokens(text) if text else 0, output_text=text)

    async def _send_wire(self, index: int) -> str:
        assert self._wire is not None
        body, header_length = await self._wire.infer(self._wire_requests[index % len(self._wire_requests)])
        return output_text(body, header_length) if self._want_text else ""

    async def _send_stream(self, inputs: list[Any], start: float) -> Sample:
        arrivals: list[float] = []
        pieces: list[str] = []
        responses = self._client.stream_infer(_one_request(self._options.model, inputs),
                                              stream_timeout=self._options.timeout_s)
        async for result, error in responses:
            if error is not None:
                return Sample(start, time.perf_counter(), error=error_kind(error))
            now = time.perf_counter()
            delta = _text_output(result)
            if delta:
                arrivals.append(now)
                pieces.append(delta)
            if _is_final(result):
                break
        end = time.perf_counter()
        text = "".join(pieces)
        ttft = arrivals[0] - start if arrivals else None
        itl = tuple(b - a for a, b in zip(arrivals, arrivals[1:]))
        tokens = len(arrivals) if self._options.tokenizer is None else self._count_tokens(text)
        return Sample(start, end, ttft_s=ttft, itl_s=itl, output_tokens=tokens, output_text=text)


async def _one_request(model: str, inputs: list[Any]) -> AsyncIterator[dict[str, Any]]:
    yield {"model_name": model, "inputs": inputs}


def _is_final(result: Any) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and bool(parameters["triton_final_response"].bool_param)


def _text_output(result: Any) -> str:
    try:
        array = result.as_numpy("text_output")
    except Exception:  # a classic model has no text_output, which is not an error
        return ""
    if array is None:
        return ""
    values = array.reshape(-1)
    return "".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values)


def open_client(options: BenchOptions) -> BenchClient:
    """Create the asyncio client of ``options.protocol`` for ``options.url`` (call inside the event loop).

    Raises:
        BenchError: the protocol is unknown, or streaming was asked over HTTP.

    """
    check_protocol(options.protocol, options.stream)
    if options.protocol == "grpc":
        import tritonclient.grpc.aio as grpc_aio

        return BenchClient(options, grpc_aio, grpc_aio.InferenceServerClient(options.url))
    import tritonclient.http.aio as http_aio

    limit = max(100, int(max(options.levels)) * 2)
    return BenchClient(options, http_aio, http_aio.InferenceServerClient(options.url, conn_limit=limit))
