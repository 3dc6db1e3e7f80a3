"""OpenAI request bodies, checked at the boundary, turned into one ``Generation`` the gateway sends to Triton.

Fields OpenAI defines that the engines cannot honour (``n`` > 1, ``logprobs``, tools, ...) are refused
with a 400 that says why, rather than ignored; fields OpenAI does not define are refused too, as
OpenAI's API does ("Unrecognized request argument").

Types are strict, as OpenAI's API has them: ``stream`` is a JSON boolean (not ``"yes"`` or ``1``), an
integer is a JSON integer (not ``5.0`` or ``true``) within the range of the Triton input it fills (INT32 for
``max_tokens`` and ``top_k``, UINT64 for ``seed``), and text is valid Unicode (no lone surrogates, which
JSON's ``\ud800`` escapes can carry but UTF-8 cannot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tritonkit.gateway.errors import bad_request

__all__ = ["ChatRequest", "CompletionRequest", "Generation", "Message", "parse_chat", "parse_completion"]

#: OpenAI fields that no engine behind the gateway supports, with the reason given back.
_UNSUPPORTED: dict[str, str] = {
    "tools": "tool calls are not supported by this gateway",
    "tool_choice": "tool calls are not supported by this gateway",
    "functions": "function calls are not supported by this gateway",
    "function_call": "function calls are not supported by this gateway",
    "parallel_tool_calls": "tool calls are not supported by this gateway",
    "response_format": "structured output (response_format) is not supported by this gateway",
    "logit_bias": "logit_bias is not supported by the engines behind this gateway",
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


class Message(_Strict):
    """One chat message; content is a string or a list of text parts."""

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[Text, list[_TextPart]]
    name: Optional[Text] = None

    def text(self) -> str:
        """The message's text, its parts joined."""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


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
    n: Optional[int] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[Text] = None
    logit_bias: Optional[dict[str, float]] = None
    response_format: Optional[Any] = None


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1, le=INT32_MAX)
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None
    tools: Optional[Any] = None
    tool_choice: Optional[Any] = None
    functions: Optional[Any] = None
    function_call: Optional[Any] = None
    parallel_tool_calls: Optional[Any] = None
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
    logprobs: Optional[int] = None
    suffix: Optional[str] = None


@dataclass(frozen=True)
class Generation:
    """What one OpenAI request asks of an LLM, in the gateway's own terms."""

    model: str
    #: The chat messages (as role/content dicts), or None for a completion prompt.
    messages: Optional[list[dict[str, str]]]
    prompt: Optional[str]
    max_tokens: Optional[int]
    stream: bool
    include_usage: bool
    echo: bool = False
    #: Sampling settings by the names of ``REQUEST_NAMES`` (temperature, top_k, stop, ...), unset ones left out.
    sampling: dict[str, Any] = field(default_factory=dict)


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
    if request.n not in (None, 1):
        raise bad_request(f"'n' is {request.n}; this gateway returns one choice per request (n must be 1); "
                          "send n requests instead", param="n", code="unsupported_parameter")


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


def parse_chat(body: Any) -> Generation:
    """Check a chat completions body; raises APIError (400) naming the field at fault."""
    request: ChatRequest = _validate(ChatRequest, body)
    _refuse_unsupported(request)
    if request.logprobs or request.top_logprobs:
        raise bad_request("'logprobs': the engines behind this gateway return no per-token log probabilities",
                          param="logprobs", code="unsupported_parameter")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in request.messages]
    return Generation(model=request.model, messages=messages, prompt=None,
                      max_tokens=request.max_completion_tokens or request.max_tokens, stream=request.stream,
                      include_usage=bool(request.stream_options and request.stream_options.include_usage),
                      sampling=_sampling(request))


def parse_completion(body: Any) -> Generation:
    """Check a completions body; raises APIError (400) naming the field at fault."""
    request: CompletionRequest = _validate(CompletionRequest, body)
    _refuse_unsupported(request)
    if request.best_of not in (None, 1):
        raise bad_request(f"'best_of' is {request.best_of}; this gateway generates one sequence per request",
                          param="best_of", code="unsupported_parameter")
    if request.logprobs:
        raise bad_request("'logprobs': the engines behind this gateway return no per-token log probabilities",
                          param="logprobs", code="unsupported_parameter")
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1:
        raise bad_request(f"'prompt' holds {len(prompts)} prompts; send one prompt per request", param="prompt")
    if not prompts[0].strip():
        raise bad_request("'prompt' is empty", param="prompt")
    return Generation(model=request.model, messages=None, prompt=prompts[0], max_tokens=request.max_tokens or 16,
                      stream=request.stream, echo=request.echo,
                      include_usage=bool(request.stream_options and request.stream_options.include_usage),
                      sampling=_sampling(request))

