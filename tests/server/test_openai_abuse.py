"""The OpenAI gateway under abuse: oversized bodies, stalled and trickling clients, floods, wrong types.

Most tests need no LLM: the gateway checks a request before it asks Triton anything, so they run it against
a port where no Triton listens, over real HTTP on loopback (raw sockets where a client must misbehave, the
official ``openai`` SDK where one behaves). The last ones use the default example (SmolLM2): a prompt of
megabytes is templated and counted off the event loop, and valid traffic keeps its answers beside the abuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tritonkit.gateway import GatewaySettings, GatewayThread
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports

QUESTION = "What is the capital of France?"
LIMIT = 64 * 1024


def _start(url: str | None = None, repository: Any = None, **limits: Any) -> GatewayThread:
    settings = GatewaySettings(url=url or f"localhost:{free_ports(1)[0]}", repository=repository, **limits)
    return GatewayThread(settings, port=free_ports(1)[0]).start()


_OPEN: list[socket.socket] = []


@pytest.fixture
def gateway() -> Iterator[GatewayThread]:
    """A gateway with small limits, in front of no Triton at all."""
    running = _start(max_body_bytes=LIMIT, max_concurrency=2, header_timeout_s=1.0, body_timeout_s=1.0)
    yield running
    while _OPEN:
        _OPEN.pop().close()
    running.stop()


def _connect(gateway: GatewayThread) -> socket.socket:
    connection = socket.create_connection((gateway.host, gateway.port))
    connection.settimeout(10)
    _OPEN.append(connection)
    return connection


def _answer(connection: socket.socket) -> tuple[int, dict[str, str], Any]:
    """One HTTP answer read off the socket: status, headers, JSON body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = connection.recv(65536)
        assert piece, f"the connection closed without an answer: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        rest += connection.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(rest)


def _openai_shaped(body: Any, code: str) -> None:
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == code, body


def _chat(**fields: Any) -> bytes:
    return json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": QUESTION}], **fields}).encode()


def _post_head(path: str, framing: str, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{extra}{framing}\r\n\r\n".encode()


def test_a_declared_oversized_body_is_refused_unread_and_the_connection_ends(gateway: GatewayThread) -> None:
    connection = _connect(gateway)
    start = time.perf_counter()
    connection.sendall(_post_head("/v1/chat/completions", f"content-length: {3 * LIMIT}"))
    status, headers, body = _answer(connection)
    assert status == 413 and time.perf_counter() - start < 0.5
    _openai_shaped(body, "request_too_large")
    assert "192 KiB, over 64 KiB" in body["error"]["message"], body
    assert headers["connection"] == "close"
    # The client may send its body anyway: nothing more is read, and the gateway's end of the stream follows.
    connection.sendall(b"x" * LIMIT)
    assert connection.recv(1) == b""
    other = _connect(gateway)  # the next request comes on a new connection
    other.sendall(b"GET /v1/models HTTP/1.1\r\nhost: test\r\n\r\n")
    status, _, body = _answer(other)
    assert status == 503
    _openai_shaped(body, "triton_unavailable")


@pytest.mark.parametrize(("declared", "expect"), [(LIMIT + 1, "expect: 100-continue\r\n"), (10**12, "")],
                         ids=["waits-for-100-continue", "declares-a-terabyte"])
def test_a_body_that_will_not_or_should_not_be_read_to_its_end_gets_413_and_a_closed_connection(
        gateway: GatewayThread, declared: int, expect: str) -> None:
    connection = _connect(gateway)
    connection.sendall(_post_head("/v1/completions", f"content-length: {declared}", expect))
    status, headers, body = _answer(connection)
    assert status == 413 and headers["connection"] == "close"
    _openai_shaped(body, "request_too_large")
    assert connection.recv(1) == b""


def test_a_chunked_body_is_refused_once_it_passes_the_limit(gateway: GatewayThread) -> None:
    connection = _connect(gateway)
    connection.sendall(_post_head("/v1/chat/completions", "transfer-encoding: chunked"))
    piece = b"a" * 4096
    sent = 0
    connection.setblocking(False)
    answer = b""
    while not answer:
        if sent <= 4 * LIMIT:  # far past the limit: stop, and wait for the answer
            connection.setblocking(True)
            connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            connection.setblocking(False)
        try:
            answer = connection.recv(65536)
        except BlockingIOError:
            time.sleep(0.001 if sent <= 4 * LIMIT else 0.05)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert LIMIT < sent <= LIMIT + 64 * 1024, sent  # read no further than it had to
    assert b'"request_too_large"' in answer


def _chunked(body: bytes, piece: int = 256 * 1024) -> bytes:
    framed = (b"%x\r\n%s\r\n" % (len(body[i:i + piece]), body[i:i + piece]) for i in range(0, len(body), piece))
    return b"".join(framed) + b"0\r\n\r\n"


def test_a_chunked_body_far_over_the_limit_is_refused_at_once_and_read_no_further() -> None:
    """20 MB sent chunked at a 1 MiB limit: 413 as the count passes 1 MiB, then the gateway's end of the stream.

    The client is still uploading when the answer comes; the gateway reads nothing more (the upload stalls
    once the kernel's buffers are full, far short of 20 MB, and is reset when the connection closes).
    """
    running = _start(max_body_bytes=2**20)
    connection = socket.create_connection((running.host, running.port))
    try:
        connection.settimeout(10)
        wire = _chunked(b"x" * (20 * 10**6))
        upload: dict[str, Any] = {}

        def send() -> None:
            try:
                connection.sendall(wire)
                upload["done"] = True
            except OSError as exc:
                upload["error"] = exc

        connection.sendall(_post_head("/v1/chat/completions", "transfer-encoding: chunked"))
        start = time.perf_counter()
        uploader = threading.Thread(target=send, daemon=True)
        uploader.start()
        status, headers, body = _answer(connection)
        took = time.perf_counter() - start
        assert status == 413 and headers["connection"] == "close", (status, headers)
        _openai_shaped(body, "request_too_large")
        assert "over 1 MiB" in body["error"]["message"], body
        assert took < 0.5, f"refused {took:.2f} s after the headers"
        assert connection.recv(65536) == b"", "the answer should be followed by the end of the gateway's stream"
        uploader.join(10)
        assert "done" not in upload, "the gateway read the whole 20 MB body after refusing it"
        assert isinstance(upload.get("error"), ConnectionError), upload
    finally:
        connection.close()
        running.stop()


def test_a_chunked_body_within_the_limit_reaches_the_app(gateway: GatewayThread) -> None:
    connection = _connect(gateway)
    connection.sendall(_post_head("/v1/chat/completions", "transfer-encoding: chunked") + _chunked(_chat(), 7))
    status, headers, body = _answer(connection)  # read whole, parsed, and only then sent to (no) Triton
    assert status == 503 and headers.get("connection") != "close"
    _openai_shaped(body, "triton_unavailable")


def test_the_official_sdk_sees_its_own_413(gateway: GatewayThread) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "x" * 2 * LIMIT}])
    assert refused.value.status_code == 413
    assert isinstance(refused.value.body, dict) and refused.value.body["code"] == "request_too_large"


