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


async def _send(port: int, body: bytes, mode: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunked = mode == "chunked"
    framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % len(body)
    expect = b"expect: 100-continue\r\n" if mode == "expect_100_continue" else b""
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                 + expect + framing + b"\r\n\r\n")
    await writer.drain()
    start = time.perf_counter()

    async def upload() -> int:
        sent = 0
        if expect:  # waits for '100 Continue'; the answer came first
            return sent
        try:
            for offset in range(0, len(body), 256 * 1024):
                piece = body[offset:offset + 256 * 1024]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
                # drain() returns at once while the kernel takes the data: yield, or fifty uploads keep this
                # loop from reading the answers that came meanwhile (it would measure the client, not the gateway)
                await asyncio.sleep(0)
                sent += len(piece)
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
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


#: The /health prober, a process of its own (so the uploading clients' GIL is not in its latencies): it runs
#: until its stdin closes, then prints [[sent_at (the system-wide monotonic clock), latency_s, status], ...].
_HEALTH = """
import http.client, json, sys, threading, time
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
connection, seen = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30), []
while not done.is_set():
    start = time.perf_counter()
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    seen.append((time.monotonic(), time.perf_counter() - start, response.status))
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


def measure(port: int, pid: int, clients: int, size: int) -> dict[str, Any]:
    before = _chat(port)
    for _ in range(3):
        _chat(port)
    time.sleep(1.0)
    rss = psutil.Process(pid).memory_info().rss
    result: dict[str, Any] = {"clients": clients, "body_mb": size / 1e6, "rss_baseline_mb": round(rss / 2**20, 1)}
    body = _huge_body(size)
    health = subprocess.Popen([sys.executable, "-c", _HEALTH, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    memory = _Memory(pid)
    memory.start()
    time.sleep(0.5)
    windows: dict[str, tuple[float, float]] = {}
    for name in ("content_length", "expect_100_continue", "chunked"):
        print(f"{clients} x {size / 1e6:g} MB bodies ({name}) ...", file=sys.stderr)

        async def wave(mode: str = name) -> list[dict[str, Any]]:
            return await asyncio.gather(*(_send(port, body, mode) for _ in range(clients)))

        start, began = time.perf_counter(), time.monotonic()
        answers = asyncio.run(wave())
        windows[name] = (began, time.monotonic())
        latencies = [a["latency_s"] for a in answers]
        result[name] = {"statuses": sorted({a["status"] for a in answers}),
                        "codes": sorted({a["error"]["code"] for a in answers}),
                        "refusal_p50_ms": _ms(latencies, 50), "refusal_p99_ms": _ms(latencies, 99),
                        "refusal_max_ms": round(max(latencies) * 1000, 1),
                        "wave_s": round(time.perf_counter() - start, 2),
                        "uploaded_mb_mean": round(float(np.mean([a["sent"] for a in answers])) / 1e6, 1)}
        time.sleep(0.5)
    time.sleep(2.0)
    probes = json.loads(health.communicate("")[0])
    latencies, statuses = [p[1] for p in probes], [p[2] for p in probes]
    for name, (began, ended) in windows.items():
        during = [p[1] for p in probes if began <= p[0] <= ended]
        result[name].update({"health_during": len(during), "health_p99_ms": _ms(during, 99) if during else None,
                             "health_max_ms": round(max(during) * 1000, 1) if during else None})
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
                result = measure(port, gateway.pid, args.clients, int(args.size_mb * 1e6))
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
