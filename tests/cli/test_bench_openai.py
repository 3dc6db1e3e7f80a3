"""bench --openai against a real HTTP server (uvicorn) that streams a known answer with known delays."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tritonkit.bench import BenchOptions, run_bench
from tritonkit.cli import main
from tritonkit.runtime.process import free_ports

FIRST_S, GAP_S, PIECES = 0.20, 0.02, ["Paris", " is", " the", " capital", "."]
SEEN: list[dict[str, Any]] = []


def _event(body: dict[str, Any], text: str) -> bytes:
    key = "delta" if "messages" in body else "text"
    choice = {"index": 0, key: {"content": text}} if key == "delta" else {"index": 0, "text": text}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


async def _completions(request: Request) -> Response:
    if request.headers.get("authorization") != "Bearer k":
        return JSONResponse({"error": {"message": "key", "code": "invalid_api_key"}}, status_code=401)
    body = await request.json()
    SEEN.append(body)
    if not body["stream"]:
        await asyncio.sleep(FIRST_S)
        return JSONResponse({"choices": [{"message": {"content": "".join(PIECES)}}],
                             "usage": {"completion_tokens": len(PIECES)}})

    async def events() -> AsyncIterator[bytes]:
        yield b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).encode() + b"\n\n"
        await asyncio.sleep(FIRST_S)
        for index, piece in enumerate(PIECES):
            if index:
                await asyncio.sleep(GAP_S)
            yield _event(body, piece)
        yield b"data: " + json.dumps({"choices": [], "usage": {"completion_tokens": len(PIECES)}}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "smollm2", "object": "model"}]})


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_ports(1)[0]
    routes = [Route("/v1/models", _models), Route("/v1/chat/completions", _completions, methods=["POST"]),
              Route("/v1/completions", _completions, methods=["POST"])]
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def _options(url: str, **changes: Any) -> BenchOptions:
    base = {"model": "smollm2", "levels": (2,), "duration_s": None, "requests": 6, "warmup_s": 0.0,
            "stream": True, "openai_url": url, "api_key": "k", "output_tokens": 5, "input_tokens": 8}
    base.update(changes)
    return BenchOptions(**base)


def test_stream_figures_follow_aiperfs_definitions(base_url: str) -> None:
    result = run_bench(_options(base_url))
    [level] = result.levels
    assert (level.ok, level.errors, level.output_tokens) == (6, 0, 30)  # tokens from the server's usage
    assert result.protocol == "openai" and level.server == []
    # TTFT: to the first event with content (the role-only event does not count).
    assert FIRST_S <= level.ttft_ms["p50"] / 1000 < FIRST_S + 0.1
    # ITL = (latency - TTFT) / (tokens - 1): four gaps of GAP_S over four intervals.
    assert GAP_S <= level.itl_ms["p50"] / 1000 < GAP_S + 0.015
    body = SEEN[-1]
    assert body["messages"][0]["role"] == "user" and body["max_tokens"] == 5
    assert body["stream_options"] == {"include_usage": True}


def test_completions_endpoint_and_whole_answers(base_url: str) -> None:
    level = run_bench(_options(base_url, endpoint="completions", stream=False)).levels[0]
    assert level.ok == 6 and level.ttft_ms is not None and level.output_tokens == 30
    assert "prompt" in SEEN[-1] and SEEN[-1]["stream"] is False


def test_a_refused_key_counts_as_401_and_an_unknown_model_fails_before_load(
        base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    level = run_bench(_options(base_url, api_key="wrong", stream=False)).levels[0]
    assert level.errors_by_kind == {"401": 6}
    code = main(["bench", "llama", "--openai", base_url, "--api-key", "k", "--requests", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "does not list model 'llama'" in err and "smollm2" in err


def test_cli_json_run(base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "smollm2", "--openai", base_url, "--api-key", "k", "--stream", "--concurrency", "1",
                 "--requests", "2", "--warmup", "0s", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["protocol"] == "openai" and out["levels"][0]["ok"] == 2