def test_the_sdk_reads_its_413_though_its_upload_is_cut_short() -> None:
    """20 MB at a 1 MiB limit: more than the sockets' buffers hold, so the SDK's upload stalls, unread, and is
    reset when the gateway closes; it reads the answer that came first (httpcore does on a write error)."""
    running = _start(max_body_bytes=2**20)
    try:
        client = openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0, timeout=30)
        start = time.perf_counter()
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "x" * 20 * 10**6}])
        took = time.perf_counter() - start
        assert refused.value.status_code == 413, refused.value
        assert isinstance(refused.value.body, dict) and refused.value.body["code"] == "request_too_large"
        assert took < 5, f"the SDK had its answer {took:.1f} s after it began sending"
    finally:
        running.stop()


def test_requests_over_the_cap_get_429_with_retry_after_and_slots_come_back(gateway: GatewayThread) -> None:
    """Two requests whose bodies never come hold both slots; a third is refused at once, /health is not capped."""
    stalled = [_connect(gateway) for _ in range(2)]
    for connection in stalled:
        connection.sendall(_post_head("/v1/chat/completions", "content-length: 100"))
    time.sleep(0.2)
    extra = _connect(gateway)
    start = time.perf_counter()
    extra.sendall(_post_head("/v1/completions", "content-length: 2") + b"{}")
    status, headers, body = _answer(extra)
    assert status == 429 and headers["retry-after"] == "1" and time.perf_counter() - start < 0.5
    _openai_shaped(body, "too_many_requests")
    health = _connect(gateway)
    health.sendall(b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n")
    assert _answer(health)[0] == 503  # answered (Triton is down), not capped
    # The stalled bodies time out (408, connection closed) and free their slots.
    for connection in stalled:
        status, headers, body = _answer(connection)
        assert status == 408 and headers["connection"] == "close"
        _openai_shaped(body, "request_timeout")
    extra.sendall(_post_head("/v1/completions", "content-length: 2") + b"{}")
    status, _, body = _answer(extra)
    assert status == 400 and body["error"]["param"] == "model"


def test_a_client_that_stalls_before_or_within_its_headers_is_disconnected(gateway: GatewayThread) -> None:
    idle = _connect(gateway)
    trickling = _connect(gateway)
    start = time.perf_counter()
    for byte in b"GET /health HTTP/1.1\r\nhost: te":  # a byte every 30 ms: past the 1 s header deadline
        trickling.sendall(bytes([byte]))
        time.sleep(0.03)
    status, headers, body = _answer(trickling)
    assert status == 408 and headers["connection"] == "close"
    _openai_shaped(body, "request_timeout")
    assert idle.recv(1) == b"" and time.perf_counter() - start < 3


def test_headers_past_64_kib_get_431(gateway: GatewayThread) -> None:
    connection = _connect(gateway)
    connection.sendall(b"GET /health HTTP/1.1\r\nx-padding: ")
    for _ in range(10):
        try:
            connection.sendall(b"a" * 16384)
        except OSError:
            break
        time.sleep(0.01)
    status, headers, body = _answer(connection)
    assert status == 431 and headers["connection"] == "close"
    _openai_shaped(body, "request_header_fields_too_large")


@pytest.mark.parametrize(("fields", "param", "needle"), [
    ({"stream": "yes"}, "stream", "valid boolean"),
    ({"top_k": 2**40}, "top_k", "2147483647"),
    ({"max_tokens": 10**12}, "max_tokens", "2147483647"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"stop": ["fine", "\ud800"]}, "stop.1", "lone surrogate"),
])
def test_wrong_types_are_400_naming_the_field_before_triton_is_asked(gateway: GatewayThread, fields: dict[str, Any],
                                                                      param: str, needle: str) -> None:
    body = _chat(**fields)  # json.dumps writes a lone surrogate as its \\ud800 escape, as a hostile client may
    connection = _connect(gateway)
    connection.sendall(_post_head("/v1/chat/completions", f"content-length: {len(body)}") + body)
    status, _, answer = _answer(connection)
    assert status == 400 and answer["error"]["param"] == param, answer
    assert needle in answer["error"]["message"], answer


