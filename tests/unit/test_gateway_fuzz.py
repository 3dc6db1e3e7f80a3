"""Property-based fuzzing of the gateway's request parsing (hypothesis): no body gets past it unchecked.

Every generated body either parses to a ``Generation`` whose values fit the Triton tensors they fill (built
here with the gateway's own ``build_inputs`` for an LLM-API model and read back: no wrapped integer, no
non-finite float, text that encodes as UTF-8), or is refused with ``APIError`` 400 naming a field, in a body
that renders as JSON. Never another exception.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritonkit.gateway.catalog import LLM, Target
from tritonkit.gateway.errors import APIError
from tritonkit.gateway.protocol import (
    INT32_MAX,
    ChatRequest,
    CompletionRequest,
    Generation,
    parse_chat,
    parse_completion,
)
from tritonkit.gateway.triton import build_inputs
from tritonkit.triton.llmapi import EXTENSION_INPUTS, LLMAPI_INPUTS, LOCAL_INPUTS, REQUEST_NAMES

_INPUTS = {t.name: ("BYTES" if t.dtype == "STRING" else t.dtype, len(t.dims))
           for t in (*LLMAPI_INPUTS, *EXTENSION_INPUTS, *LOCAL_INPUTS)}
_TARGET = Target("m", _INPUTS, batched=False, decoupled=True)
_LLM = LLM(name="m", interface="llmapi", unary=_TARGET, streaming=_TARGET, parameters={"max_output_len": "64"},
           parameter_owner="m")
_NUMPY = {"INT32": np.int32, "UINT64": np.uint64, "FP32": np.float32, "BOOL": np.bool_}

_EDGE_INTS = st.sampled_from([0, 1, -1, 2, 16, INT32_MAX, INT32_MAX + 1, 2**32, 2**40, 2**53 + 1, 2**63, 2**64 - 1,
                              2**64, -(2**31) - 1, 10**12, 10**30])
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 0.5, 1.0, 2.0, 2.0000001, 1e-45, 3.5e38, -2.0, 1e308])
_SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
_TEXT = st.text(max_size=12) | st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), _SURROGATES,
                                         st.text(max_size=4))
_SCALARS = st.none() | st.booleans() | st.integers() | _EDGE_INTS | _FLOATS | _TEXT
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                     max_leaves=10)
_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer", "assistant", "tool"]) | _JSON,
                                  "content": _TEXT | st.lists(st.fixed_dictionaries(
                                      {"type": st.just("text") | _JSON, "text": _TEXT | _JSON}), max_size=2) | _JSON},
                                 optional={"name": _TEXT | _JSON, "extra": _JSON})
_FIELDS = ["model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
           "seed", "stop", "stream", "stream_options", "n", "presence_penalty", "frequency_penalty", "user", "echo",
           "best_of", "logprobs", "top_logprobs", "tools", "tool_choice", "logit_bias", "response_format",
           "parallel_tool_calls", "metadata", "store", "suffix"]
_VALUES = {"messages": st.lists(_MESSAGE, max_size=3) | _JSON, "prompt": _TEXT | st.lists(_TEXT, max_size=2) | _JSON,
           "stop": _TEXT | st.lists(_TEXT, max_size=6) | _JSON,
           "stream_options": st.fixed_dictionaries({}, optional={"include_usage": _JSON}) | _JSON}


def _valid(chat: bool) -> dict[str, Any]:
    return {"model": "m", **({"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"})}


@st.composite
def _bodies(draw: st.DrawFn, chat: bool) -> Any:
    """A valid body with fields replaced, added or dropped; sometimes any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_JSON)
    body = _valid(chat)
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=5, unique=True)):
        if draw(st.integers(0, 5)) == 0:
            body.pop(name, None)
        else:
            body[name] = draw(_VALUES.get(name, _SCALARS | _JSON))
    if draw(st.booleans()):
        body[draw(_TEXT)] = draw(_SCALARS)
    return body


_NUMERIC = ["max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "presence_penalty",
            "frequency_penalty", "stream", "echo", "n"]


@st.composite
def _numbers(draw: st.DrawFn, chat: bool) -> Any:
    """A valid body whose numeric and boolean fields are each, or not, any JSON scalar (edge values favoured)."""
    body = _valid(chat)
    for name in _NUMERIC:
        if draw(st.booleans()):
            body[name] = draw(_EDGE_INTS | _FLOATS | _SCALARS)
    return body


def _wire(body: Any) -> Any:
    """The body as the gateway receives it: JSON on the wire (NaN and Infinity as Python's json writes them)."""
    return json.loads(json.dumps(body))


