"""The gateway's ASGI app (Starlette): OpenAI's ``/v1`` routes over one Triton server's gRPC stream."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tritonkit.gateway.answer import Answer, next_piece
from tritonkit.gateway.catalog import LLM, Catalog
from tritonkit.gateway.errors import APIError, bad_request, unavailable
from tritonkit.gateway.guard import Guard
from tritonkit.gateway.prompts import Prompt, count_prompt, prompt_text
from tritonkit.gateway.protocol import Generation, parse_chat, parse_completion
from tritonkit.gateway.responses import Reply
from tritonkit.gateway.tools import plan as plan_tools
from tritonkit.gateway.triton import build_inputs, generate, without_stops

__all__ = ["GatewaySettings", "create_app"]

_LOG = logging.getLogger("tritonkit.gateway")
_T = TypeVar("_T")
#: A body this large is parsed, templated and tokenised in a worker thread, not on the event loop (where a
#: 16 KiB prompt takes about 10 ms to tokenise, and every other request waits meanwhile).
_LARGE_BODY = 16 * 1024


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
    #: The largest request body taken (413 beyond): a prompt that fills any model's max_input_len is far smaller.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Completions answered at once, streams included; one more is refused (429, ``Retry-After``).
    max_concurrency: int = 256
    #: Seconds a client has to send a request's line and headers (from connecting, or from the last answer).
    header_timeout_s: float = 10.0
    #: Seconds a client has to send a request's body, from the end of its headers.
    body_timeout_s: float = 30.0


class _ClientGoneError(Exception):
    """The HTTP client disconnected before its answer was ready."""


class _Watch:
    """Cancels the request's task (so its Triton request) if the HTTP client disconnects; one task per request.

    It spans the whole answer, the wait for the first token and the stream alike (Starlette's
    ``StreamingResponse`` would start a task group and a second listener for the stream).
    """

    def __init__(self, request: Request) -> None:
        self.gone = False
        self._task = asyncio.current_task()
        self._watcher = asyncio.ensure_future(self._watch(request))

    async def _watch(self, request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self._task is not None:
            self._task.cancel()

    async def run(self, work: Awaitable[_T]) -> _T:
        """Await ``work``; raises _ClientGoneError when the client disconnected meanwhile."""
        try:
            return await work
        except asyncio.CancelledError:
            if self.gone:
                raise _ClientGoneError from None
            raise

    def close(self) -> None:
        """Stop watching (the answer is complete)."""
        self._watcher.cancel()


class _EventStream(Response):
    """The ASGI response of a streamed answer: one ``send`` per event, the last events and the end in one.

    Each ``send`` is a write to the socket (about 50-100 µs on a loopback connection): the tail of an
    answer (its last text, the finish chunk, usage, ``[DONE]`` and the end of the chunked body) is on the
    way to the client's last token, so it goes out as one write.
    """

    def __init__(self, events: AsyncIterator[tuple[bytes, bool]], watch: _Watch) -> None:
        # Not Response.__init__: it would declare a content-length for an empty body.
        self.status_code, self.background = 200, None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        self.events, self.watch = events, watch

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            last = False
            async for body, last in self.events:
                await send({"type": "http.response.body", "body": body, "more_body": not last})
            if not last:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self.watch.gone:
                raise
        finally:
            self.watch.close()
            # A disconnect seen during a send leaves the events suspended: close them now (so the Triton
            # request is cancelled now), not when they are garbage-collected.
            await self.events.aclose()  # type: ignore[attr-defined]  # an async generator


def _quiet_collector() -> None:
    """Keep Python's cyclic garbage collector off the requests' way.

    A request allocates a few thousand objects (protobuf messages, coroutines, dicts), so with the
    default threshold (700) the youngest generation is collected several times per request; and every
    full collection would walk what start-up loaded (transformers, tokenizers). So: collect once, freeze
    what is alive, and collect the youngest generation every 50,000 allocations. Reference counting
    still frees almost everything at once.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(gc.get_threshold()[0], 50_000), *gc.get_threshold()[1:])


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
        _quiet_collector()
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
            raw = await _body(request)
        except ClientDisconnect:
            return Response(status_code=499)
        large = len(raw) > _LARGE_BODY
        generation = await asyncio.to_thread(_parse, raw, chat) if large else _parse(raw, chat)
        del raw  # only the parsed request lives on, for as long as its answer
        llm = await self.find(generation.model)
        generation, tool_plan = plan_tools(llm, generation)
        if large:  # templated and counted before Triton sees it: a prompt over max_input_len never reaches it
            text, prompt = await asyncio.to_thread(_counted_prompt, llm, generation)
            counter = _PromptCount(llm, generation, text, prompt)
        else:  # counted while the engine works on it (the count is a few ms at most)
            text = prompt_text(llm, generation)
            counter = _PromptCount(llm, generation, text)
        stream = generation.stream and llm.streaming is not None
        target = llm.streaming if stream and llm.streaming is not None else llm.unary
        inputs = build_inputs(llm, target, text, generation, stream)
        pieces = generate(self.client, self.settings.url, target, inputs, self.settings.timeout_s, counter,
                          generation.n)
        stops = generation.sampling.get("stop")
        if stops and llm.interface == "ensemble":  # its engine keeps the stop word, as TensorRT-LLM's does
            pieces = without_stops(pieces, stops)
        watch = _Watch(request)
        streaming = False
        try:
            try:
                first = await watch.run(next_piece(pieces))
            except APIError:
                counter.raise_refusal()  # the model refused a prompt the gateway did too: the gateway's words
                raise
            try:
                prompt = counter.result()
            except Exception:
                await pieces.aclose()  # type: ignore[attr-defined]  # an async generator: cancels the request
                raise
            answer = Answer(llm, Reply(llm, chat), generation, prompt, pieces, tool_plan)
            if generation.stream:
                streaming = True  # the response closes the watch when the stream ends
                return _EventStream(answer.events(first), watch)
            return JSONResponse(await watch.run(answer.whole(first)))
        except _ClientGoneError:
            return Response(status_code=499)
        finally:
            if not streaming:
                watch.close()