def test_the_sdk_gets_the_same_refusal(gateway: GatewayThread) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}],
                                       extra_body={"stream": "yes"})
    assert refused.value.param == "stream" and "valid boolean" in refused.value.message


# -- with the LLM ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm_gateway(default_example_server: Server) -> Iterator[GatewayThread]:
    running = _start(default_example_server.grpc_url, default_example_server.repo)
    yield running
    running.stop()


def _greedy(gateway: GatewayThread) -> str:
    with openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=120) as client:
        answer = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}],
                                                temperature=0.0, max_tokens=16)
    return answer.choices[0].message.content or ""


class _HealthProbe(threading.Thread):
    """``GET /health`` every 10 ms on a kept-alive connection while it runs."""

    def __init__(self, gateway: GatewayThread) -> None:
        super().__init__(daemon=True)
        self.gateway, self.stop, self.latencies = gateway, threading.Event(), []

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.gateway.host, self.gateway.port, timeout=30)
        while not self.stop.is_set():
            start = time.perf_counter()
            connection.request("GET", "/health")
            assert connection.getresponse().read() == b'{"status":"ok"}'
            self.latencies.append(time.perf_counter() - start)
            self.stop.wait(0.01)
        connection.close()

    def __enter__(self) -> _HealthProbe:
        self.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


@pytest.mark.triton
@pytest.mark.llm
def test_a_megabytes_prompt_is_counted_off_the_event_loop(llm_gateway: GatewayThread) -> None:
    """3 MiB of text is ~2 s of tokenising on this CPU: /health must not wait for it, nor must Triton see it."""
    expected = _greedy(llm_gateway)

    async def too_long() -> Any:
        async with openai.AsyncOpenAI(base_url=llm_gateway.url, api_key="unused", max_retries=0,
                                      timeout=120) as client:
            with pytest.raises(openai.BadRequestError) as refused:
                await client.completions.create(model="smollm2", prompt="lorem ipsum " * (3 * 2**20 // 12))
        return refused.value

    with _HealthProbe(llm_gateway) as probe:
        started = time.perf_counter()
        refused = asyncio.run(too_long())
        took = time.perf_counter() - started
    assert refused.code == "context_length_exceeded" and refused.param == "prompt", refused.message
    assert "takes at most 1024" in refused.message
    assert max(probe.latencies) < min(0.5, took / 2), (max(probe.latencies), took)
    assert _greedy(llm_gateway) == expected


@pytest.mark.triton
@pytest.mark.llm
def test_valid_traffic_keeps_its_answers_beside_oversized_bodies_and_wrong_types(llm_gateway: GatewayThread) -> None:
    expected = _greedy(llm_gateway)

    async def abuse() -> list[int]:
        async def huge() -> int:
            reader, writer = await asyncio.open_connection(llm_gateway.host, llm_gateway.port)
            writer.write(_post_head("/v1/chat/completions", f"content-length: {10 * 10**6}"))
            writer.write(b"z" * (10 * 10**6))
            line = await reader.readline()
            writer.close()
            with contextlib.suppress(ConnectionError):  # the gateway reads none of it, and resets what it left
                await writer.wait_closed()
            return int(line.split()[1])

        async def wrong() -> int:
            reader, writer = await asyncio.open_connection(llm_gateway.host, llm_gateway.port)
            body = _chat(stream="yes")
            writer.write(_post_head("/v1/chat/completions", f"content-length: {len(body)}") + body)
            line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return int(line.split()[1])

        return await asyncio.gather(*(huge() for _ in range(20)), *(wrong() for _ in range(20)))

    answers: list[str] = []
    asker = threading.Thread(target=lambda: answers.extend(_greedy(llm_gateway) for _ in range(2)))
    with _HealthProbe(llm_gateway) as probe:
        asker.start()
        statuses = asyncio.run(abuse())
        asker.join()
    assert statuses == [413] * 20 + [400] * 20
    assert answers == [expected, expected]
    assert sorted(probe.latencies)[int(len(probe.latencies) * 0.99) - 1] < 0.25, max(probe.latencies)
