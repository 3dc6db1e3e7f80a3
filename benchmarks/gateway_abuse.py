"""Fifty 10 MB request bodies at the OpenAI gateway, all at once: how fast each is refused, whether ``/health``
stays fast meanwhile, and whether the gateway's memory comes back.

Generates the default example (SmolLM2) into a temporary folder, serves it, and starts the gateway as its own
process (``tritonkit openai``, default limits) so its memory is its own. Then, in three rounds, fifty
concurrent clients each send a 10 MB chat body: with ``Content-Length`` (refused from the header, before
a byte of the body is read; the client goes on uploading, and the gateway discards what comes), with
``Content-Length`` and ``Expect: 100-continue`` (as curl sends a large body: the client waits for the
answer before uploading), and chunked (read and counted until it passes the limit). Throughout, a
separate process asks ``GET /health`` every 10 ms on one kept-alive connection, and a thread samples the
gateway's RSS every 20 ms. A greedy chat is asked before and after: it must answer the same. Prints one
JSON object on stdout, progress on stderr:

    .venv/bin/python benchmarks/gateway_abuse.py [--clients 50] [--size-mb 10]

A refusal's latency runs from the client's last header byte to the status line of the answer (the client
goes on sending its body meanwhile, as a real one does, in 256 KiB writes, reading the answer as it comes).
The uploads are slices of one buffer framed once, so that the client spends its CPU in the kernel, not in
copies. Before each round, the same fifty clients run against a floor: a bare asyncio server (uvloop's
loop, as the gateway's) that only counts each body and answers 413 once it passes the limit. On a machine
of few cores, where clients, kernel and server share the CPU, the floor is what any server would show;
what the gateway adds is its figure over the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from tritonkit.gateway import GatewaySettings
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports
from tritonkit.write.generate import generate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHAT = {"model": "smollm2", "temperature": 0.0, "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]}


def _huge_body(size: int) -> bytes:
    """A well-formed chat body of ``size`` bytes: one user message of repeated words."""
    head = b'{"model": "smollm2", "messages": [{"role": "user", "content": "'
    tail = b'"}]}'
    words = b"lorem ipsum " * ((size - len(head) - len(tail)) // 12 + 1)
    return head + words[: size - len(head) - len(tail)] + tail


_PIECE = 256 * 1024


def _wire(body: bytes, mode: str) -> bytes:
    """What the client uploads after its headers: the body, chunked in 256 KiB pieces for ``chunked``."""
    if mode != "chunked":
        return body
    pieces = (body[offset:offset + _PIECE] for offset in range(0, len(body), _PIECE))
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


async def _send(port: int, wire: bytes, size: int, mode: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = b"transfer-encoding: chunked" if mode == "chunked" else b"content-length: %d" % size
    expect = b"expect: 100-continue\r\n" if mode == "expect_100_continue" else b""
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                 + expect + framing + b"\r\n\r\n")
    await writer.drain()
    start = time.perf_counter()

    async def upload() -> int:
        sent = 0
        if expect:  # waits for '100 Continue'; the answer came first
            return sent
        view = memoryview(wire)
        try:
            for offset in range(0, len(view), _PIECE):
                writer.write(view[offset:offset + _PIECE])
                await writer.drain()
                # drain() returns at once while the kernel takes the data: yield, or fifty uploads keep this
                # loop from reading the answers that came meanwhile (it would measure the client, not the gateway)
                await asyncio.sleep(0)
                sent += min(_PIECE, len(view) - offset)
        except ConnectionError:
            pass
        return sent

    sending = asyncio.ensure_future(upload())
    status_line = await reader.readline()
    latency = time.perf_counter() - start
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    answer = json.loads(await reader.readexactly(int(headers["content-length"])))
    sent = await sending
    writer.close()
    return {"latency_s": latency, "status": int(status_line.split()[1]), "error": answer["error"], "sent": sent}


def _wave(port: int, wire: bytes, size: int, mode: str, clients: int) -> list[dict[str, Any]]:
    async def wave() -> list[dict[str, Any]]:
        return await asyncio.gather(*(_send(port, wire, size, mode) for _ in range(clients)))

    return asyncio.run(wave())


#: The floor: a server that only reads, counts each body after its headers, and answers 413 once the count (or
#: the declared length) passes argv[2], then reads no more; GET gets 200. Prints its port, serves until killed.
_FLOOR = """
import asyncio, sys
try:
    from uvloop import run
except ImportError:
    from asyncio import run
LIMIT = int(sys.argv[1])
REFUSAL = (b'HTTP/1.1 413 Payload Too Large\\r\\ncontent-type: application/json\\r\\ncontent-length: 40\\r\\n'
           b'connection: close\\r\\n\\r\\n{"error": {"code": "request_too_large"}}')
