"""One request's answer from its Triton responses: a whole OpenAI body, or server-sent events.

One plain choice takes the short path (one text, each event rendered from a template: the common case
under load); ``n`` choices, log probabilities or tools take ``Choices``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Optional

from tritonkit.gateway.catalog import LLM
from tritonkit.gateway.errors import APIError
from tritonkit.gateway.prompts import Prompt, count_tokens
from tritonkit.gateway.protocol import Generation
from tritonkit.gateway.responses import Reply, sse, usage
from tritonkit.gateway.tools import ToolPlan, ToolStream
from tritonkit.gateway.triton import Piece

__all__ = ["Answer", "next_piece"]


async def next_piece(pieces: AsyncIterator[Piece]) -> Optional[Piece]:
    """The next response, or None once the stream ended."""
    try:
        return await pieces.__anext__()
    except StopAsyncIteration:
        return None


class Answer:
    """The responses of one request, gathered whole or sent as server-sent events.

    One plain choice takes the short path (one text, events from a template); ``n`` choices, log
    probabilities or tools take ``Choices``.
    """

    def __init__(self, llm: LLM, reply: Reply, generation: Generation, prompt: Prompt,
                 pieces: AsyncIterator[Piece], tool_plan: Optional[ToolPlan] = None) -> None:
        self.llm, self.reply, self.generation, self.prompt, self.pieces = llm, reply, generation, prompt, pieces
        self.tool_plan = tool_plan
        self.plain = generation.n == 1 and generation.logprobs is None and tool_plan is None

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
        """The whole body, from ``first`` on."""
        if not self.plain:
            return await Choices(self).whole(first)
        parts: list[str] = []
        reason = None
        piece = first
        while piece is not None:
            parts.append(piece.text)
            reason = piece.finish_reason or reason
            piece = await next_piece(self.pieces)
        text = "".join(parts)
        reason, counts = self._finish(reason, text)
        if self.generation.echo:
            text = (self.generation.prompt or "") + text
        return self.reply.whole(text, reason, counts)

    async def events(self, first: Optional[Piece]) -> AsyncIterator[tuple[bytes, bool]]:
        """(server-sent events, whether they end the answer); the last piece's text and the tail come as one."""
        if not self.plain:
            async for item in Choices(self).events(first):
                yield item
            return
        parts: list[str] = []
        reason: Optional[str] = None
        with_usage = self.generation.include_usage
        prefix = (self.generation.prompt or "") if self.generation.echo else ""
        pending = b""  # the final piece's text, sent with the tail
        try:
            piece = first
            while piece is not None:
                text = (prefix + piece.text) if not parts else piece.text
                parts.append(piece.text)
                reason = piece.finish_reason or reason
                event = b""
                if text:
                    event = (sse(self.reply.chunk(text, first=True, with_usage=with_usage)) if len(parts) == 1
                             else self.reply.text_event(text, with_usage))
                if piece.final:
                    pending = event
                    break
                if event:
                    yield event, False
                piece = await next_piece(self.pieces)
        except APIError as exc:
            yield sse(exc.body()) + b"data: [DONE]\n\n", True
            return
        finally:
            await self.pieces.aclose()  # type: ignore[attr-defined]  # an async generator: cancels the request
        reason, counts = self._finish(reason, "".join(parts), counted=with_usage)
        tail = pending + sse(self.reply.chunk("", reason, with_usage=with_usage))
        if with_usage:
            tail += sse(self.reply.usage_chunk(counts))
        yield tail + b"data: [DONE]\n\n", True


