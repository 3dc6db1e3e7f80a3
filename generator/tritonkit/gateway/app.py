"""The gateway's ASGI app (Starlette): OpenAI's ``/v1`` routes over one Triton server's gRPC stream."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tritonkit.gateway.catalog import LLM, Catalog
from tritonkit.gateway.errors import APIError, bad_request, unavailable
from tritonkit.gateway.prompts import Prompt, count_prompt, count_tokens, prompt_text
from tritonkit.gateway.protocol import Generation, parse_chat, parse_completion
from tritonkit.gateway.responses import Reply, usage
from tritonkit.gateway.triton import Piece, build_inputs, generate

__all__ = ["GatewaySettings", "create_app"]

_LOG = logging.getLogger("tritonkit.gateway")
_T = TypeVar("_T")


@dataclass(frozen=True)
class GatewaySettings:
    """What the gateway talks to and how: Triton's gRPC ``url``, an optional API key, the repository folder."""

    url: str
    api_key: Optional[str] = None
    #: The model repository's folder, to resolve tokenizer paths relative to a model's folder.
    repository: Optional[Path] = None
    #: Seconds to wait for each response from Triton.
    timeout_s: float = 300.0
    #: Metadata sent with every call to Triton (e.g. the admin key its restricted APIs ask for).
    triton_headers: tuple[tuple[str, str], ...] = ()


class _ClientGoneError(Exception):
    """The HTTP client disconnected before its answer was ready."""


