"""A lean HTTP/1.1 client for OpenAI-compatible servers: pre-built requests, replies read as they arrive.

``bench --openai`` times a server, so the client's own cost is part of every figure it reports. aiohttp
spends about 0.3 ms of a request's latency on its own side on a 2-core machine (request objects, the
line reader, timeouts); here a request is bytes built once per body, written to a kept-alive
connection, and the reply is parsed by ``httptools`` (the parser uvicorn uses; chunked bodies
included) and handed over chunk by chunk.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import Any, Optional, Union
from urllib.parse import urlsplit

from tritonkit.errors import ClientError, HttpWireError, Problem

__all__ = ["Reply", "SSEConnections"]

def _httptools() -> Any:
    """The ``httptools`` module (the ``bench`` extra), imported on first use: the CLI loads without it.

    Raises:
        ClientError: it is not installed.

    """
    try:
        import httptools
    except ModuleNotFoundError:
        raise ClientError(Problem("bench --openai reads HTTP replies with httptools, which is not installed",
                                  hint="pip install 'tritonkit[bench]'")) from None
    return httptools


#: What the parser hands the reader: a status (headers complete), body bytes, None (reply complete), or a failure.
_Piece = Union[int, bytes, None, BaseException]


class _Connection(asyncio.Protocol):
    """One kept-alive connection, one request at a time; ``httptools`` frames the replies."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.Transport] = None
        self._httptools = _httptools()
        self.parser = self._httptools.HttpResponseParser(self)
        self.pieces: collections.deque[_Piece] = collections.deque()
        self.wakeup: Optional[asyncio.Future[None]] = None
        self.closed = False
        self.keep_alive = True
        #: Whether anything of the current reply has arrived (a kept-alive connection the server had
        #: closed fails before that, and the request can be sent again).
        self.answered = False

    # asyncio.Protocol -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        self._push(HttpWireError("connection", f"connection lost: {exc or 'closed by the server'}"))

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except self._httptools.HttpParserError as exc:
            self._push(HttpWireError("protocol", f"malformed HTTP reply: {exc}"))
            self.abort()

    # httptools callbacks ----------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._push(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self._push(bytes(body))

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self._push(None)

    # the reader's side ------------------------------------------------------------------------------
    def _push(self, piece: _Piece) -> None:
        self.pieces.append(piece)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def next(self) -> _Piece:
        """The next piece of the reply; raises what broke it."""
        while not self.pieces:
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        piece = self.pieces.popleft()
        if isinstance(piece, BaseException):
            raise piece
        return piece

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Reply:
    """One reply: ``status``, then its body with ``chunks()`` or ``read()``; ``release()`` when done."""

    def __init__(self, pool: SSEConnections, connection: _Connection, status: int,
                 timer: asyncio.TimerHandle) -> None:
        self.status = status
        self._pool, self._connection, self._timer = pool, connection, timer
        self._complete = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (chunked transfer already undone)."""
        while not self._complete:
            piece = await self._connection.next()
            if piece is None:
                self._complete = True
                return
            if isinstance(piece, bytes):
                yield piece

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self) -> None:
        """Give the connection back when its reply was read to the end (else it is closed)."""
        self._timer.cancel()
        if self._complete and self._connection.keep_alive and not self._connection.closed:
            self._pool.idle.append(self._connection)
        else:
            self._connection.abort()


class SSEConnections:
    """Kept-alive connections to one server (``http://`` or ``https://``); grows to the requests in flight."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        _httptools()  # a missing extra fails here, before any request
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = parts.path.rstrip("/")
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        netloc = parts.netloc.rpartition("@")[2]
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": netloc, **headers}.items())
        self._timeout_s = timeout_s
        self.idle: list[_Connection] = []
        self._all: list[_Connection] = []

    def request(self, method: str, route: str, body: bytes = b"") -> bytes:
        """The bytes of one request to ``route`` (under the base URL's path); build once, send many times."""
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        return f"{method} {self.path}/{route.lstrip('/')} HTTP/1.1\r\n{self._head}{length}\r\n".encode() + body

    async def _connect(self) -> _Connection:
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Connection, self.host, self.port, ssl=self._ssl)
        except OSError as exc:
            raise HttpWireError("connection", f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self._all = [c for c in self._all if not c.closed]
        self._all.append(connection)
        return connection

    async def send(self, request: bytes) -> Reply:
        """Write ``request`` and wait for the reply's status; the body follows through the ``Reply``.

        Raises:
            HttpWireError: the connection broke, or the reply is not HTTP.
            TimeoutError: no whole reply within the timeout (the connection is dropped).

        """
        loop = asyncio.get_running_loop()
        reused = False
        while True:
            connection = None
            while self.idle and connection is None:
                candidate = self.idle.pop()
                connection = None if candidate.closed else candidate
            reused, connection = connection is not None, connection or await self._connect()
            connection.answered = False
            timer = loop.call_later(self._timeout_s, _expire, connection)
            assert connection.transport is not None
            connection.transport.write(request)
            try:
                status = await connection.next()
            except HttpWireError:
                timer.cancel()
                connection.abort()
                if reused and not connection.answered:  # the server had closed the idle connection
                    continue
                raise
            assert isinstance(status, int)
            return Reply(self, connection, status, timer)

    def close(self) -> None:
        """Close every connection."""
        for connection in self._all:
            connection.abort()
        self._all.clear()
        self.idle.clear()


def _expire(connection: _Connection) -> None:
    connection._push(TimeoutError("no complete reply within the timeout"))
    connection.abort()
