"""Timed requests to an OpenAI-compatible server (``bench --openai``): chat or completions, whole or streamed.

Figures follow AIPerf's definitions (docs.nvidia.com/aiperf, "AIPerf Metrics Reference"): TTFT is the time
from sending a request to the first response with non-empty content; request latency runs to the last
response; ITL is ``(request latency - TTFT) / (output tokens - 1)``, one value per request, with the output
tokens counted on the whole answer with the tokenizer. HTTP goes through ``sse.SSEConnections``
(pre-built requests over kept-alive connections, replies parsed by httptools): aiohttp's own cost per
request would be part of every latency measured.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

from tritonkit.bench.client import Sample, error_kind
from tritonkit.bench.options import BenchError, BenchOptions
from tritonkit.bench.sse import Reply, SSEConnections
from tritonkit.errors import Problem

__all__ = ["ENDPOINTS", "OpenAIBenchClient", "openai_bodies"]

#: ``--endpoint`` to the route under the base URL.
ENDPOINTS = {"chat": "chat/completions", "completions": "completions"}


class _HTTPStatusError(Exception):
    """A response other than 200, or an error event in a stream; its kind is the status code."""

    def __init__(self, status: object) -> None:
        super().__init__(str(status))
        self.code = str(status)

    def status(self) -> str:
        return self.code


def openai_bodies(options: BenchOptions, prompts: tuple[str, ...]) -> list[bytes]:
    """One JSON body per prompt for ``options.endpoint``, streamed (with usage) when ``options.stream``."""
    bodies = []
    for prompt in prompts:
        body: dict[str, Any] = {"model": options.model, "max_tokens": options.output_tokens,
                                "stream": options.stream}
        if options.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if options.stream:
            body["stream_options"] = {"include_usage": True}
        bodies.append(json.dumps(body).encode("utf-8"))
    return bodies


def _content(choice: dict[str, Any]) -> str:
    """The text of one choice: a chat delta or message, or a completion's text."""
    for key in ("delta", "message"):
        part = choice.get(key)
        if isinstance(part, dict):
            return str(part.get("content") or "")
    return str(choice.get("text") or "")


def _event_text(event: dict[str, Any]) -> tuple[str, Optional[int]]:
    """(the event's text, completion tokens from ``usage`` when it carries them)."""
    text = "".join(_content(c) for c in event.get("choices") or [])
    usage = event.get("usage")
    return text, (int(usage["completion_tokens"]) if isinstance(usage, dict) and "completion_tokens" in usage
                  else None)


def _sample(start: float, arrivals: list[float], end: float, text: str, tokens: int) -> Sample:
    """A request's figures the way AIPerf computes them (one ITL value per request)."""
    ttft = arrivals[0] - start if arrivals else None
    itl: tuple[float, ...] = ()
    if ttft is not None and tokens > 1:
        itl = (((end - start) - ttft) / (tokens - 1),)
    return Sample(start, end, ttft_s=ttft, itl_s=itl, output_tokens=tokens, output_text=text)


class OpenAIBenchClient:
    """The prepared requests of one run, sent over kept-alive connections from many coroutines."""

    def __init__(self, options: BenchOptions, count_tokens: Optional[Callable[[str], int]] = None) -> None:
        assert options.openai_url is not None
        self._options = options
        self._base = options.openai_url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        if options.api_key:
            headers["Authorization"] = f"Bearer {options.api_key}"
        self._http = SSEConnections(self._base, headers, options.timeout_s)
        self._requests: list[bytes] = []
        self._count = count_tokens

    @property
    def protocol(self) -> str:
        """``openai``."""
        return "openai"

    async def close(self) -> None:
        """Close the connections."""
        self._http.close()

    async def check_model(self) -> None:
        """Fail before any load when the server is unreachable, refuses the key, or lists no such model.

        Raises:
            BenchError: any of those.

        """
        name = self._options.model
        try:
            reply = await self._http.send(self._http.request("GET", "models"))
            try:
                raw = await reply.read()
            finally:
                reply.release()
            body = json.loads(raw) if reply.status == 200 else {}
        except Exception as exc:
            raise BenchError(Problem(f"cannot reach the OpenAI server: {exc}", path=self._base,
                                     hint="start it with `tritonkit openai` or `serve --openai-port`, or fix "
                                          "--openai")) from None
        if reply.status != 200:
            raise BenchError(Problem(f"GET /models answered {reply.status}", path=self._base,
                                     hint="pass --api-key (or set TRITONKIT_API_KEY) if the server needs one"))
        served = sorted(str(m.get("id")) for m in body.get("data", []))
        if name not in served:
            raise BenchError(Problem(f"the server does not list model {name!r}", path=self._base, model=name,
                                     hint=f"it serves: {', '.join(served) or 'none'}"))

    async def statistics(self) -> list[dict[str, Any]]:
        """No Triton statistics behind an OpenAI server: the breakdown stays empty."""
        return []

    def prepare(self, bodies: list[bytes]) -> None:
        """Build the requests for these bodies once; they are sent in turn."""
        route = ENDPOINTS[self._options.endpoint]
        self._requests = [self._http.request("POST", route, body) for body in bodies]

    async def send(self, index: int) -> Sample:
        """Send the ``index``-th request (modulo their number) and time it."""
        start = time.perf_counter()
        try:
            reply = await self._http.send(self._requests[index % len(self._requests)])
            try:
                if reply.status != 200:
                    await reply.read()
                    raise _HTTPStatusError(reply.status)
                if self._options.stream:
                    return await self._read_stream(reply, start)
                event = json.loads(await reply.read())
            finally:
                reply.release()
        except Exception as exc:  # every failure is counted by its kind; a load test goes on
            return Sample(start, time.perf_counter(), error=error_kind(exc))
        end = time.perf_counter()
        text, usage_tokens = _event_text(event)
        return _sample(start, [end] if text else [], end, text, self._tokens(text, usage_tokens, 1 if text else 0))

    async def _read_stream(self, reply: Reply, start: float) -> Sample:
        """Read server-sent events to ``[DONE]`` (then the rest of the body, untimed)."""
        arrivals: list[float] = []
        pieces: list[str] = []
        usage_tokens: Optional[int] = None
        end: Optional[float] = None
        pending = b""
        async for chunk in reply.chunks():
            if end is not None:
                continue  # after [DONE]: read to the end of the body, so the connection can be kept
            now = time.perf_counter()
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    end = now
                    break
                event = json.loads(data)
                if "error" in event:
                    raise _HTTPStatusError(event["error"].get("code") or "stream_error")
                text, tokens = _event_text(event)
                usage_tokens = tokens if tokens is not None else usage_tokens
                if text:
                    arrivals.append(now)
                    pieces.append(text)
        if end is None:
            end = time.perf_counter()  # the stream ended without [DONE]
        text = "".join(pieces)
        return _sample(start, arrivals, end, text, self._tokens(text, usage_tokens, len(arrivals)))

    def _tokens(self, text: str, usage_tokens: Optional[int], chunks: int) -> int:
        """With --tokenizer, the answer re-encoded (AIPerf's count); else the server's usage; else chunks."""
        if self._count is not None:
            return self._count(text)
        return usage_tokens if usage_tokens is not None else chunks