class Choices:
    """The general answer: ``n`` choices, each with its log probabilities and its tool calls."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.n = answer.generation.n
        self.readers: list[Optional[ToolStream]] = []
        self.started: list[bool] = []
        self.offsets: list[int] = []
        self.texts = [""] * self.n
        self.reasons: list[Optional[str]] = [None] * self.n
        self.entries: Optional[list[list[dict[str, Any]]]] = \
            [[] for _ in range(self.n)] if answer.generation.logprobs is not None else None

    def _take(self, piece: Piece) -> list[tuple[int, str, Optional[list[dict[str, Any]]]]]:
        """Record one response; returns each choice's (index, new text, new log-probability entries)."""
        news = []
        for index in range(self.n):
            text = piece.texts[index] if index < len(piece.texts) else ""
            self.texts[index] += text
            if index < len(piece.reasons) and piece.reasons[index]:
                self.reasons[index] = piece.reasons[index]
            entries = None
            if self.entries is not None and piece.logprobs is not None and index < len(piece.logprobs):
                entries = piece.logprobs[index]
                self.entries[index].extend(entries)
            news.append((index, text, entries))
        return news

    def _reason(self, index: int, calls: bool) -> str:
        if calls:
            return "tool_calls"
        found = self.reasons[index]
        if found is not None:
            return found
        limit = self.answer.generation.max_tokens
        completion = count_tokens(self.answer.llm, self.texts[index])
        return "length" if limit is not None and completion is not None and completion >= limit else "stop"

    def _usage(self) -> Optional[dict[str, int]]:
        counts = [count_tokens(self.answer.llm, text) for text in self.texts]
        total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
        return usage(self.answer.prompt.tokens, total)

    async def whole(self, first: Optional[Piece]) -> dict[str, Any]:
        answer, reply = self.answer, self.answer.reply
        piece = first
        while piece is not None:
            self._take(piece)
            piece = await next_piece(answer.pieces)
        choices = []
        echo = (answer.generation.prompt or "") if answer.generation.echo else ""
        for index in range(self.n):
            content: Optional[str] = self.texts[index]
            calls: list[dict[str, Any]] = []
            if answer.tool_plan is not None:
                found = answer.tool_plan.read(self.texts[index])
                content, calls = found.content, found.calls
            entries = self.entries[index] if self.entries is not None else None
            choices.append(reply.choice(index, echo + (content or "") if echo else content,
                                        self._reason(index, bool(calls)), entries, calls))
        return reply.whole_choices(choices, self._usage())

    async def events(self, first: Optional[Piece]) -> AsyncIterator[tuple[bytes, bool]]:
        """(server-sent events, whether they end the answer): each choice's text as it comes, then the tail."""
        answer = self.answer
        self.readers = [answer.tool_plan.stream() if answer.tool_plan is not None else None for _ in range(self.n)]
        self.started = [False] * self.n
        self.offsets = [0] * self.n
        pending = b""
        try:
            piece = first
            while piece is not None:
                events = self._events(piece)
                if piece.final:
                    pending = events
                    break
                if events:
                    yield events, False
                piece = await next_piece(answer.pieces)
        except APIError as exc:
            yield sse(exc.body()) + b"data: [DONE]\n\n", True
            return
        finally:
            await answer.pieces.aclose()  # type: ignore[attr-defined]  # an async generator: cancels the request
        yield pending + self._tail() + b"data: [DONE]\n\n", True

    def _events(self, piece: Piece) -> bytes:
        """The events of one response: a chunk per choice that got text or log probabilities."""
        answer, reply = self.answer, self.answer.reply
        echo = (answer.generation.prompt or "") if answer.generation.echo else ""
        events = b""
        for index, text, entries in self._take(piece):
            reader = self.readers[index]
            out = reader.push(text) if reader is not None else text
            if echo and not self.started[index]:
                out = echo + out
            if not out and not entries:
                continue
            events += sse(reply.delta(index, text=out, first=not self.started[index], entries=entries,
                                      with_usage=answer.generation.include_usage, offset=self.offsets[index]))
            self.offsets[index] += len(out)
            self.started[index] = True
        return events

    def _tail(self) -> bytes:
        """What each choice held back (its tool calls, or text that was not one), its finish, and the usage."""
        answer, reply = self.answer, self.answer.reply
        with_usage = answer.generation.include_usage
        tail = b""
        for index in range(self.n):
            reader, calls = self.readers[index], []
            if reader is not None:
                found = reader.finish(answer.tool_plan.choice if answer.tool_plan is not None else "auto")
                calls = found.calls
                if found.content:
                    tail += sse(reply.delta(index, text=found.content, first=not self.started[index],
                                            with_usage=with_usage))
                    self.started[index] = True
                if calls:
                    tail += sse(reply.delta(index, tool_calls=calls, first=not self.started[index],
                                            with_usage=with_usage))
                    self.started[index] = True
            tail += sse(reply.delta(index, first=not self.started[index],
                                    finish_reason=self._reason(index, bool(calls)), with_usage=with_usage))
        if with_usage:
            tail += sse(reply.usage_chunk(self._usage()))
        return tail