def _sse(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


async def _unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await ``work`` in this task; a watcher cancels it (and so its Triton request) if the client disconnects first.

    One extra task, not two and an ``asyncio.wait``: this is on every request's way to its first token.
    """
    current = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        if current is not None:
            current.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            raise _ClientGoneError from None
        raise
    finally:
        watcher.cancel()


class _Headers:
    """A tritonclient plugin: adds fixed metadata to every call (tritonclient's own BasicAuth works the same way)."""

    def __init__(self, headers: tuple[tuple[str, str], ...]) -> None:
        self.headers = dict(headers)

    def __call__(self, request: Any) -> None:
        request.headers.update(self.headers)


class _Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.client: Any = None
        self.catalog: Optional[Catalog] = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        import tritonclient.grpc.aio as grpc_aio

        self.client = grpc_aio.InferenceServerClient(self.settings.url)
        if self.settings.triton_headers:
            self.client.register_plugin(_Headers(self.settings.triton_headers))
        self.catalog = Catalog(self.client, self.settings.repository)
        try:
            await self.catalog.refresh()
            _LOG.info("serving %s", ", ".join(self.catalog.llms) or "no LLM yet")
        except Exception as exc:  # Triton may start after the gateway: requests re-read the index
            _LOG.warning("Triton at %s did not answer at start: %s", self.settings.url, exc)
        yield
        await self.client.close()

    def authorize(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
            raise APIError(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    async def find(self, name: str) -> LLM:
        assert self.catalog is not None  # set by lifespan
        try:
            llm = await self.catalog.find(name)
        except Exception as exc:
            raise unavailable(f"the Triton server at {self.settings.url} does not answer: {exc}") from exc
        if llm is None:
            served = ", ".join(sorted(self.catalog.llms)) or "none"
            raise APIError(404, f"The model '{name}' does not exist; this gateway serves: {served}", param="model",
                           code="model_not_found")
        return llm

    # -- routes --------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        ready = False
        with contextlib.suppress(Exception):
            ready = bool(await asyncio.wait_for(self.client.is_server_ready(), timeout=5))
        if not ready:
            raise unavailable(f"the Triton server at {self.settings.url} is not ready")
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        self.authorize(request)
        assert self.catalog is not None
        try:
            await self.catalog.refresh()
        except Exception as exc:
            raise unavailable(f"the Triton server at {self.settings.url} does not answer: {exc}") from exc
        return JSONResponse({"object": "list", "data": [_card(llm) for llm in self.catalog.llms.values()]})

    async def model(self, request: Request) -> Response:
        self.authorize(request)
        return JSONResponse(_card(await self.find(request.path_params["model"])))

    async def chat(self, request: Request) -> Response:
        return await self.complete(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self.complete(request, chat=False)

    async def complete(self, request: Request, chat: bool) -> Response:
        self.authorize(request)
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from None
        generation = parse_chat(body) if chat else parse_completion(body)
        llm = await self.find(generation.model)
        text = prompt_text(llm, generation)
        stream = generation.stream and llm.streaming is not None
        target = llm.streaming if stream and llm.streaming is not None else llm.unary
        inputs = build_inputs(llm, target, text, generation, stream)
        counted: list[Any] = []

        def count() -> None:
            # Called by gRPC's request stream once the request is written: the prompt is counted (and its
            # length checked) while the engine works on it, not on the way to the first token.
            try:
                counted.append(count_prompt(llm, generation, text))
            except Exception as exc:  # raised below, in the request's own task
                counted.append(exc)

        pieces = generate(self.client, self.settings.url, target, inputs, self.settings.timeout_s, count)
        try:
            try:
                first = await _unless_disconnected(request, _first(pieces))
            except APIError:
                if counted and isinstance(counted[0], APIError):  # the model refused a prompt the gateway did too
                    raise counted[0] from None
                raise
            if not counted:  # the stream ended before gRPC asked for more
                count()
            if isinstance(counted[0], BaseException):
                await pieces.aclose()  # type: ignore[attr-defined]  # an async generator: cancels the request
                raise counted[0]
            answer = _Answer(llm, Reply(llm, chat), generation, counted[0], pieces)
            if generation.stream:
                return StreamingResponse(answer.events(first), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            return JSONResponse(await _unless_disconnected(request, answer.whole(first)))
        except _ClientGoneError:
            return Response(status_code=499)


async def _first(pieces: AsyncIterator[Piece]) -> Optional[Piece]:
    try:
        return await pieces.__anext__()
    except StopAsyncIteration:
        return None


def _card(llm: LLM) -> dict[str, Any]:
    return {"id": llm.name, "object": "model", "created": llm.created, "owned_by": "tritonkit"}


class _Answer:
    """The responses of one request, gathered whole or sent as server-sent events."""

    def __init__(self, llm: LLM, reply: Reply, generation: Generation, prompt: Prompt,
                 pieces: AsyncIterator[Piece]) -> None:
        self.llm, self.reply, self.generation, self.prompt, self.pieces = llm, reply, generation, prompt, pieces

    def _finish(self, reason: Optional[str], text: str, counted: bool = True) -> tuple[str, Optional[dict[str, int]]]:
        """The finish reason (the engine's, else from the length) and the usage counts, if ``counted``."""
        if reason is not None and not counted:
            return reason, None
        completion = count_tokens(self.llm, text)
        counts = usage(self.prompt.tokens, completion)
        if reason is None:
            limit = self.generation.max_tokens
            reason = "length" if limit is not None and completion is not None and completion >= limit else "stop"
        return reason, counts

    async def whole(self, first: Optional[Piece]) -> dict[str, Any]:
        parts: list[str] = []
        reason = None
        piece = first
        while piece is not None:
            parts.append(piece.text)
            reason = piece.finish_reason or reason
            piece = await _first(self.pieces)
        text = "".join(parts)
        reason, counts = self._finish(reason, text)
        if self.generation.echo:
            text = (self.generation.prompt or "") + text
        return self.reply.whole(text, reason, counts)

    async def events(self, first: Optional[Piece]) -> AsyncIterator[bytes]:
        parts: list[str] = []
        reason: Optional[str] = None
        with_usage = self.generation.include_usage
        prefix = (self.generation.prompt or "") if self.generation.echo else ""
        try:
            piece = first
            while piece is not None:
                text = (prefix + piece.text) if not parts else piece.text
                parts.append(piece.text)
                reason = piece.finish_reason or reason
                if text:
                    yield _sse(self.reply.chunk(text, first=len(parts) == 1, with_usage=with_usage))
                piece = await _first(self.pieces)
        except APIError as exc:
            yield _sse(exc.body())
            yield b"data: [DONE]\n\n"
            return
        finally:
            await self.pieces.aclose()  # type: ignore[attr-defined]  # an async generator: cancels the request
        reason, counts = self._finish(reason, "".join(parts), counted=with_usage)
        yield _sse(self.reply.chunk("", reason, with_usage=with_usage))
        if with_usage:
            yield _sse(self.reply.usage_chunk(counts))
        yield b"data: [DONE]\n\n"


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                     code="not_found" if exc.status_code == 404 else None)
    return JSONResponse(error.body(), status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    _LOG.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    error = APIError(500, f"internal error in the gateway: {type(exc).__name__}: {exc}", type_="server_error")
    return JSONResponse(error.body(), status_code=500)


def create_app(settings: GatewaySettings) -> Starlette:
    """The gateway as an ASGI app: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/health``."""
    gateway = _Gateway(settings)
    routes = [
        Route("/health", gateway.health, methods=["GET"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/v1/models/{model:path}", gateway.model, methods=["GET"]),
        Route("/v1/chat/completions", gateway.chat, methods=["POST"]),
        Route("/v1/completions", gateway.completions, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=gateway.lifespan,
                     exception_handlers={APIError: _api_error, HTTPException: _http_error,
                                         Exception: _internal_error})
