"""The text sent as ``text_input`` for a request, and token counts for ``usage`` and the length check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tritonkit.gateway.catalog import LLM, backend_common
from tritonkit.gateway.errors import APIError, bad_request
from tritonkit.gateway.protocol import Generation
from tritonkit.gateway.tools import parser_for, render_tools, template_knows_tools

__all__ = ["Prompt", "count_prompt", "count_tokens", "prompt_text"]


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


def _template(tokenizer: Any, messages: list[dict[str, Any]], tools: Optional[list[dict[str, Any]]] = None) -> str:
    extra = {"tools": tools} if tools else {}
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **extra))


def _with_tools(llm: LLM, generation: Generation,
                messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Optional[list[dict[str, Any]]]]:
    """The messages and tools to template: the template's own rendering, else the Hermes system prompt."""
    tools = generation.tools if generation.tool_choice != "none" else None
    past_calls = any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
    if tools is None and not past_calls:
        return messages, None
    if template_knows_tools(llm.tokenizer):
        return messages, tools
    if generation.tool_choice == "auto" and parser_for(llm) != "hermes":  # a forced call's grammar needs no parser
        raise bad_request(f"the chat template of model '{llm.name}' does not render tools, and tritonkit writes "
                          "them only in the hermes format; set `tool_parser: hermes` if the model was trained on "
                          "it", param="tools", code="unsupported_parameter")
    return render_tools(messages, tools or []), None


def _with_model_system(llm: LLM, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = llm.parameters.get("system_prompt", "")
    return ([{"role": "system", "content": system}] if system else []) + messages


def _check_self_templated(llm: LLM, messages: list[dict[str, Any]]) -> None:
    """A model that templates ``text_input`` itself, and cannot be told not to, takes one raw user message."""
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise bad_request(
            f"model '{llm.name}' applies its chat template to one user message itself (its chat_template "
            f"parameter is true) and has no 'apply_chat_template' input to turn that off, so it takes exactly "
            f"one user message (got {len(messages)} messages); send one user message, or set "
            "chat_template: false in the spec to let the gateway template whole conversations",
            param="messages", code="unsupported_parameter")


def prompt_text(llm: LLM, generation: Generation) -> str:
    """The ``text_input`` for ``generation``: what the model is sent (counted afterwards by ``count_prompt``).

    The chat template is applied once: here, with the model's tokenizer and system prompt, unless the model
    templates its input itself and cannot be told not to (then it takes one user message as it is).
    A completion prompt is sent as it is.

    Raises:
        APIError: 400 when a chat request cannot be templated for this model.

    """
    if generation.messages is None:
        return generation.prompt or ""
    if llm.templated_by_model:
        _check_self_templated(llm, generation.messages)
        if generation.tools:
            raise bad_request(f"model '{llm.name}' templates its input itself, so it cannot be sent tools; set "
                              "chat_template: false in the spec to let the gateway template conversations",
                              param="tools", code="unsupported_parameter")
        return str(generation.messages[0]["content"])
    if llm.tokenizer is None or not getattr(llm.tokenizer, "chat_template", None):
        why = llm.tokenizer_problem or f"the tokenizer of model '{llm.name}' has no chat template"
        raise APIError(400, f"chat completions need a chat template: {why}; use /v1/completions",
                       param="model", code="no_chat_template")
    messages, tools = _with_tools(llm, generation, _with_model_system(llm, generation.messages))
    return _template(llm.tokenizer, messages, tools)


def count_prompt(llm: LLM, generation: Generation, text: str) -> Prompt:
    """``text`` with the tokens the engine will see, checked against the model's ``max_input_len``.

    A model that templates its input itself sees the templated text, so that is what counts.

    Raises:
        APIError: 400 when the prompt is longer than the model takes (both numbers in the message).

    """
    if llm.tokenizer is None:
        return Prompt(text, None)
    if llm.templated_by_model:
        messages = generation.messages or [{"role": "user", "content": text}]
        counted = _template(llm.tokenizer, _with_model_system(llm, messages))
        tokens = len(llm.tokenizer.encode(counted, add_special_tokens=False))
    else:
        # As the model encodes a text it is sent as it is (llm_common.adds_special_tokens): no second BOS.
        special = bool(backend_common().adds_special_tokens(llm.tokenizer, text))
        tokens = len(llm.tokenizer.encode(text, add_special_tokens=special))
    limit = llm.limit("max_input_len")
    if limit is not None and tokens > limit:
        param = "messages" if generation.messages is not None else "prompt"
        raise bad_request(f"the prompt has {tokens} tokens; model '{llm.name}' takes at most {limit} "
                          "(max_input_len); shorten it", param=param, code="context_length_exceeded")
    return Prompt(text, tokens)
