"""The in-flight scheduler of the PyTorch engine, on the real SmolLM2 model, outside Triton."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common

pytestmark = pytest.mark.llm

PROMPTS = ["What is the capital of France?", "Say hello.", "Count from one to five, please, slowly.",
           "Name three colours."]


@pytest.fixture(params=["dynamic", "slots", "slots-bucketed"])
def engine(model: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Both schedulers: the dynamic cache and static slots, the latter also in the buckets CUDA graphs capture."""
    import llm_scheduler

    common: dict[str, Any] = {"max_batch": 4, "num_blocks": 160, "block_tokens": 16, "prefill_chunk": 16,
                              "max_queue": 3, "prefix_cache": True}
    if request.param.startswith("slots"):
        common.update(max_len=2560, cuda_graphs=request.param == "slots-bucketed")
    running = llm_scheduler.Engine(model, 2, **common)
    yield running
    running.stop()


def _encode(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True)
    return list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)


def _request(tokenizer: Any, text: str, max_new: int, seen: list[str] | None = None) -> Any:
    import llm_generate
    import llm_scheduler

    row = llm_generate.Row(prompt=_encode(tokenizer, text), max_new_tokens=max_new,
                           end_ids=llm_common.end_ids(tokenizer))
    return llm_scheduler.Request(row, lambda request, tokens: seen.append(text) if seen is not None else None)


def test_requests_joining_mid_flight_get_the_tokens_they_get_alone(engine: Any, model: Any, tokenizer: Any) -> None:
    alone = _alone(model, tokenizer, 12)
    requests = []
    for text in PROMPTS:  # staggered: each one joins a batch already decoding
        requests.append(_request(tokenizer, text, 12))
        engine.submit(requests[-1])
        time.sleep(0.15)
    for request in requests:
        assert request.done.wait(120)
    assert [r.row.tokens for r in requests] == alone
    assert "Paris" in tokenizer.decode(requests[0].row.tokens)
    assert engine.free_blocks == engine.num_blocks


def test_a_short_request_finishes_while_a_long_one_decodes(engine: Any, tokenizer: Any) -> None:
    long = _request(tokenizer, "Write a long story about a lighthouse keeper.", 200)
    engine.submit(long)
    while len(long.row.tokens) < 3:
        time.sleep(0.02)
    short = _request(tokenizer, "Say hello.", 5)
    engine.submit(short)
    assert short.done.wait(120)
    assert not long.done.is_set() and len(long.row.tokens) < 200
    engine.cancel(long)
    assert long.done.wait(30) and long.row.finish_reason == "cancelled"
    assert engine.free_blocks == engine.num_blocks


def test_cancelled_and_queued_requests_return_every_block(engine: Any, tokenizer: Any) -> None:
    import llm_scheduler

    requests = [_request(tokenizer, text, 64) for text in PROMPTS]
    for request in requests:  # one by one, each admitted before the next: the batch of four fills
        engine.submit(request)
        deadline = time.monotonic() + 30
        while engine.waiting and time.monotonic() < deadline:
            time.sleep(0.01)
    waiting = [_request(tokenizer, "Say hello.", 8) for _ in range(3)]
    for request in waiting:
        engine.submit(request)
    with pytest.raises(llm_scheduler.QueueFullError, match="waiting"):
        engine.submit(_request(tokenizer, "Say hello.", 8))
    time.sleep(0.3)
    for request in [*requests, waiting[0]]:
        engine.cancel(request)
    for request in [*requests, *waiting]:
        assert request.done.wait(120)
    assert {r.row.finish_reason for r in requests} == {"cancelled"}
    assert engine.free_blocks == engine.num_blocks


def test_a_request_larger_than_the_cache_is_refused(engine: Any, tokenizer: Any) -> None:
    with pytest.raises(ValueError, match=r"needs \d+ tokens of KV cache .* 2560"):
        engine.submit(_request(tokenizer, "Say hello.", 4000))
    assert engine.free_blocks == engine.num_blocks


def test_a_row_whose_sampling_fails_ends_alone_and_returns_its_blocks(engine: Any, model: Any,
                                                                       tokenizer: Any) -> None:
    """A value the checks missed (here a NaN temperature put on the row itself) fails its own row only."""
    alone = _alone(model, tokenizer, 12)
    good = [_request(tokenizer, text, 12) for text in PROMPTS[:2]]
    bad = _request(tokenizer, PROMPTS[2], 12)
    bad.row.temperature = float("nan")
    for request in (good[0], bad, good[1]):
        engine.submit(request)
    for request in (*good, bad):
        assert request.done.wait(120)
    assert bad.row.finish_reason == "error" and bad.error is not None
    assert bad.error.startswith("[engine_error] generation failed:")
    assert [r.error for r in good] == [None, None]
    assert [r.row.tokens for r in good] == alone[:2]
    assert engine.free_blocks == engine.num_blocks


