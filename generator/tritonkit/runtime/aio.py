"""Asyncio helpers over tritonclient's aio clients (gRPC and HTTP), the same shape as ``Client``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, Optional, TypeVar

from tritonkit.errors import ClientError, Problem
from tritonkit.runtime.client import Outputs, build_inputs, normalize_url, read_outputs
from tritonkit.runtime.failures import translate
from tritonkit.runtime.tensors import ModelInfo, model_info, prepare_inputs

__all__ = ["AsyncClient"]

_T = TypeVar("_T")


class AsyncClient:
    """An asyncio connection to one Triton server; ``async with AsyncClient(url) as client:``."""

    def __init__(self, url: Optional[str] = None, protocol: str = "grpc", timeout_s: float = 60.0) -> None:
        self.protocol = protocol
        self.url = normalize_url(url, protocol)
        self.timeout_s = timeout_s
        self._infos: dict[str, ModelInfo] = {}
        if protocol == "grpc":
            import tritonclient.grpc.aio as grpc_aio

            self._client: Any = grpc_aio.InferenceServerClient(self.url)
        else:
            import tritonclient.http.aio as http_aio

            self._client = http_aio.InferenceServerClient(self.url, conn_timeout=timeout_s)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        await self._client.close()

    async def _call(self, awaitable: Awaitable[_T], model: Optional[str] = None) -> _T:
        try:
            return await asyncio.wait_for(awaitable, timeout=self.timeout_s)
        except Exception as exc:
            raise await self._translate(exc, model) from exc

    async def _translate(self, exc: BaseException, model: Optional[str]) -> ClientError:
        names: list[str] = []
        if model is not None:
            try:
                names = await self.models()
            except Exception:
                names = []
        return translate(exc, url=self.url, protocol=self.protocol, timeout_s=self.timeout_s, model=model,
                         loaded=lambda: names)

    async def is_server_ready(self) -> bool:
        """True when the server answers and is ready; False when it does not answer."""
        try:
            return bool(await asyncio.wait_for(self._client.is_server_ready(), timeout=self.timeout_s))
        except Exception:
            return False

    async def models(self) -> list[str]:
        """Names of the ready models, from the repository index."""
        if self.protocol == "grpc":
            index = (await self._client.get_model_repository_index(as_json=True)).get("models", [])
        else:
            index = await self._client.get_model_repository_index()
        return sorted({m["name"] for m in index if m.get("state") == "READY"})

    async def model(self, model: str) -> ModelInfo:
        """Metadata and config of ``model`` (cached per client)."""
        if model not in self._infos:
            json_kw = {"as_json": True} if self.protocol == "grpc" else {}
            metadata = await self._call(self._client.get_model_metadata(model, **json_kw), model)
            config = await self._call(self._client.get_model_config(model, **json_kw), model)
            self._infos[model] = model_info(metadata, config)
        return self._infos[model]

    async def infer(self, model: str, inputs: Mapping[str, Any], outputs: Optional[Sequence[str]] = None,
                    parameters: Optional[Mapping[str, Any]] = None) -> Outputs:
        """Run one request; return ``{output name: array}``. Raises ClientError as ``Client.infer`` does."""
        info = await self.model(model)
        names = list(outputs) if outputs else [t.name for t in info.outputs]
        request = build_inputs(self.protocol, prepare_inputs(info, inputs, where=self.url))
        if self.protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        wanted = [module.InferRequestedOutput(n) for n in names]
        result = await self._call(self._client.infer(model, request, outputs=wanted,
                                                     parameters=dict(parameters or {}) or None), model)
        return read_outputs(result, names)

    async def stream(self, model: str, inputs: Mapping[str, Any],
                     parameters: Optional[Mapping[str, Any]] = None) -> AsyncIterator[Outputs]:
        """Stream the responses of a decoupled model over gRPC; leaving the loop cancels the request."""
        if self.protocol != "grpc":
            raise ClientError(Problem("streaming needs the gRPC protocol", path=self.url, model=model,
                                      hint="use protocol grpc"))
        info = await self.model(model)
        request = {"model_name": model, "inputs": build_inputs("grpc", prepare_inputs(info, inputs, where=self.url)),
                   "enable_empty_final_response": True, "parameters": dict(parameters or {}) or None}

        async def requests() -> AsyncIterator[dict[str, Any]]:
            yield request

        replies = self._client.stream_infer(requests())
        names = [t.name for t in info.outputs]
        finished = False
        try:
            while not finished:
                try:
                    result, error = await asyncio.wait_for(replies.__anext__(), timeout=self.timeout_s)
                except StopAsyncIteration:  # the server closed the stream after the last response
                    finished = True
                    break
                except Exception as exc:
                    raise await self._translate(exc, model) from exc
                if error is not None:
                    raise await self._translate(error, model)
                response = result.get_response()
                finished = response.parameters["triton_final_response"].bool_param
                if response.outputs:
                    yield read_outputs(result, names)
        finally:
            if not finished:
                replies.cancel()