async def _body(request: Request) -> bytes:
    """The request's body, not kept by the request (a stream's request lives as long as the stream)."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse(raw: bytes, chat: bool) -> Generation:
    try:
        body = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError included
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    return parse_chat(body) if chat else parse_completion(body)


def _counted_prompt(llm: LLM, generation: Generation) -> tuple[str, Prompt]:
    text = prompt_text(llm, generation)
    return text, count_prompt(llm, generation, text)


class _PromptCount:
    """Counts the prompt's tokens (and checks its length) when gRPC's request stream calls it.

    That is once the request is written, so the count is made while the engine works on it, not on the
    way to the first token. A large prompt comes counted already (in a worker thread, before it was sent).
    """

    def __init__(self, llm: LLM, generation: Generation, text: str, counted: Optional[Prompt] = None) -> None:
        self.llm, self.generation, self.text = llm, generation, text
        self._counted: Optional[Union[Prompt, Exception]] = counted

    def __call__(self) -> None:
        if self._counted is not None:
            return
        try:
            self._counted = count_prompt(self.llm, self.generation, self.text)
        except Exception as exc:  # raised by result(), in the request's own task
            self._counted = exc

    def raise_refusal(self) -> None:
        """Raise the gateway's own error for the prompt, if it has one."""
        if isinstance(self._counted, APIError):
            raise self._counted from None

    def result(self) -> Prompt:
        """The count (made now if the stream ended before gRPC asked for more); raises its error."""
        if self._counted is None:
            self()
        if isinstance(self._counted, Exception):
            raise self._counted
        assert self._counted is not None
        return self._counted


def _card(llm: LLM) -> dict[str, Any]:
    return {"id": llm.name, "object": "model", "created": llm.created, "owned_by": "tritonkit"}


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                     code="not_found" if exc.status_code == 404 else None)
    return JSONResponse(error.body(), status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    _LOG.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    error = APIError(500, f"internal error in the gateway: {type(exc).__name__}: {exc}", type_="server_error")
    return JSONResponse(error.body(), status_code=500)


class _Completions:
    """The ASGI app: ``POST /v1/chat/completions`` and ``/v1/completions`` go straight to their handler.

    Those two carry the load, and Starlette's layers (error and exception middleware, the router's
    matching, the request/response wrapper) cost ~0.07 ms on each on a 2-core machine; every other
    route, and anything unusual about a request (another method, a root path), goes through Starlette.
    """

    def __init__(self, gateway: _Gateway, app: Starlette) -> None:
        self.gateway, self.app = gateway, app
        self._routes = {"/v1/chat/completions": True, "/v1/completions": False}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        chat = self._routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if chat is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.gateway.complete(request, chat)
        except APIError as exc:
            response = await _api_error(request, exc)
        except Exception as exc:
            response = await _internal_error(request, exc)
        await response(scope, receive, send)


def create_app(settings: GatewaySettings) -> Callable[[Any, Any, Any], Awaitable[None]]:
    """The gateway as an ASGI app: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/health``."""
    gateway = _Gateway(settings)
    routes = [
        Route("/health", gateway.health, methods=["GET"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/v1/models/{model:path}", gateway.model, methods=["GET"]),
        Route("/v1/chat/completions", gateway.chat, methods=["POST"]),
        Route("/v1/completions", gateway.completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=gateway.lifespan,
                    exception_handlers={APIError: _api_error, HTTPException: _http_error, Exception: _internal_error})
    return Guard(_Completions(gateway, app), max_body_bytes=settings.max_body_bytes,
                 body_timeout_s=settings.body_timeout_s, max_concurrency=settings.max_concurrency,
                 capped=frozenset({"/v1/chat/completions", "/v1/completions"}))
