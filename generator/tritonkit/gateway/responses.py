"""OpenAI response bodies: whole completions, stream chunks and ``usage``, for chat and text completions."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional

from tritonkit.gateway.catalog import LLM

__all__ = ["Reply", "sse", "usage"]


def sse(body: dict[str, Any]) -> bytes:
    """One server-sent event holding ``body`` as compact JSON."""
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


#: Stands for the text in a chunk rendered once as a template (a NUL never comes from a tokenizer's text).
_MARK = "\x00tritonkit-text\x00"


def usage(prompt_tokens: Optional[int], completion_tokens: Optional[int]) -> Optional[dict[str, int]]:
    """OpenAI's ``usage`` object, or None when the model's tokenizer could not be loaded."""
    if prompt_tokens is None or completion_tokens is None:
        return None
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class Reply:
    """The bodies of one answer, chat (``chat.completion``) or text (``text_completion``)."""

    def __init__(self, llm: LLM, chat: bool) -> None:
        self.chat = chat
        self.model = llm.name
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self._template: Optional[tuple[bool, bytes, bytes]] = None

    def text_event(self, text: str, with_usage: bool = False) -> bytes:
        """``sse(self.chunk(text, with_usage=with_usage))``, from a template rendered once per answer.

        Every token of a stream is one such event: only the text is encoded per event.
        """
        if self._template is None or self._template[0] != with_usage:
            head, _, tail = sse(self.chunk(_MARK, with_usage=with_usage)).partition(json.dumps(_MARK).encode())
            self._template = (with_usage, head, tail)
        _, head, tail = self._template
        return head + json.dumps(text).encode() + tail

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def whole(self, text: str, finish_reason: str, counts: Optional[dict[str, int]]) -> dict[str, Any]:
        """The body of a non-streamed answer."""
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head(False), "choices": [choice], "usage": counts}

    def chunk(self, text: str, finish_reason: Optional[str] = None, first: bool = False,
              with_usage: bool = False) -> dict[str, Any]:
        """One stream chunk; ``first`` carries the assistant role (chat), ``with_usage`` adds ``usage: null``."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            if finish_reason is not None and not text:
                delta = {}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        body = {**self._head(True), "choices": [choice]}
        if with_usage:
            body["usage"] = None
        return body

    def usage_chunk(self, counts: Optional[dict[str, int]]) -> dict[str, Any]:
        """The last chunk when ``stream_options.include_usage`` is set: no choices, the usage."""
        return {**self._head(True), "choices": [], "usage": counts}

    # -- the general answer: n choices, log probabilities, tool calls ------------------------------------

    def logprobs(self, entries: Optional[list[dict[str, Any]]], offset: int = 0) -> Optional[dict[str, Any]]:
        """A choice's ``logprobs``: chat's ``{"content": entries}``, or the completions API's four lists."""
        if entries is None:
            return None
        if self.chat:
            return {"content": entries, "refusal": None}
        offsets, position = [], offset
        for entry in entries:
            offsets.append(position)
            position += len(entry["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries],
                "text_offset": offsets}

    def choice(self, index: int, text: Optional[str], finish_reason: str,
               entries: Optional[list[dict[str, Any]]] = None,
               tool_calls: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
        """One choice of a whole answer."""
        if not self.chat:
            return {"index": index, "text": text or "", "logprobs": self.logprobs(entries),
                    "finish_reason": finish_reason}
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"index": index, "message": message, "logprobs": self.logprobs(entries), "finish_reason": finish_reason}

    def whole_choices(self, choices: list[dict[str, Any]], counts: Optional[dict[str, int]]) -> dict[str, Any]:
        """The body of a non-streamed answer with these choices."""
        return {**self._head(False), "choices": choices, "usage": counts}

    def delta(self, index: int, *, text: Optional[str] = None, first: bool = False, finish_reason: Optional[str] = None,
              entries: Optional[list[dict[str, Any]]] = None, tool_calls: Optional[list[dict[str, Any]]] = None,
              with_usage: bool = False, offset: int = 0) -> dict[str, Any]:
        """One stream chunk for choice ``index``: text, tool calls (each whole, with its index) or the finish."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            if tool_calls:
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(tool_calls)]
            choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": self.logprobs(entries),
                                      "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": text or "", "logprobs": self.logprobs(entries, offset),
                      "finish_reason": finish_reason}
        body = {**self._head(True), "choices": [choice]}
        if with_usage:
            body["usage"] = None
        return body
