"""OpenAI request bodies, checked at the boundary, turned into one ``Generation`` the gateway sends to Triton.

Structured output (``response_format``), tools, ``n``, ``logprobs``, ``logit_bias`` and ``seed`` become the
LLM-API interface's inputs; a model whose interface lacks one answers 400 naming it. Fields OpenAI
defines that no engine behind the gateway honours (audio, predicted outputs, ...) are refused with a 400
that says why, rather than ignored; fields OpenAI does not define are refused too, as OpenAI's API does
("Unrecognized request argument").

Types are strict, as OpenAI's API has them: ``stream`` is a JSON boolean (not ``"yes"`` or ``1``), an
integer is a JSON integer (not ``5.0`` or ``true``) within the range of the Triton input it fills (INT32 for
``max_tokens`` and ``top_k``, UINT64 for ``seed``), and text is valid Unicode (no lone surrogates, which
JSON's ``\ud800`` escapes can carry but UTF-8 cannot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tritonkit.gateway.errors import bad_request

__all__ = ["ChatRequest", "CompletionRequest", "Generation", "Message", "Tool", "ToolCall", "check_schema",
           "parse_chat", "parse_completion"]

#: OpenAI fields that no engine behind the gateway supports, with the reason given back.
_UNSUPPORTED: dict[str, str] = {
    "functions": "the deprecated 'functions' are not supported; send them as 'tools'",
    "function_call": "the deprecated 'function_call' is not supported; use 'tool_choice'",
    "suffix": "suffix (insertion) is not supported by the engines behind this gateway",
    "audio": "audio output is not supported by this gateway",
    "modalities": "only text output is supported by this gateway",
    "prediction": "predicted outputs are not supported by this gateway",
}


#: The largest value of an INT32 input (``max_tokens``, ``top_k``); UINT64's (``seed``) is 2**64 - 1.
INT32_MAX = 2**31 - 1
#: How much of a refused value an error message quotes.
_SHOWN = 80


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode: a lone surrogate at character {exc.start}") from None
    return text


#: Text that goes to Triton, or back in a message: it must encode as UTF-8.
Text = Annotated[str, AfterValidator(_utf8)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StreamOptions(_Strict):
    """``stream_options``: only ``include_usage`` is defined."""

    include_usage: bool = False


class _TextPart(_Strict):
    type: Literal["text"]
    text: Text


class _CalledFunction(_Strict):
    name: Text
    arguments: Text


class ToolCall(_Strict):
    """A tool call an assistant message made earlier in the conversation."""

    id: Text
    type: Literal["function"] = "function"
    function: _CalledFunction


class Message(_Strict):
    """One chat message; content is a string or a list of text parts (none for an assistant's tool calls)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[Text, list[_TextPart], None] = None
    name: Optional[Text] = None
    tool_calls: Optional[list[ToolCall]] = None
    tool_call_id: Optional[Text] = None

    def text(self) -> str:
        """The message's text, its parts joined."""
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class Function(_Strict):
    """A function the model may call: ``parameters`` is a JSON schema of its arguments."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: Optional[Text] = None
    parameters: Optional[dict[str, Any]] = None
    strict: Optional[bool] = None


class Tool(_Strict):
    """``tools[i]``: only functions are defined."""

    type: Literal["function"]
    function: Function


class _NamedFunction(_Strict):
    name: Text


class _NamedChoice(_Strict):
    type: Literal["function"]
    function: _NamedFunction


class _JSONSchemaFormat(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: Optional[Text] = None
    schema_: Optional[dict[str, Any]] = Field(default=None, alias="schema")
    strict: Optional[bool] = None


class _ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[_JSONSchemaFormat] = None


class _Sampling(_Strict):
    model: Text = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=1, le=INT32_MAX)
    temperature: Optional[float] = Field(default=None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(default=None, ge=0, le=INT32_MAX)
    seed: Optional[int] = Field(default=None, ge=0, lt=2**64)
    stop: Union[Text, list[Text], None] = None
    presence_penalty: Optional[float] = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: Optional[float] = Field(default=None, ge=-2.0, le=2.0)
    n: Optional[int] = Field(default=None, ge=1, le=INT32_MAX)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[Text] = None
    logit_bias: Optional[dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]]] = None
    response_format: Optional[_ResponseFormat] = None


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1, le=INT32_MAX)
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    tools: Optional[list[Tool]] = None
    tool_choice: Union[Literal["none", "auto", "required"], _NamedChoice, None] = None
    functions: Optional[Any] = None
    function_call: Optional[Any] = None
    parallel_tool_calls: Optional[bool] = None
    audio: Optional[Any] = None
    modalities: Optional[list[str]] = None
    prediction: Optional[Any] = None
    metadata: Optional[dict[str, str]] = None
    store: Optional[bool] = None
    service_tier: Optional[str] = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: Union[Text, list[Text]]
    echo: bool = False
    best_of: Optional[int] = None
    logprobs: Optional[int] = Field(default=None, ge=0, le=5)
    suffix: Optional[str] = None


@dataclass(frozen=True)
class Generation:
    """What one OpenAI request asks of an LLM, in the gateway's own terms."""

    model: str
    #: The chat messages (role, content, and an assistant's ``tool_calls`` or a tool's ``tool_call_id``), or
    #: None for a completion prompt.
    messages: Optional[list[dict[str, Any]]]
    prompt: Optional[str]
    max_tokens: Optional[int]
    stream: bool
    include_usage: bool
    echo: bool = False
    #: Sampling settings by the names of ``REQUEST_NAMES`` (temperature, top_k, stop, n, logit_bias, and the
    #: one structured-output constraint: json_schema, json_object), unset ones left out.
    sampling: dict[str, Any] = field(default_factory=dict)
    #: Choices to generate.
    n: int = 1
    #: None: no log probabilities; else each token's, with this many alternatives.
    logprobs: Optional[int] = None
    #: The functions the model may call (OpenAI's ``tools``, as dicts), and ``tool_choice``: ``auto``,
    #: ``none``, ``required`` or a function's name.
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: str = "auto"
    parallel_tool_calls: bool = True


def _safe(text: str, limit: int = _SHOWN) -> str:
    """``text`` as it can go back in a message: cut to ``limit`` characters, lone surrogates escaped."""
    cut = text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


#: What pydantic adds to an error's location for a member of a union (not a field of the request).
_UNION_TAGS = frozenset({"str", "list[str]", "list[_TextPart]", "function-after[_utf8(), str]",
                         "list[function-after[_utf8(), str]]"})


def _field_name(loc: tuple[Union[int, str], ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p in _UNION_TAGS)]
    return _safe(".".join(parts)) or "body"


def _validate(kind: type[_Sampling], body: Any) -> Any:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", param=None)
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        # The deepest error: within a union (``stop``, ``content``) it is the member's own, e.g. 'stop.1'.
        first = max(exc.errors(), key=lambda error: len(error["loc"]))
        name = _field_name(first["loc"])
        if first["type"] == "extra_forbidden":
            raise bad_request(f"Unrecognized request argument supplied: {name}", param=name) from None
        if first["type"] == "missing":  # its input is the whole object around it
            raise bad_request(f"'{name}': Field required", param=name) from None
        raise bad_request(f"'{name}': {first['msg']} (got {_safe(repr(first.get('input')))})", param=name) from None


def _refuse_unsupported(request: _Sampling) -> None:
    for name, reason in _UNSUPPORTED.items():
        if getattr(request, name, None) not in (None, False, [], {}):
            raise bad_request(f"'{name}': {reason}", param=name, code="unsupported_parameter")
    if request.stream_options is not None and not request.stream:
        raise bad_request("'stream_options' is only allowed when 'stream' is true", param="stream_options")


def check_schema(schema: Any, param: str) -> str:
    """``schema`` as JSON text once it is a valid JSON schema (draft 2020-12); else a 400 naming what is wrong.

    Whether the engine's grammar library can compile it is the engine's to say (a 400 naming the keyword).
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise bad_request(f"'{param}' must be a JSON schema object", param=param)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise bad_request(f"'{param}' is not a valid JSON schema: at {where}: {_safe(exc.message, 200)}",
                          param=param) from None
    return json.dumps(schema, separators=(",", ":"))


def _response_format(request: _Sampling) -> dict[str, Any]:
    """The structured-output constraint ``response_format`` asks for, by ``REQUEST_NAMES``' names."""
    found = request.response_format
    if found is None or found.type == "text":
        return {}
    if found.type == "json_object":
        return {"json_object": True}
    if found.json_schema is None:
        raise bad_request("'response_format.json_schema' is required when type is 'json_schema'",
                          param="response_format.json_schema")
    if found.json_schema.schema_ is None:  # OpenAI: no schema, any JSON
        return {"json_object": True}
    return {"json_schema": check_schema(found.json_schema.schema_, "response_format.json_schema.schema")}


def _logit_bias(request: _Sampling) -> dict[str, Any]:
    if not request.logit_bias:
        return {}
    for key in request.logit_bias:
        if not key.isdigit():
            raise bad_request(f"'logit_bias': key {_safe(repr(key))} is not a token id (a non-negative integer)",
                              param="logit_bias")
    return {"logit_bias": json.dumps({str(int(k)): v for k, v in request.logit_bias.items()})}


def _tools(request: ChatRequest) -> tuple[Optional[list[dict[str, Any]]], str]:
    """The request's tools as dicts, checked, and its tool choice (``auto``, ``none``, ``required`` or a name)."""
    choice = request.tool_choice
    if not request.tools:
        if choice not in (None, "none", "auto"):
            raise bad_request("'tool_choice' is only allowed when 'tools' are given", param="tool_choice")
        return None, "none"
    names = [tool.function.name for tool in request.tools]
    for index, tool in enumerate(request.tools):
        if tool.function.name in names[:index]:
            raise bad_request(f"'tools': the function name '{tool.function.name}' is given twice",
                              param=f"tools.{index}.function.name")
        if tool.function.parameters is not None:
            check_schema(tool.function.parameters, f"tools.{index}.function.parameters")
    if isinstance(choice, _NamedChoice):
        if choice.function.name not in names:
            raise bad_request(f"'tool_choice' names function '{_safe(choice.function.name)}', which is not among "
                              f"the tools ({', '.join(names)})", param="tool_choice")
        named = choice.function.name
    else:
        named = choice or "auto"
    tools = [tool.model_dump(exclude_none=True, by_alias=True) for tool in request.tools]
    return tools, named


def _stops(stop: Union[str, list[str], None]) -> Optional[list[str]]:
    stops = [stop] if isinstance(stop, str) else stop
    if stops is not None and len(stops) > 4:
        raise bad_request(f"'stop' holds {len(stops)} sequences; at most 4 are allowed", param="stop")
    return stops or None


def _sampling(request: _Sampling) -> dict[str, Any]:
    values = {"temperature": request.temperature, "top_p": request.top_p, "top_k": request.top_k,
              "seed": request.seed, "stop": _stops(request.stop), "presence_penalty": request.presence_penalty,
              "frequency_penalty": request.frequency_penalty}
    return {k: v for k, v in values.items() if v is not None}


def _message(message: Message) -> dict[str, Any]:
    found: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role,
                             "content": message.text()}
    if message.tool_calls:
        found["tool_calls"] = [{"id": c.id, "type": "function",
                                "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)}}
                               for c in message.tool_calls]
    if message.tool_call_id is not None:
        found["tool_call_id"] = message.tool_call_id
    return found


def _arguments(text: str) -> Any:
    """A past call's arguments (a JSON text) as the object chat templates render."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_chat(body: Any) -> Generation:
    """Check a chat completions body; raises APIError (400) naming the field at fault."""
    request: ChatRequest = _validate(ChatRequest, body)
    _refuse_unsupported(request)
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("'top_logprobs' is only allowed when 'logprobs' is true", param="top_logprobs")
    tools, choice = _tools(request)
    sampling = {**_sampling(request), **_response_format(request), **_logit_bias(request)}
    if choice not in ("auto", "none") and ("json_schema" in sampling or "json_object" in sampling):
        raise bad_request("'tool_choice' forces a tool call, and 'response_format' a reply format: send one",
                          param="tool_choice")
    return Generation(model=request.model, messages=[_message(m) for m in request.messages], prompt=None,
                      max_tokens=request.max_completion_tokens or request.max_tokens, stream=request.stream,
                      include_usage=bool(request.stream_options and request.stream_options.include_usage),
                      sampling=sampling, n=request.n or 1,
                      logprobs=(request.top_logprobs or 0) if request.logprobs else None, tools=tools,
                      tool_choice=choice, parallel_tool_calls=request.parallel_tool_calls is not False)


def parse_completion(body: Any) -> Generation:
    """Check a completions body; raises APIError (400) naming the field at fault."""
    request: CompletionRequest = _validate(CompletionRequest, body)
    _refuse_unsupported(request)
    if request.best_of not in (None, 1, request.n):
        raise bad_request(f"'best_of' is {request.best_of}; this gateway returns every sequence it generates "
                          "(best_of may only equal n)", param="best_of", code="unsupported_parameter")
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1:
        raise bad_request(f"'prompt' holds {len(prompts)} prompts; send one prompt per request", param="prompt")
    if not prompts[0].strip():
        raise bad_request("'prompt' is empty", param="prompt")
    return Generation(model=request.model, messages=None, prompt=prompts[0], max_tokens=request.max_tokens or 16,
                      stream=request.stream, echo=request.echo,
                      include_usage=bool(request.stream_options and request.stream_options.include_usage),
                      sampling={**_sampling(request), **_response_format(request), **_logit_bias(request)},
                      n=request.n or 1, logprobs=request.logprobs)

