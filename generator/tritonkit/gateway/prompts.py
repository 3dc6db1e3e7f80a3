"""The text sent as ``text_input`` for a request, and token counts for ``usage`` and the length check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tritonkit.gateway.catalog import LLM
from tritonkit.gateway.errors import APIError, bad_request
from tritonkit.gateway.protocol import Generation

__all__ = ["Prompt", "build_prompt", "count_tokens"]


@dataclass(frozen=True)
class Prompt:
    """What goes to Triton as ``text_input``, and how many tokens the engine will see (None: no tokenizer)."""

    text: str
    tokens: Optional[int]


def count_tokens(llm: LLM, text: str) -> Optional[int]:
    """Tokens of generated ``text`` by the model's tokenizer, or None without one."""
    if llm.tokenizer is None or not text:
        return 0 if llm.tokenizer is not None else None
    return len(llm.tokenizer.encode(text, add_special_tokens=False))


def _template(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def _with_model_system(llm: LLM, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = llm.parameters.get("system_prompt", "")
    return ([{"role": "system", "content": system}] if system else []) + messages


def _self_templated(llm: LLM, messages: list[dict[str, str]]) -> Prompt:
    """A model that templates ``text_input`` itself takes one raw user message."""
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise bad_request(
            f"model '{llm.name}' applies its chat template to one user message itself (its chat_template "
            f"parameter is true), so it takes exactly one user message (got {len(messages)} messages); "
            "send one user message, or set chat_template: false in the spec to let the gateway template "
            "whole conversations", param="messages", code="unsupported_parameter")
    text = messages[0]["content"]
    tokens = None
    if llm.tokenizer is not None:
        templated = _template(llm.tokenizer, _with_model_system(llm, messages))
        tokens = len(llm.tokenizer.encode(templated, add_special_tokens=False))
    return Prompt(text, tokens)


def _chat(llm: LLM, messages: list[dict[str, str]]) -> Prompt:
    if llm.templates_itself:
        return _self_templated(llm, messages)
    if llm.tokenizer is None or not getattr(llm.tokenizer, "chat_template", None):
        why = llm.tokenizer_problem or f"the tokenizer of model '{llm.name}' has no chat template"
        raise APIError(400, f"chat completions need a chat template: {why}; use /v1/completions",
                       param="model", code="no_chat_template")
    text = _template(llm.tokenizer, _with_model_system(llm, messages))
    return Prompt(text, len(llm.tokenizer.encode(text, add_special_tokens=False)))


def _completion(llm: LLM, prompt: str) -> Prompt:
    if llm.tokenizer is None:
        return Prompt(prompt, None)
    if llm.templates_itself:  # the engine sees the templated prompt, so that is what counts
        templated = _template(llm.tokenizer, _with_model_system(llm, [{"role": "user", "content": prompt}]))
        return Prompt(prompt, len(llm.tokenizer.encode(templated, add_special_tokens=False)))
    return Prompt(prompt, len(llm.tokenizer.encode(prompt)))


def build_prompt(llm: LLM, generation: Generation) -> Prompt:
    """The ``text_input`` for ``generation``, checked against the model's ``max_input_len``.

    Raises:
        APIError: 400 when the prompt is longer than the model takes (both numbers in the message), or
            when a chat request cannot be templated for this model.

    """
    if generation.messages is not None:
        prompt = _chat(llm, generation.messages)
    else:
        prompt = _completion(llm, generation.prompt or "")
    limit = llm.limit("max_input_len")
    if limit is not None and prompt.tokens is not None and prompt.tokens > limit:
        param = "messages" if generation.messages is not None else "prompt"
        raise bad_request(f"the prompt has {prompt.tokens} tokens; model '{llm.name}' takes at most {limit} "
                          "(max_input_len); shorten it", param=param, code="context_length_exceeded")
    return prompt