def test_a_shared_prefix_is_computed_once_and_changes_nothing(engine: Any, model: Any, tokenizer: Any) -> None:
    import llm_generate

    system = "You are a helpful assistant who answers in one short sentence. " * 6
    first = _request(tokenizer, system + "Say hello.", 8)
    engine.submit(first)
    assert first.done.wait(120)
    hits = engine.prefixes.hits
    second = _request(tokenizer, system + "What is the capital of France?", 8)
    engine.submit(second)
    assert second.done.wait(120)
    assert engine.prefixes.hits == hits + 1  # the preamble's blocks came from the first request
    alone = llm_generate.Row(prompt=second.row.prompt, max_new_tokens=8, end_ids=llm_common.end_ids(tokenizer))
    llm_generate.generate(model, [alone], 2, lambda events: None)
    assert second.row.tokens == alone.tokens


def test_the_loop_survives_many_threads_submitting(engine: Any, tokenizer: Any) -> None:
    import llm_scheduler

    done: list[Any] = []
    refused: list[str] = []

    def client(text: str) -> None:
        request = _request(tokenizer, text, 6)
        try:
            engine.submit(request)
        except llm_scheduler.QueueFullError as exc:
            refused.append(str(exc))
            return
        request.done.wait(120)
        done.append(request)

    threads = [threading.Thread(target=client, args=(PROMPTS[i % 4],)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert len(done) + len(refused) == 12 and done
    assert all(r.row.finish_reason in ("stop", "length") for r in done)
    assert engine.free_blocks == engine.num_blocks


def _alone(model: Any, tokenizer: Any, max_new: int) -> list[list[int]]:
    """Each prompt's greedy tokens, generated on its own."""
    import llm_generate

    tokens = []
    for text in PROMPTS:
        row = llm_generate.Row(prompt=_encode(tokenizer, text), max_new_tokens=max_new,
                               end_ids=llm_common.end_ids(tokenizer))
        llm_generate.generate(model, [row], 2, lambda events: None)
        tokens.append(row.tokens)
    return tokens


def _burst(engine: Any, tokenizer: Any, max_new: int) -> list[Any]:
    """Queue one request per prompt before the loop looks (one burst), wait for all, stop the engine."""
    import llm_scheduler

    try:
        with engine.wake:
            requests = [_request(tokenizer, text, max_new) for text in PROMPTS]
            for request in requests:
                request.blocks = engine.blocks_for(request.row)
                request.state = llm_scheduler.State.WAITING
                engine.waiting.append(request)
            engine.wake.notify()
        for request in requests:
            assert request.done.wait(120)
    finally:
        engine.stop()
    return requests


def test_a_burst_is_prefilled_together_and_decodes_as_alone(model: Any, tokenizer: Any) -> None:
    import llm_kv
    import llm_scheduler

    alone = _alone(model, tokenizer, 10)
    engine = llm_scheduler.Engine(model, 2, max_batch=4, num_blocks=160, block_tokens=16, prefill_chunk=64)
    assert isinstance(engine.kv, llm_kv.DynamicKV)
    forwards: list[int] = []
    original = engine.steps.forward

    def counting(ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        forwards.append(ids.shape[0] if ids.shape[1] > 1 else 0)
        return original(ids, mask, positions, cache)

    engine.steps.forward = counting  # type: ignore[method-assign]
    requests = _burst(engine, tokenizer, 10)
    assert [r.row.tokens for r in requests] == alone
    assert max(forwards) > 1  # at least two prompts went through one prefill
    assert engine.free_blocks == engine.num_blocks


@pytest.mark.parametrize("bucketed", [False, True], ids=["eager", "bucketed"])
def test_static_slots_prefill_a_burst_together_and_free_every_slot(model: Any, tokenizer: Any, bucketed: bool) -> None:
    import llm_kv
    import llm_scheduler

    alone = _alone(model, tokenizer, 10)
    engine = llm_scheduler.Engine(model, 2, max_batch=4, num_blocks=160, max_len=640, prefill_chunk=64,
                                  cuda_graphs=bucketed)
    assert isinstance(engine.kv, llm_kv.SlotKV)
    groups: list[int] = []
    original = engine.steps.prefill

    def counting(requests: Any, start: int, width: int) -> Any:
        groups.append(len(requests))
        return original(requests, start, width)

    engine.steps.prefill = counting  # type: ignore[method-assign]
    requests = _burst(engine, tokenizer, 10)
    assert [r.row.tokens for r in requests] == alone
    assert max(groups) > 1
    assert engine.free_blocks == engine.num_blocks and sorted(engine.kv.free_slots) == [0, 1, 2, 3]
