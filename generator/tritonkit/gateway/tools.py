"""Tool calls through the OpenAI gateway: tools into the prompt, the model's calls out of its text.

The model's chat template renders the tools where it knows them (``tools=`` of ``apply_chat_template``);
a template that does not gets them in a system message in the Hermes format, when the spec's
``tool_parser`` says the model writes that format. What the model writes back is read by the parser of its
family:

- ``hermes``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any number, text around them
  (Qwen 2.5/3, Hermes, SmolLM3);
- ``llama3_json``: a JSON object ``{"name": ..., "parameters": {...}}`` as the whole answer, several
  separated by ``;`` (Llama 3.1+; its ``<|python_tag|>`` is a special token, dropped from the text);
- ``mistral``: ``[TOOL_CALLS]`` then a JSON list of ``{"name", "arguments"}`` (the marker may be dropped
  as a special token: a JSON list of calls is read the same).

``tool_choice: required`` and a named function are not left to the parser: the request carries a JSON
schema that only a valid call can satisfy (a list of calls, or that one function's arguments), and the
engine's grammar enforces it, so the call is always valid JSON for the function's parameters.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from tritonkit.gateway.errors import bad_request

__all__ = ["PARSERS", "Calls", "ToolPlan", "ToolStream", "forced_schema", "parse_calls", "parser_for", "plan",
           "render_tools", "template_knows_tools"]

PARSERS = ("hermes", "llama3_json", "mistral")
_HERMES_OPEN, _HERMES_CLOSE = "<tool_call>", "</tool_call>"
_MISTRAL = "[TOOL_CALLS]"
_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class ToolPlan:
    """How one request's answer is read: ``parser`` for ``auto``, else a forced ``choice`` (``required``/a name)."""

    choice: str
    names: frozenset[str]
    parser: Optional[str] = None

    def stream(self) -> ToolStream:
        """A fresh reader for one choice's streamed text."""
        return ToolStream(self.parser or "", set(self.names), forced=self.parser is None)

    def read(self, text: str) -> Calls:
        """The calls in one choice's whole text."""
        if self.parser is None:
            return forced_calls(text, self.choice)
        return parse_calls(text, self.parser, set(self.names))


def plan(llm: Any, generation: Any) -> tuple[Any, Optional[ToolPlan]]:
    """The generation to send (a forced call's schema added) and how to read its answer; None without tools."""
    if not generation.tools or generation.tool_choice == "none":
        return generation, None
    names = frozenset(t["function"]["name"] for t in generation.tools)
    schema = forced_schema(generation.tools, generation.tool_choice, generation.parallel_tool_calls)
    if schema is None:
        return generation, ToolPlan(generation.tool_choice, names, parser_for(llm))
    sampling = {**generation.sampling, "json_schema": json.dumps(schema, separators=(",", ":"))}
    return dataclasses.replace(generation, sampling=sampling), ToolPlan(generation.tool_choice, names)


@dataclass
class Calls:
    """What an answer holds: its text (None when it is only calls) and its tool calls, OpenAI-shaped."""

    content: Optional[str]
    calls: list[dict[str, Any]]


def parser_for(llm: Any) -> str:
    """The tool-call format of ``llm``: the spec's ``tool_parser``, else the one its chat template writes.

    Raises:
        APIError: 400 naming the spec key when neither says.

    """
    chosen = str(llm.parameters.get("tool_parser", ""))
    if chosen in PARSERS:
        return chosen
    template = str(getattr(llm.tokenizer, "chat_template", "") or "")
    if _HERMES_OPEN in template:
        return "hermes"
    if _MISTRAL in template:
        return "mistral"
    if "<|python_tag|>" in template or ("ipython" in template and '"parameters"' in template):
        return "llama3_json"
    raise bad_request(f"model '{llm.name}' has no known tool-call format: its chat template names none of "
                      f"{', '.join(PARSERS)}; set `tool_parser:` in its `llms:` entry of the spec to the format "
                      "it was trained on", param="tools", code="unsupported_parameter")


def template_knows_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a ``tools`` argument itself."""
    return "tools" in str(getattr(tokenizer, "chat_template", "") or "")


def render_tools(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` for a template that knows no tools, in the Hermes format.

    The tools and how to call them go in the system message, past calls are written as the model would
    write them, tool results become ``<tool_response>`` turns.
    """
    listed = "\n".join(json.dumps(tool, separators=(", ", ": ")) for tool in tools)
    guide = ("You may call one or more functions to answer. The functions are listed in <tools></tools>:\n"
             f"<tools>\n{listed}\n</tools>\n\nTo call a function, answer with one JSON object per call, each in "
             '<tool_call></tool_call> tags:\n<tool_call>\n{"name": <function name>, "arguments": <arguments as '
             "a JSON object>}\n</tool_call>")
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                     for c in message["tool_calls"]]
            written = "\n".join(f"{_HERMES_OPEN}\n{json.dumps(call)}\n{_HERMES_CLOSE}" for call in calls)
            content = (message.get("content") or "") + ("\n" if message.get("content") else "") + written
            out.append({"role": "assistant", "content": content})
        elif message["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{message.get('content', '')}\n</tool_response>"})
        else:
            out.append({"role": message["role"], "content": message.get("content") or ""})
    if out and out[0]["role"] == "system":
        return [{"role": "system", "content": out[0]["content"] + "\n\n" + guide}, *out[1:]]
    return [{"role": "system", "content": guide}, *out]


