"""A lean HTTP/1.1 client for Triton's infer endpoint: pre-built request bytes over kept-alive connections.

aiohttp (under ``tritonclient.http.aio``) spends more CPU per request than the server does on a trivial
model, which would make the client the bottleneck. Here each request is bytes built once per payload
(KServe v2 JSON header plus the binary tensor extension), written to an idle connection; the reply is
read by Content-Length. Metadata and statistics still go through tritonclient.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

import numpy as np
import numpy.typing as npt
from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

from tritonkit.errors import HttpWireError

__all__ = ["HttpWireError", "WireConnections", "build_infer_request", "output_text"]


def _tensor_bytes(array: npt.NDArray[Any]) -> bytes:
    if array.dtype == np.object_:
        serialized = serialize_byte_tensor(array)
        return bytes(serialized.item()) if serialized.size else b""
    return np.ascontiguousarray(array).tobytes()


def build_infer_request(host: str, model: str, payload: dict[str, npt.NDArray[Any]],
                        want_text: bool) -> bytes:
    """Return the whole HTTP request for one payload; outputs come back binary unless text is wanted."""
    blobs, inputs = [], []
    for name, array in payload.items():
        blob = _tensor_bytes(array)
        blobs.append(blob)
        inputs.append({"name": name, "shape": list(array.shape), "datatype": np_to_triton_dtype(array.dtype),
                       "parameters": {"binary_data_size": len(blob)}})
    header: dict[str, Any] = {"inputs": inputs}
    if not want_text:
        header["parameters"] = {"binary_data_output": True}
    head = json.dumps(header, separators=(",", ":")).encode()
    body = head + b"".join(blobs)
    lines = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\n"
             f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(head)}\r\n"
             f"Content-Length: {len(body)}\r\n\r\n")
    return lines.encode() + body


def output_text(body: bytes, header_length: Optional[int]) -> str:
    """Return the ``text_output`` strings of a JSON reply joined together ("" when there is none)."""
    document = json.loads(body[:header_length] if header_length else body)
    for output in document.get("outputs", []):
        if output.get("name") == "text_output":
            return "".join(str(v) for v in output.get("data", []))
    return ""


class _Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class _Connection(asyncio.Protocol):
    """One kept-alive connection; one request at a time; replies framed by Content-Length."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.waiter: Optional[asyncio.Future[_Reply]] = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpWireError("connection", f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        length = int(headers.get(b"content-length", b"-1"))
        if length < 0:
            self.waiter.set_exception(HttpWireError("protocol", "reply without Content-Length"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        status = int(lines[0].split(b" ", 2)[1])
        self.waiter.set_result(_Reply(status, headers, body))

    async def call(self, request: bytes) -> _Reply:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None


class WireConnections:
    """A pool of kept-alive connections to one server; grows to the number of requests in flight."""

    def __init__(self, url: str) -> None:
        host, _, port = url.rpartition(":")
        self.host, self.port = host or "localhost", int(port)
        self._idle: list[_Connection] = []
        self._all: list[_Connection] = []

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        try:
            _, connection = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        except OSError as exc:
            raise HttpWireError("connection", f"cannot connect: {exc}") from None
        self._all.append(connection)
        return connection

    async def infer(self, request: bytes) -> tuple[bytes, Optional[int]]:
        """Send one pre-built request; return the reply body and its JSON header length.

        Raises:
            HttpWireError: the reply is not 200, or the connection broke.

        """
        connection = await self._acquire()
        reply = await connection.call(request)
        self._idle.append(connection)
        if reply.status != 200:
            try:
                message = str(json.loads(reply.body).get("error", reply.body[:200]))
            except ValueError:
                message = reply.body[:200].decode("utf-8", "replace")
            raise HttpWireError(str(reply.status), message)
        header = reply.headers.get(b"inference-header-content-length")
        return reply.body, int(header) if header else None

    def close(self) -> None:
        """Close every connection."""
        for connection in self._all:
            if connection.transport is not None:
                connection.transport.close()
        self._all.clear()
        self._idle.clear()