class Counter(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.head, self.count = transport, b'', None
    def data_received(self, data):
        if self.count is None:
            self.head += data
            end = self.head.find(b'\\r\\n\\r\\n')
            if end < 0:
                return
            head, self.count, self.head = self.head[:end].lower(), len(self.head) - end - 4, b''
            if head.startswith(b'get '):
                self.transport.write(b'HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\n{}')
                self.count = None
                return
            if b'content-length:' in head and int(head.split(b'content-length:')[1].split(b'\\r\\n')[0]) > LIMIT:
                self.count = LIMIT + 1
        else:
            self.count += len(data)
        if self.count > LIMIT:
            self.transport.pause_reading()
            self.transport.write(REFUSAL)
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(1.0, self.transport.close)
async def main():
    server = await asyncio.get_running_loop().create_server(Counter, '127.0.0.1', 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
run(main())
"""


#: The /health prober, a process of its own (so the uploading clients' GIL is not in its latencies): it runs
#: until its stdin closes, then prints [[sent_at (the system-wide monotonic clock), latency_s, status], ...].
_HEALTH = """
import http.client, json, sys, threading, time
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
connection, seen = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30), []
while not done.is_set():
    sent_at, start = time.monotonic(), time.perf_counter()
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    seen.append((sent_at, time.perf_counter() - start, response.status))
    done.wait(0.01)
print(json.dumps(seen))
"""


class _Memory(threading.Thread):
    """The gateway's RSS every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.stop, self.samples = psutil.Process(pid), threading.Event(), []

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.process.memory_info().rss)
            self.stop.wait(0.02)


def _chat(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("POST", "/v1/chat/completions", json.dumps(CHAT), {"content-type": "application/json"})
    answer = json.loads(connection.getresponse().read())
    connection.close()
    return str(answer["choices"][0]["message"]["content"])


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1)


def _round(answers: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [a["latency_s"] for a in answers]
    return {"statuses": sorted({a["status"] for a in answers}), "codes": sorted({a["error"]["code"] for a in answers}),
            "refusal_p50_ms": _ms(latencies, 50), "refusal_p99_ms": _ms(latencies, 99),
            "refusal_max_ms": round(max(latencies) * 1000, 1)}


def measure(port: int, pid: int, clients: int, size: int, limit: int) -> dict[str, Any]:
    before = _chat(port)
    for _ in range(3):
        _chat(port)
    time.sleep(1.0)
    rss = psutil.Process(pid).memory_info().rss
    result: dict[str, Any] = {"clients": clients, "body_mb": size / 1e6, "limit_mib": limit / 2**20,
                              "rss_baseline_mb": round(rss / 2**20, 1)}
    body = _huge_body(size)
    floor = subprocess.Popen([sys.executable, "-c", _FLOOR, str(limit)], stdout=subprocess.PIPE, text=True)
    assert floor.stdout is not None
    floor_port = int(floor.stdout.readline())
    health = subprocess.Popen([sys.executable, "-c", _HEALTH, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    memory = _Memory(pid)
    memory.start()
    time.sleep(0.5)
    windows: dict[str, tuple[float, float]] = {}
    for name in ("content_length", "expect_100_continue", "chunked"):
        print(f"{clients} x {size / 1e6:g} MB bodies ({name}) ...", file=sys.stderr)
        wire = _wire(body, name)
        floor_round = _round(_wave(floor_port, wire, size, name, clients))
        time.sleep(0.5)
        start, began = time.perf_counter(), time.monotonic()
        answers = _wave(port, wire, size, name, clients)
        windows[name] = (began, began + max(a["latency_s"] for a in answers), time.monotonic())
        result[name] = {**_round(answers), "wave_s": round(time.perf_counter() - start, 2),
                        "uploaded_mb_mean": round(float(np.mean([a["sent"] for a in answers])) / 1e6, 1),
                        "floor_refusal_p50_ms": floor_round["refusal_p50_ms"],
                        "floor_refusal_p99_ms": floor_round["refusal_p99_ms"]}
        time.sleep(0.5)
    floor.kill()
    floor.wait()
    time.sleep(2.0)
    probes = json.loads(health.communicate("")[0])
    latencies, statuses = [p[1] for p in probes], [p[2] for p in probes]
    for name, (began, refused, ended) in windows.items():
        # Asked while the fifty were being refused, and while their uploads went on (until they ended or were cut).
        for window, until in (("refusing", refused), ("wave", ended)):
            during = [p[1] for p in probes if began <= p[0] <= until]
            result[name].update({f"health_{window}": len(during),
                                 f"health_{window}_p99_ms": _ms(during, 99) if during else None,
                                 f"health_{window}_max_ms": round(max(during) * 1000, 1) if during else None})
    memory.stop.set()
    memory.join()
    after = _chat(port)
    time.sleep(1.0)
    rss_after = psutil.Process(pid).memory_info().rss
    result.update({
        "health_requests": len(latencies), "health_statuses": sorted(set(statuses)),
        "health_p50_ms": _ms(latencies, 50), "health_p99_ms": _ms(latencies, 99),
        "health_max_ms": round(max(latencies) * 1000, 1),
        "rss_peak_mb": round(max(memory.samples) / 2**20, 1), "rss_after_mb": round(rss_after / 2**20, 1),
        "same_answer_after": before == after, "answer": after,
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(EXAMPLES, root, dirs_exist_ok=True)
        generate(root / "tritonkit.yaml", root)
        print("starting tritonserver ...", file=sys.stderr)
        with Server(root / "model_repository", startup_timeout_s=400.0).start() as server:
            port = free_ports(1)[0]
            gateway = subprocess.Popen(
                [sys.executable, "-m", "tritonkit", "openai", "--url", server.grpc_url, "--port", str(port),
                 "--model-repository", str(server.repo)], stderr=subprocess.DEVNULL)
            try:
                _wait_for(port)
                result = measure(port, gateway.pid, args.clients, int(args.size_mb * 1e6),
                                 GatewaySettings(url="").max_body_bytes)
            finally:
                gateway.terminate()
                gateway.wait(timeout=30)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))


def _wait_for(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the gateway did not answer on port {port}")


if __name__ == "__main__":
    main()