def _arguments_schema(tool: dict[str, Any]) -> dict[str, Any]:
    found = tool["function"].get("parameters")
    return found if found else {"type": "object"}


def forced_schema(tools: list[dict[str, Any]], choice: str, parallel: bool) -> Optional[dict[str, Any]]:
    """The JSON schema a forced call must satisfy (None for ``auto`` and ``none``).

    ``required``: a list of calls (at most one without ``parallel``); a function's name: its arguments.
    """
    if choice in ("auto", "none"):
        return None
    if choice != "required":
        tool = next(t for t in tools if t["function"]["name"] == choice)
        return _arguments_schema(tool)
    one_of = [{"type": "object", "properties": {"name": {"const": t["function"]["name"]},
                                               "arguments": _arguments_schema(t)},
               "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": one_of}}
    if not parallel:
        schema["maxItems"] = 1
    return schema


def _call(name: str, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": name, "arguments": text}}


def forced_calls(text: str, choice: str) -> Calls:
    """The calls of a forced answer (its grammar made it valid JSON; a cut-off answer is returned as text)."""
    try:
        found = json.loads(text)
    except ValueError:
        return Calls(text, [])
    if choice != "required":
        return Calls(None, [_call(choice, found)])
    return Calls(None, [_call(item["name"], item.get("arguments", {})) for item in found
                        if isinstance(item, dict) and isinstance(item.get("name"), str)])


def _as_call(found: Any, names: set[str], arguments_key: str) -> Optional[dict[str, Any]]:
    if not isinstance(found, dict) or found.get("name") not in names:
        return None
    return _call(found["name"], found.get(arguments_key, found.get("arguments", {})))


def parse_calls(text: str, parser: str, names: set[str]) -> Calls:
    """The tool calls in a whole answer (to functions among ``names``), and the text around them.

    Text that only looks like a call (unknown function, broken JSON) stays text.
    """
    if parser == "hermes":
        return _hermes_calls(text, names)
    body = text.strip()
    if parser == "mistral":
        found = _json(body.removeprefix(_MISTRAL).strip())
        items = found if isinstance(found, list) else [found]
        arguments_key, parts = "arguments", items
    else:  # llama3_json: one object, or several separated by ';'
        arguments_key, parts = "parameters", [_json(p) for p in body.removeprefix("<|python_tag|>").split(";")]
    calls = [_as_call(item, names, arguments_key) for item in parts]
    if not calls or any(call is None for call in calls):
        return Calls(text, [])
    return Calls(None, [call for call in calls if call is not None])


def _json(text: str) -> Any:
    """``text`` parsed as JSON, or None."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _hermes_calls(text: str, names: set[str]) -> Calls:
    calls, spans = [], []
    for match in _HERMES_CALL.finditer(text):
        call = _as_call(_json(match.group(1)), names, "arguments")
        if call is not None:
            calls.append(call)
            spans.append(match.span())
    if not calls:
        return Calls(text, [])
    kept, last = [], 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return Calls("".join(kept).strip() or None, calls)


class ToolStream:
    """Streams an answer's text while it cannot be a tool call, and holds back what may be one.

    The text is sent as it comes until it could start a call (Hermes: ``<tool_call>`` appears, or the text
    so far is a prefix of it; the JSON formats: the answer starts with ``{``, ``[`` or ``[TOOL_CALLS]``).
    What is held back is parsed when the answer ends.
    """

    def __init__(self, parser: str, names: set[str], forced: bool = False) -> None:
        self.parser, self.names = parser, names
        self.text = ""
        self.sent = 0
        #: A forced call (``required``, a name) holds all its text: the whole of it is the call.
        self.holding = forced
        self.forced = forced

    def push(self, delta: str) -> str:
        """The part of the text so far that can go to the client now."""
        self.text += delta
        if self.holding:
            return ""
        if self.parser == "hermes":
            start = self.text.find(_HERMES_OPEN, self.sent)
            if start >= 0:
                self.holding = True
                return self._send_upto(start)
            keep = _partial_suffix(self.text, _HERMES_OPEN)
            return self._send_upto(len(self.text) - keep)
        head = self.text.lstrip()
        if not head:
            return ""
        if head[0] in "{[" or _MISTRAL.startswith(head[: len(_MISTRAL)]) or head.startswith("<|python_tag|>"):
            self.holding = True
            return ""
        return self._send_upto(len(self.text))

    def _send_upto(self, end: int) -> str:
        piece = self.text[self.sent:end]
        self.sent = max(self.sent, end)
        return piece

    def finish(self, choice: str = "auto") -> Calls:
        """At the end of the answer: the text not sent yet and the calls found in it."""
        rest = self.text[self.sent:]
        if self.forced:
            return forced_calls(rest, choice)
        return parse_calls(rest, self.parser, self.names)


def _partial_suffix(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
