"""bench's lean HTTP client (bench/sse.py) against real sockets that misbehave in known ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tritonkit.bench import BenchOptions
from tritonkit.bench.client import error_kind
from tritonkit.bench.openai import OpenAIBenchClient
from tritonkit.bench.sse import SSEConnections
from tritonkit.errors import HttpWireError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length) if length else b""


async def _with_server(handler: Handler, work: Callable[[str], Awaitable[Any]]) -> Any:
    """Serve ``handler`` on a free port while ``work`` runs against it; then close every connection."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await work(f"http://127.0.0.1:{port}/v1")
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.01)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"


def test_events_split_across_chunks_and_writes_are_read_whole() -> None:
    """A server may cut an event anywhere; bench joins the pieces before it reads a line."""
    body = _event("Par") + _event("is") + b"data: [DONE]\n\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(body), 7):  # 7-byte chunks, each written on its own
                writer.write(_chunk(body[start:start + 7]))
                await writer.drain()
                await asyncio.sleep(0.001)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def work(url: str) -> list[Any]:
        options = BenchOptions(model="m", levels=(1,), openai_url=url, stream=True, output_tokens=2)
        client = OpenAIBenchClient(options)
        client.prepare([b'{"model": "m"}'])
        try:
            return [await client.send(i) for i in range(3)]  # the same kept-alive connection each time
        finally:
            await client.close()

    samples = asyncio.run(_with_server(handler, work))
    assert [s.error for s in samples] == [None] * 3
    assert [s.output_text for s in samples] == ["Paris"] * 3
    assert all(s.ttft_s is not None and s.ttft_s <= s.end_s - s.start_s for s in samples)


def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    """Servers close idle connections (uvicorn after 5 s), possibly as a request arrives on one: that
    request, unanswered, goes out again on a new connection."""
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await _read_request(reader)  # the next request on this connection: hang up without an answer

    async def work(url: str) -> list[bytes]:
        pool = SSEConnections(url, {}, timeout_s=5)
        bodies = []
        for _ in range(3):
            reply = await pool.send(pool.request("GET", "models"))
            bodies.append(await reply.read())
            reply.release()
        pool.close()
        return bodies

    assert asyncio.run(_with_server(handler, work)) == [b"ok"] * 3
    assert len(connections) == 3


def test_a_server_that_never_answers_times_out_and_one_that_speaks_garbage_fails() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # until the client hangs up

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HELLO THERE\r\n\r\n")
        await writer.drain()

    async def work(url: str) -> BaseException:
        pool = SSEConnections(url, {}, timeout_s=0.2)
        try:
            reply = await pool.send(pool.request("POST", "chat/completions", b"{}"))
            await reply.read()
        except BaseException as exc:  # the test looks at what it was
            return exc
        finally:
            pool.close()
        raise AssertionError("no failure")

    timed_out = asyncio.run(_with_server(silent, work))
    assert isinstance(timed_out, TimeoutError) and error_kind(timed_out) == "timeout"
    broken = asyncio.run(_with_server(garbage, work))
    assert isinstance(broken, HttpWireError) and error_kind(broken) == "protocol", broken


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="not an http"):
        SSEConnections("ftp://example.com/v1", {}, timeout_s=1)
