"""Thin synchronous helpers over tritonclient (gRPC and HTTP): infer with numpy in and out, and streaming.

``infer(model, {name: array}) -> {name: array}`` reads the model's metadata for datatypes and shapes,
so a wrong input name, type or shape fails before the request with what the model expects.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

from tritonkit.errors import ClientError, Problem
from tritonkit.runtime.failures import translate
from tritonkit.runtime.tensors import Array, ModelInfo, model_info, prepare_inputs

__all__ = ["DEFAULT_URLS", "PROTOCOLS", "Client", "Outputs", "build_inputs", "infer", "normalize_url", "read_outputs"]

PROTOCOLS = ("grpc", "http")
#: Triton's default ports.
DEFAULT_URLS = {"grpc": "localhost:8001", "http": "localhost:8000"}
_T = TypeVar("_T")
Outputs = dict[str, Array]


def normalize_url(url: Optional[str], protocol: str) -> str:
    """``host:port`` for tritonclient: the protocol's default when None, any ``scheme://`` removed."""
    if protocol not in PROTOCOLS:
        raise ClientError(Problem(f"unknown protocol '{protocol}'", path=url, hint="use grpc or http"))
    url = url or DEFAULT_URLS[protocol]
    return url.split("://", 1)[1].rstrip("/") if "://" in url else url


def _module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def build_inputs(protocol: str, prepared: Sequence[tuple[str, str, Array]]) -> list[Any]:
    """Tritonclient ``InferInput`` objects for checked values (binary data over HTTP)."""
    module = _module(protocol)
    inputs = []
    for name, datatype, array in prepared:
        tensor = module.InferInput(name, list(array.shape), datatype)
        if protocol == "http":
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def read_outputs(result: Any, names: Sequence[str]) -> Outputs:
    """The named outputs of a result that are present, as numpy arrays."""
    outputs = {}
    for name in names:
        array = result.as_numpy(name)
        if array is not None:
            outputs[name] = array
    return outputs


