"""What keeps one client from hurting the others: body size, read timeouts, and a cap on requests in flight.

Two layers, both cheap on the way of a valid request:

- ``guarded_protocol``, uvicorn's httptools protocol with a deadline on the request line and headers (a
  client that connects, or starts a request, and stalls is disconnected after ``header_timeout_s``), a
  cap on their size (431), and the body limit: a body whose ``Content-Length`` is over it is refused (413)
  before a byte of it is read, a chunked one the moment its count passes it; either way the connection
  reads no further and closes.
- ``Guard``, an ASGI wrapper around the app: the whole body must arrive within ``body_timeout_s`` (else
  408); completions beyond ``max_concurrency`` in flight are refused at once (429 with ``Retry-After``),
  never queued. It checks the body limit too, for the app run under another server.

Every refusal is in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, Callable, Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tritonkit.gateway.errors import APIError

__all__ = ["MAX_HEADER_BYTES", "Guard", "GuardedProtocol", "guarded_protocol"]

#: The request line and headers of one request, at most (a browser's are under 8 KiB).
MAX_HEADER_BYTES = 64 * 1024
#: Under another server (``Guard`` alone), a body declared this many times over the limit is not read to its
#: end after the 413: the connection closes.
_DRAIN_FACTOR = 4
#: Seconds a refused connection stays open, unread, after its answer and the end of our stream, before it closes.
_LINGER_S = 1.0

_ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _mib(size: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"


def _too_large(limit: int, declared: Optional[int] = None) -> APIError:
    size = f"is {_mib(declared)}, over" if declared is not None else "is over"
    return APIError(413, f"the request body {size} {_mib(limit)}, the gateway's limit (--max-body-size)",
                    code="request_too_large")


def _content_length(headers: list[tuple[bytes, bytes]]) -> tuple[Optional[int], bool]:
    """The declared ``Content-Length`` (None when absent or not a number) and whether ``Expect: 100-continue``."""
    length, expect = None, False
    for name, value in headers:
        if name == b"content-length":
            length = int(value) if value.strip().isdigit() else None
        elif name == b"expect":
            expect = value.strip().lower() == b"100-continue"
    return length, expect


async def _answer(error: APIError, send: Any) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Body:
    """The request's ``receive``, counting the body's bytes against the limit and its time against the deadline.

    Once the body is complete it passes messages through untouched (the app then waits on it for the
    client's disconnect, with no deadline).
    """

    __slots__ = ("_deadline", "_limit", "_receive", "_timed_out", "done", "size")

    def __init__(self, receive: Any, limit: int, timeout_s: float) -> None:
        self._receive, self._limit = receive, limit
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._timed_out = False
        self.done = False
        self.size = 0

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self._timed_out = True
        task.cancel()

    async def __call__(self) -> dict[str, Any]:
        if self.done:
            return await self._receive()  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        # A timer per read, not asyncio.wait_for: that starts a task per call on Python < 3.12.
        timer = loop.call_at(self._deadline, self._expire, task)
        try:
            message: dict[str, Any] = await self._receive()
        except asyncio.CancelledError:
            if not self._timed_out:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: this cancellation is handled here
            if uncancel is not None:
                uncancel()
            raise APIError(408, "the request body did not arrive in time: send it within the gateway's "
                           "body timeout (--body-timeout)", code="request_timeout",
                           headers={"Connection": "close"}) from None
        finally:
            timer.cancel()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self._limit:
                raise _too_large(self._limit)
            self.done = not message.get("more_body", False)
        return message


class Guard:
    """The ASGI wrapper: body limits and deadline for every request, the in-flight cap for ``capped`` paths."""

    def __init__(self, app: _ASGIApp, *, max_body_bytes: int, body_timeout_s: float, max_concurrency: int,
                 capped: frozenset[str]) -> None:
        self.app = app
        self.max_body_bytes, self.body_timeout_s = max_body_bytes, body_timeout_s
        self.max_concurrency, self.capped = max_concurrency, capped
        #: Requests to ``capped`` paths being answered now.
        self.in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # noqa: D102
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, expect = _content_length(scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            # Unread, the rest of the body is discarded by the server as it comes (no memory), unless the
            # client waits for '100 Continue' (it will not send it) or declares an absurd size.
            close = expect or declared > _DRAIN_FACTOR * self.max_body_bytes
            refusal = _too_large(self.max_body_bytes, declared)
            if close:
                refusal.headers["Connection"] = "close"
            await _answer(refusal, send)
            return
        path = scope["path"][len(scope.get("root_path", "")):]
        capped = path in self.capped
        if capped:
            if self.in_flight >= self.max_concurrency:
                await _answer(APIError(
                    429, f"the gateway is answering {self.in_flight} requests, its limit (--max-concurrency); "
                    "retry in a moment", type_="rate_limit_error", code="too_many_requests",
                    headers={"Retry-After": "1"}), send)
                return
            self.in_flight += 1
        try:
            await self.app(scope, _Body(receive, self.max_body_bytes, self.body_timeout_s), send)
        finally:
            if capped:
                self.in_flight -= 1


def _refusal(error: APIError, reason: bytes) -> bytes:
    body = json.dumps(error.body()).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (error.status, reason, len(body))) + body


class GuardedProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol: a deadline and a size cap on each request's headers, and the body limit.

    The deadline runs from the connection's start, and again from the end of each response, to the end of
    the next request's headers: a client that connects and sends nothing, or trickles its headers, or is
    still sending the rest of a body its answer did not need after the deadline, is disconnected (408 when
    part of a request came). uvicorn's own ``timeout_keep_alive`` still closes idle kept-alive connections
    sooner.

    A body is gathered here and handed to the app whole, once complete; one over ``max_body_bytes`` is
    refused before the app sees a byte of it: from its declared length at the end of the headers, or, sent
    chunked, in the parser's callback the moment the count passes the limit (the app, waiting for that
    body, is told the client is gone). A refusal is answered at once and the connection reads no further:
    reading and discarding the rest of fifty 10 MB uploads took the event loop from everyone else.
    """

    header_timeout_s = 10.0
    max_header_bytes = MAX_HEADER_BYTES
    max_body_bytes = 4 * 1024 * 1024
    _header_timer: Optional[asyncio.TimerHandle] = None
    _header_bytes = 0
    _started = False
    _refused = False
    _body_cycle: Any = None
    _body_bytes = 0
    _pieces: list[bytes]

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes, self._started = 0, False
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, error: APIError, reason: bytes) -> None:
        """Answer ``error`` and end the connection, reading nothing more of what the client sends.

        The answer is followed by the end of our side of the stream, and the connection is closed a moment
        later, not at once: a close with unread data resets it, and a reset can overtake an answer still on
        its way. The parser's callbacks for the rest of the last read do nothing from here.
        """
        self._disarm()
        self._refused = True
        if self.transport.is_closing():
            return
        self.flow.pause_reading()
        self.transport.write(_refusal(error, reason))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self._close)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._started:
            self._refuse(APIError(408, f"the request's headers did not arrive within {self.header_timeout_s:g} s "
                                  "(the gateway's --header-timeout)", code="request_timeout"), b"Request Timeout")
        elif not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        super().connection_made(transport)  # type: ignore[arg-type]
        self._pieces = []
        self._arm()

    def connection_lost(self, exc: Optional[Exception]) -> None:  # noqa: D102
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        super().data_received(data)
        # Still in a request's headers after this read: the read was headers; httptools buffers a header
        # until it is whole, so count here.
        if self._started and self._header_timer is not None:
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(APIError(431, f"the request's line and headers are over {self.max_header_bytes} "
                                      "bytes", code="request_header_fields_too_large"),
                             b"Request Header Fields Too Large")

    def on_message_begin(self) -> None:  # noqa: D102
        super().on_message_begin()
        self._started = True

    def on_headers_complete(self) -> None:  # noqa: D102
        self._disarm()
        if self._refused:
            return
        declared, _ = _content_length(self.headers)
        if declared is not None and declared > self.max_body_bytes:
            self._refuse(_too_large(self.max_body_bytes, declared), b"Payload Too Large")
            return
        before = self.cycle
        super().on_headers_complete()
        # A request of ours has a cycle of its own (an upgrade has none); its body is counted from here.
        self._body_cycle, self._body_bytes, self._pieces = (self.cycle if self.cycle is not before else None), 0, []

    def on_body(self, body: bytes) -> None:  # noqa: D102
        cycle = self._body_cycle
        if self._refused:
            return
        if cycle is None or cycle.response_started:  # an upgrade, or a body still coming after the answer began
            self._pieces = []
            super().on_body(body)
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes:
            # The app sees the client gone (its receive says so, its sends are dropped); what came is let go.
            self._pieces = []
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(_too_large(self.max_body_bytes), b"Payload Too Large")
            return
        # Kept here, and handed to the app whole (every route of the gateway reads the whole body before it
        # parses it). uvicorn's own on_body passes each piece on, and stops reading at 64 KiB until the app has
        # taken them: a round trip through the app's task, and a copy, per piece, which made the way of fifty
        # chunked bodies to the limit 2-3 times slower and held the event loop from /health meanwhile
        # (benchmarks/gateway_abuse.py). What is held is bounded by the limit all the same.
        self._pieces.append(body)

    def on_message_complete(self) -> None:  # noqa: D102
        if self._refused:
            return
        cycle, pieces, self._pieces = self._body_cycle, self._pieces, []
        if cycle is not None and pieces and not cycle.response_started:
            # bytes, not uvicorn's bytearray: the cycle's receive hands it over as it is, without a copy.
            cycle.body = b"".join(pieces)
        super().on_message_complete()

    def on_response_complete(self) -> None:  # noqa: D102
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm()


def guarded_protocol(header_timeout_s: float, max_body_bytes: int = GuardedProtocol.max_body_bytes,
                     max_header_bytes: int = MAX_HEADER_BYTES) -> type[asyncio.Protocol]:
    """``GuardedProtocol`` with these limits, for ``uvicorn.Config(http=...)``."""
    return type("GuardedProtocol", (GuardedProtocol,), {
        "header_timeout_s": header_timeout_s, "max_body_bytes": max_body_bytes, "max_header_bytes": max_header_bytes})
