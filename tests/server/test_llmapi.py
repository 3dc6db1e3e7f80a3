"""The default example's LLM in the LLM-API layout on a real tritonserver: TensorRT-LLM's interface, SmolLM2.

Requests are written as clients of NVIDIA's llmapi model write them: HTTP ``generate`` and
``generate_stream`` with ``text_input``/``sampling_param_*`` JSON, and gRPC streaming.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritonkit.runtime import Server
from tritonkit.triton.llmapi import EXTENSION_INPUTS, EXTENSION_OUTPUTS, LLMAPI_INPUTS, LLMAPI_OUTPUTS, LOCAL_INPUTS

pytestmark = [pytest.mark.triton, pytest.mark.llm]

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def server(default_example_server: Server) -> Server:
    """The default example, unchanged, generated and served (its classic models too)."""
    return default_example_server


def _post(server: Server, path: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/smollm2/{path}",
                                     json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _tensors(arrays: dict[str, Any]) -> list[Any]:
    """Each array as a gRPC input, its Triton type from its dtype."""
    tensors = []
    for name, array in arrays.items():
        kind = {"object": "BYTES", "float32": "FP32", "int32": "INT32", "uint64": "UINT64", "bool": "BOOL"}
        tensor = grpcclient.InferInput(name, list(array.shape), kind[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]


def test_the_model_declares_the_llmapi_interface(server: Server) -> None:
    config = server.client("http").model("smollm2")
    declared = {t.name for t in config.inputs}
    # NVIDIA's inputs, plus the one tritonkit's PyTorch engine adds (a client written for NVIDIA's never sends it).
    assert declared == ({t.name for t in LLMAPI_INPUTS if t.since is None} | {t.name for t in LOCAL_INPUTS}
                        | {t.name for t in EXTENSION_INPUTS})
    assert {t.name for t in config.outputs} == {t.name for t in LLMAPI_OUTPUTS} | {t.name for t in EXTENSION_OUTPUTS}
    assert config.decoupled and config.max_batch_size == 0


def test_apply_chat_template_false_continues_the_text_as_given(server: Server) -> None:
    asked = {"text_input": "The capital of France is", "sampling_param_max_tokens": 4}
    status, raw = _post(server, "generate", {**asked, "apply_chat_template": False})
    assert status == 200, raw
    assert "Paris" in json.loads(raw)["text_output"]
    # Left out, the model's own chat template wraps the text: a chat answer, not a continuation.
    status, chat = _post(server, "generate", asked)
    assert status == 200 and json.loads(chat)["text_output"] != json.loads(raw)["text_output"]


def test_http_generate_answers_paris(server: Server) -> None:
    status, body = _post(server, "generate", {"text_input": QUESTION, "sampling_param_max_tokens": 24,
                                              "return_finish_reason": True})
    assert status == 200, body
    answer = json.loads(body)
    assert "Paris" in answer["text_output"]
    assert answer["finish_reason"] == "stop"


def test_http_generate_stream_matches_the_whole_answer(server: Server) -> None:
    _, whole = _post(server, "generate", {"text_input": QUESTION, "sampling_param_max_tokens": 24})
    status, body = _post(server, "generate_stream", {"text_input": QUESTION, "streaming": True,
                                                     "sampling_param_max_tokens": 24, "return_finish_reason": True})
    assert status == 200, body
    events = _events(body)
    assert len(events) > 3
    assert "".join(e["text_output"] for e in events) == json.loads(whole)["text_output"]
    assert events[-1]["finish_reason"] == "stop"


def test_grpc_stream_answers_paris_with_a_length_cut_and_logprob(server: Server) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    arrays = {"text_input": np.array([QUESTION.encode()], dtype=np.object_),
              "streaming": np.array([True]), "sampling_param_max_tokens": np.array([5], dtype=np.int32),
              "return_finish_reason": np.array([True]), "return_cumulative_logprob": np.array([True])}
    inputs = _tensors(arrays)
    client.start_stream(callback=lambda result, error: results.put(error or result))
    try:
        client.async_stream_infer("smollm2", inputs, enable_empty_final_response=True)
        pieces, final = [], None
        while final is None:
            item = results.get(timeout=120)
            assert not isinstance(item, Exception), item
            if item.get_response().parameters["triton_final_response"].bool_param:
                final = item
            text = item.as_numpy("text_output")
            if text is not None:
                pieces.append(b"".join(text).decode())
    finally:
        client.stop_stream()
        client.close()
    assert "".join(pieces).startswith("The capital of France")
    assert final.as_numpy("finish_reason")[0] == b"length"
    assert float(final.as_numpy("cumulative_logprob")[0]) < 0.0


@pytest.mark.parametrize(("body", "needle"), [
    ({"text_input": "", "sampling_param_max_tokens": 4}, "text_input' is empty"),
    ({"text_input": "hi", "sampling_param_best_of": 3}, "'sampling_param_best_of' is 3"),
    ({"text_input": "hi " * 400_000, "sampling_param_max_tokens": 4}, "[context_length_exceeded] input 'text_input' "
     "has 1200000 bytes"),
    ({"text_input": "hi", "sampling_param_top_p": 0.0}, "'sampling_param_top_p' must be in (0, 1] (got 0.0)"),
    ({"text_input": "hi", "sampling_param_max_tokens": -2}, "at least 1"),
    ({"text_input": "hi " * 1500, "sampling_param_max_tokens": 4}, "the limit (max_input_len) is 1024"),
    ({"text_input": "hi", "streaming": True}, "use generate stream"),
    ({"text_input": "hi", "sampling_param_temperature": "hot"}, "non-number"),
])
def test_malformed_requests_get_an_error_and_the_server_stays_ready(server: Server, body: dict[str, Any],
                                                                    needle: str) -> None:
    _, text = _post(server, "generate", body)
    assert "error" in json.loads(text) and needle in text, text
    status, answer = _post(server, "generate", {"text_input": QUESTION, "sampling_param_max_tokens": 12})
    assert status == 200 and "Paris" in json.loads(answer)["text_output"]


def test_max_tokens_of_2_to_the_31_is_clamped_to_max_output_len_and_answered(server: Server) -> None:
    status, answer = _post(server, "generate", {"text_input": QUESTION, "sampling_param_max_tokens": 2**31 - 1,
                                                "return_finish_reason": True})
    assert status == 200 and "Paris" in json.loads(answer)["text_output"], answer


def test_a_nan_temperature_is_refused_at_once_and_poisons_nothing_in_flight(server: Server) -> None:
    """NaN and infinities never reach the sampler: the request is refused, the streams beside it end well."""
    answers: dict[int, Any] = {}

    def ask(key: int) -> None:
        answers[key] = _post(server, "generate", {"text_input": QUESTION, "sampling_param_max_tokens": 24})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for value in (float("nan"), float("inf"), float("-inf")):
        started = time.monotonic()
        # JSON has no NaN: the gRPC client sends the real float32 bit patterns.
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inputs = _tensors({"text_input": np.array([QUESTION.encode()], dtype=np.object_),
                           "sampling_param_temperature": np.array([value], dtype=np.float32)})
        errors: queue.Queue[Any] = queue.Queue()
        client.start_stream(callback=lambda result, error, found=errors: found.put(error))
        try:
            client.async_stream_infer("smollm2", inputs, enable_empty_final_response=True)
            error = errors.get(timeout=30)
        finally:
            client.stop_stream()
            client.close()
        assert error is not None and "[invalid_argument] input 'sampling_param_temperature' must be a finite number" \
            in str(error), error
        assert time.monotonic() - started < 5
    for thread in threads:
        thread.join(timeout=120)
    assert all(status == 200 and "Paris" in json.loads(body)["text_output"] for status, body in answers.values()), \
        answers


_F32 = st.floats(width=32)  # NaN and the infinities included
_INT32 = st.integers(-(2**31), 2**31 - 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(prompt=st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode)),
       max_tokens=st.one_of(st.integers(-(2**31), 0), st.integers(1, 6), st.just(2**31 - 1)),
       temperature=st.one_of(st.none(), _F32), top_p=st.one_of(st.none(), _F32),
       top_k=st.one_of(st.none(), _INT32), presence=st.one_of(st.none(), _F32),
       seed=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_any_request_is_answered_or_refused_and_the_server_stays_ready(
        server: Server, prompt: bytes, max_tokens: int, temperature: float | None, top_p: float | None,
        top_k: int | None, presence: float | None, seed: int | None) -> None:
    """Property: whatever the LLM-API interface's tensors hold, the request ends (text or an error with a code)
    within seconds, and the server stays ready to answer the next one."""
    values: dict[str, Any] = {"text_input": np.array([prompt], dtype=np.object_),
                              "sampling_param_max_tokens": np.array([max_tokens], dtype=np.int32)}
    for name, value, dtype in (("temperature", temperature, np.float32), ("top_p", top_p, np.float32),
                               ("top_k", top_k, np.int32), ("presence_penalty", presence, np.float32),
                               ("seed", seed, np.uint64)):
        if value is not None:
            values[f"sampling_param_{name}"] = np.array([value], dtype=dtype)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    replies: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    try:
        client.async_stream_infer("smollm2", _tensors(values), enable_empty_final_response=True)
        while True:
            result, error = replies.get(timeout=60)
            if error is not None:
                assert re.match(r"\[(invalid_argument|context_length_exceeded)\] input '", str(error.message())), error
                break
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
        client.close()
    assert server.client("http").is_server_ready()


def test_chat_command_streams_from_the_llmapi_model(server: Server) -> None:
    done = subprocess.run([sys.executable, "-m", "tritonkit", "chat", "smollm2", QUESTION, "--url", server.grpc_url,
                           "--max-tokens", "24"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout
    assert "finish_reason: stop" in done.stderr


def test_a_short_request_overtakes_a_long_one_in_flight(server: Server) -> None:
    """In-flight batching: a 5-token request sent while a 200-token one decodes is answered first."""
    events: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    arrays = {"text_input": np.array([b"Write a long story about a lighthouse keeper and the sea."], dtype=np.object_),
              "streaming": np.array([True]), "sampling_param_max_tokens": np.array([200], dtype=np.int32)}
    inputs = _tensors(arrays)
    client.start_stream(callback=lambda result, error: events.put(("long", error or result)))
    try:
        client.async_stream_infer("smollm2", inputs, enable_empty_final_response=True)
        for _ in range(3):  # the long answer is decoding
            _, item = events.get(timeout=120)
            assert not isinstance(item, Exception), item
        status, body = _post(server, "generate", {"text_input": "Say hello.", "sampling_param_max_tokens": 5})
        assert status == 200, body
        finished_long = False
        while not events.empty():
            _, item = events.get_nowait()
            finished_long = finished_long or item.get_response().parameters["triton_final_response"].bool_param
        assert not finished_long, "the short request waited for the long one"
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()