class Client:
    """A connection to one Triton server over ``protocol`` ("grpc" or "http"); usable as a context manager."""

    def __init__(self, url: Optional[str] = None, protocol: str = "grpc", timeout_s: float = 60.0,
                 headers: Optional[Mapping[str, str]] = None) -> None:
        self.protocol = protocol
        self.url = normalize_url(url, protocol)
        self.timeout_s = timeout_s
        #: Sent with repository calls (e.g. the admin key a server under model control asks for).
        self.headers = dict(headers or {})
        self._infos: dict[str, ModelInfo] = {}
        module = _module(protocol)
        if protocol == "grpc":
            self._client = module.InferenceServerClient(self.url)
        else:
            self._client = module.InferenceServerClient(self.url, connection_timeout=timeout_s,
                                                        network_timeout=timeout_s)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def _call(self, run: Callable[[], _T], model: Optional[str] = None) -> _T:
        try:
            return run()
        except Exception as exc:
            raise translate(exc, url=self.url, protocol=self.protocol, timeout_s=self.timeout_s, model=model,
                            loaded=self.models) from exc

    def _timeout(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def is_server_ready(self) -> bool:
        """True when the server answers and is ready; False when it does not answer."""
        try:
            return bool(self._client.is_server_ready(**self._timeout()))
        except Exception:
            return False

    def is_model_ready(self, model: str) -> bool:
        """True when ``model`` is loaded and ready."""
        return bool(self._call(lambda: self._client.is_model_ready(model, **self._timeout()), model))

    def models(self) -> list[str]:
        """Names of the ready models, from the repository index."""
        headers = self.headers or None
        if self.protocol == "grpc":
            index = self._client.get_model_repository_index(headers=headers, as_json=True,
                                                            **self._timeout()).get("models", [])
        else:
            index = self._client.get_model_repository_index(headers=headers)
        return sorted({m["name"] for m in index if m.get("state") == "READY"})

    def model(self, model: str) -> ModelInfo:
        """Metadata and config of ``model`` (cached per client)."""
        if model not in self._infos:
            json_kw = {"as_json": True} if self.protocol == "grpc" else {}
            metadata = self._call(lambda: self._client.get_model_metadata(model, **json_kw, **self._timeout()),
                                  model)
            config = self._call(lambda: self._client.get_model_config(model, **json_kw, **self._timeout()), model)
            self._infos[model] = model_info(metadata, config)
        return self._infos[model]

    def infer(self, model: str, inputs: Mapping[str, Any], outputs: Optional[Sequence[str]] = None,
              parameters: Optional[Mapping[str, Any]] = None) -> Outputs:
        """Run one request; return ``{output name: array}`` (BYTES outputs hold ``bytes`` objects).

        Raises:
            ClientError: server not running, unknown model, wrong inputs, timeout, or the model's error.

        """
        info = self.model(model)
        names = list(outputs) if outputs else [t.name for t in info.outputs]
        if info.decoupled:
            responses = list(self.stream(model, inputs, parameters=parameters))
            return responses[-1] if responses else {}
        request = build_inputs(self.protocol, prepare_inputs(info, inputs, where=self.url))
        module = _module(self.protocol)
        wanted = [module.InferRequestedOutput(n, binary_data=True) if self.protocol == "http"
                  else module.InferRequestedOutput(n) for n in names]
        result = self._call(lambda: self._client.infer(model, request, outputs=wanted,
                                                       parameters=dict(parameters or {}) or None,
                                                       **self._timeout()), model)
        return read_outputs(result, names)

    def stream(self, model: str, inputs: Mapping[str, Any],
               parameters: Optional[Mapping[str, Any]] = None) -> Iterator[Outputs]:
        """Stream the responses of a (decoupled) model over gRPC, one dict per response.

        Leaving the loop early cancels the request on the server.

        Raises:
            ClientError: over HTTP (streaming needs gRPC), or any failure ``infer`` reports.

        """
        if self.protocol != "grpc":
            raise ClientError(Problem("streaming needs the gRPC protocol", path=self.url, model=model,
                                      hint="use --protocol grpc"))
        info = self.model(model)
        request = build_inputs("grpc", prepare_inputs(info, inputs, where=self.url))
        return _stream(self, info, request, parameters)


def _stream(client: Client, info: ModelInfo, request: list[Any],
            parameters: Optional[Mapping[str, Any]]) -> Iterator[Outputs]:
    import tritonclient.grpc as grpcclient

    names = [t.name for t in info.outputs]
    replies: queue.Queue[tuple[Any, Any]] = queue.Queue()
    connection = grpcclient.InferenceServerClient(client.url)
    finished = False
    try:
        def on_reply(result: Any, error: Any) -> None:
            replies.put((result, error))

        client._call(lambda: connection.start_stream(callback=on_reply), info.name)
        client._call(lambda: connection.async_stream_infer(
            info.name, request, enable_empty_final_response=True,
            parameters=dict(parameters or {}) or None), info.name)
        while not finished:
            try:
                result, error = replies.get(timeout=client.timeout_s)
            except queue.Empty:
                raise translate(TimeoutError(), url=client.url, protocol="grpc", timeout_s=client.timeout_s,
                                model=info.name) from None
            if error is not None:
                raise translate(error, url=client.url, protocol="grpc", timeout_s=client.timeout_s,
                                model=info.name, loaded=client.models)
            response = result.get_response()
            finished = response.parameters["triton_final_response"].bool_param
            outputs = read_outputs(result, names) if response.outputs else {}
            if outputs:
                yield outputs
    finally:
        connection.stop_stream(cancel_requests=not finished)
        connection.close()


def infer(model: str, inputs: Mapping[str, Any], url: Optional[str] = None, protocol: str = "grpc",
          timeout_s: float = 60.0) -> Outputs:
    """One-shot ``infer``: connect, run one request, close."""
    with Client(url, protocol=protocol, timeout_s=timeout_s) as client:
        return client.infer(model, inputs)