def _check_refusal(exc: APIError, body: Any) -> None:
    assert exc.status == 400, exc.message
    if isinstance(body, dict):
        assert isinstance(exc.param, str) and exc.param, exc.message
        known = set(body) | set(ChatRequest.model_fields) | set(CompletionRequest.model_fields) | {"body"}
        assert exc.param in known or exc.param.split(".")[0] in known, (exc.param, exc.message)
    assert len(exc.message) < 600, exc.message  # a refused value is quoted, not echoed whole
    json.dumps(exc.body(), ensure_ascii=False).encode("utf-8")  # as the response renders it


def _check_unchanged(generation: Generation, wire: dict[str, Any]) -> None:
    """What parsed is what was sent, with its JSON type: nothing coerced ("yes" -> true, 5.0 -> 5)."""
    assert generation.stream is wire.get("stream", False)
    tokens = wire.get("max_completion_tokens") or wire.get("max_tokens")
    if tokens is not None:
        assert type(tokens) is int and generation.max_tokens == tokens
    for name, value in generation.sampling.items():
        sent = wire[name]
        kinds = (int,) if name in ("top_k", "seed") else (int, float)
        assert (type(sent) in kinds and sent == value) if name != "stop" else sent in (value, value[0]), (name, sent)


def _check_tensors(generation: Generation) -> None:
    for text in [generation.model, generation.prompt or "", *(m["content"] for m in generation.messages or [])]:
        text.encode("utf-8")
    assert type(generation.stream) is bool and type(generation.include_usage) is bool
    names = REQUEST_NAMES["llmapi"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (then wraps) on an out-of-range integer
        tensors = {t.name(): t for t in build_inputs(_LLM, _TARGET, "prompt", generation, generation.stream)}
    expected = {names["max_tokens"]: generation.max_tokens or 64, names["stream"]: generation.stream,
                **{names[k]: v for k, v in generation.sampling.items() if k != "stop"}}
    for name, value in expected.items():
        datatype = tensors[name].datatype()
        (read,) = np.frombuffer(tensors[name]._get_content(), dtype=_NUMPY[datatype])
        if datatype == "FP32":
            assert math.isfinite(read) and math.isclose(float(read), value, rel_tol=1e-6, abs_tol=1e-38), (name, value)
        else:
            assert read == value and type(value) is (bool if datatype == "BOOL" else int), (name, value, read)
    for stop in generation.sampling.get("stop", []):
        stop.encode("utf-8")


def _check(chat: bool, body: Any) -> None:
    wire = _wire(body)
    try:
        generation = parse_chat(wire) if chat else parse_completion(wire)
    except APIError as exc:
        _check_refusal(exc, wire)
        return
    _check_unchanged(generation, wire)
    _check_tensors(generation)


_FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(body=_bodies(chat=True))
def test_every_chat_body_parses_to_fitting_tensors_or_is_a_400_naming_its_field(body: Any) -> None:
    _check(True, body)


@_FUZZ
@given(body=_bodies(chat=False))
def test_every_completion_body_parses_to_fitting_tensors_or_is_a_400_naming_its_field(body: Any) -> None:
    _check(False, body)


@_FUZZ
@given(body=_numbers(chat=True))
def test_every_number_fits_its_tensor_uncoerced_or_is_a_400_naming_its_field(body: Any) -> None:
    _check(True, body)


@_FUZZ
@given(body=_numbers(chat=False))
def test_every_completion_number_fits_its_tensor_uncoerced_or_is_a_400_naming_its_field(body: Any) -> None:
    _check(False, body)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("stream", "yes", "valid boolean"),
    ("stream", 1, "valid boolean"),
    ("max_tokens", 10**12, "less than or equal to 2147483647"),
    ("max_tokens", 5.0, "valid integer"),
    ("max_tokens", True, "valid integer"),
    ("top_k", 2**40, "less than or equal to 2147483647"),
    ("seed", 2**64, "less than 18446744073709551616"),
    ("temperature", float("nan"), "less than or equal to 2"),
    ("top_p", float("inf"), "less than or equal to 1"),
    ("stop", ["ok", "\ud800"], "lone surrogate"),
])
def test_the_issues_wrong_types_are_refused_naming_the_field(field: str, value: Any, needle: str) -> None:
    body = _wire({"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value})
    with pytest.raises(APIError) as refused:
        parse_chat(body)
    assert refused.value.status == 400 and refused.value.param is not None
    assert refused.value.param.split(".")[0] == field and needle in refused.value.message, refused.value.message


def test_a_huge_refused_value_is_quoted_short() -> None:
    with pytest.raises(APIError) as refused:
        parse_completion({"model": "m", "prompt": "hi", "user": ["x" * 1_000_000]})
    assert refused.value.param == "user" and len(refused.value.message) < 300
