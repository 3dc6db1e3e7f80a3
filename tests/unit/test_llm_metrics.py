"""The engine's statistics under vLLM's names (python_backends/llm_metrics.py), on the real scheduler and SmolLM2."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any, Callable, Optional

import pytest

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common
import llm_metrics

pytestmark = pytest.mark.llm

PROMPTS = ["What is the capital of France?", "Say hello.", "Name three colours.", "Count to five."]
PREAMBLE = "You answer questions about the weather in one short sentence, politely and without jargon. " * 3


@pytest.fixture
def make_engine(model: Any) -> Iterator[Callable[..., Any]]:
    import llm_scheduler

    started: list[Any] = []

    def make(**kwargs: Any) -> Any:
        settings: dict[str, Any] = {"max_batch": 2, "num_blocks": 64, "block_tokens": 16, "prefill_chunk": 64}
        started.append(llm_scheduler.Engine(model, 2, **{**settings, **kwargs}))
        return started[-1]

    yield make
    for engine in started:
        engine.stop()


def _request(tokenizer: Any, text: str, max_new: int, delivered: list[int],
             gate: Optional[threading.Event] = None, end_ids: Optional[list[int]] = None) -> Any:
    import llm_generate
    import llm_scheduler

    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
    prompt = list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)
    row = llm_generate.Row(prompt=prompt, max_new_tokens=max_new,
                           end_ids=llm_common.end_ids(tokenizer) if end_ids is None else end_ids)

    def listen(request: Any, tokens: list[int]) -> None:
        delivered.extend(tokens)
        if gate is not None and tokens:
            gate.wait(60)

    return llm_scheduler.Request(row, listen)


def _level(reading: llm_metrics.Reading, name: str, **labels: str) -> float:
    return reading.levels[(name, tuple(sorted(labels.items())))]


def test_counts_and_times_match_what_the_requests_got(make_engine: Callable[..., Any], tokenizer: Any) -> None:
    engine = make_engine()
    delivered: list[int] = []
    requests = [_request(tokenizer, text, 6, delivered) for text in PROMPTS]
    for request in requests:
        engine.submit(request)
    for request in requests:
        assert request.done.wait(120)
    reading = engine.stats.take()
    assert all(r.row.finish_reason == "length" for r in requests)
    assert _level(reading, llm_metrics.GENERATION_TOKENS) == len(delivered) == 6 * len(PROMPTS)
    assert _level(reading, llm_metrics.PROMPT_TOKENS) == sum(len(r.row.prompt) for r in requests)
    assert _level(reading, llm_metrics.SUCCESS, finished_reason="length") == len(PROMPTS)
    assert _level(reading, llm_metrics.SUCCESS, finished_reason="stop") == 0
    samples = reading.samples
    assert len(samples[llm_metrics.TTFT]) == len(samples[llm_metrics.E2E]) == len(PROMPTS)
    assert len(samples[llm_metrics.QUEUE]) == len(PROMPTS)
    # The gaps between tokens are counted in vLLM's buckets: one per token after a request's first.
    assert _level(reading, llm_metrics.ITL + "_count") == len(delivered) - len(PROMPTS)
    assert _level(reading, llm_metrics.ITL + "_bucket", le="+Inf") == len(delivered) - len(PROMPTS)
    buckets = [_level(reading, llm_metrics.ITL + "_bucket", le=f"{b:g}") for b in llm_metrics.ITL_BUCKETS]
    assert buckets == sorted(buckets) and buckets[-1] <= len(delivered) - len(PROMPTS)
    assert 0 < _level(reading, llm_metrics.ITL + "_sum") < sum(samples[llm_metrics.E2E])
    assert llm_metrics.ITL not in samples
    assert all(0 < ttft < e2e for ttft, e2e in zip(sorted(samples[llm_metrics.TTFT]), sorted(samples[llm_metrics.E2E])))
    # Two requests run at a time: the last two waited for the first two.
    assert sorted(samples[llm_metrics.QUEUE])[-1] > sorted(samples[llm_metrics.TTFT])[0]
    # Samples are handed over once; counters stay totals.
    again = engine.stats.take()
    assert all(values == [] for values in again.samples.values())
    assert _level(again, llm_metrics.GENERATION_TOKENS) == 6 * len(PROMPTS)
    assert _level(again, llm_metrics.RUNNING) == _level(again, llm_metrics.WAITING) == 0
    assert _level(again, llm_metrics.KV_USAGE) == 0.0


def test_gauges_show_the_batch_the_queue_and_the_blocks_held(make_engine: Callable[..., Any], tokenizer: Any) -> None:
    engine = make_engine()
    gate, delivered = threading.Event(), []  # type: ignore[var-annotated]
    requests = [_request(tokenizer, text, 8, delivered, gate) for text in PROMPTS]
    for request in requests:
        engine.submit(request)
    try:
        # The first token's listener holds the scheduler's thread: two admitted, two queued.
        while not delivered:
            threading.Event().wait(0.01)
        reading = engine.stats.take()
        assert _level(reading, llm_metrics.RUNNING) == 2
        assert _level(reading, llm_metrics.WAITING) == 2
        held = sum(engine.blocks_for(r.row) for r in requests[:2])
        assert _level(reading, llm_metrics.KV_USAGE) == pytest.approx(held / 64)
        assert reading.levels[(llm_metrics.CACHE_INFO, (("block_size", "16"), ("enable_prefix_caching", "False"),
                                                        ("num_gpu_blocks", "64")))] == 1.0
    finally:
        gate.set()
    for request in requests:
        assert request.done.wait(120)
    assert _level(engine.stats.take(), llm_metrics.KV_USAGE) == 0.0


def test_cancelled_and_ended_requests_get_vllms_reasons(make_engine: Callable[..., Any], tokenizer: Any) -> None:
    engine = make_engine(max_batch=1)
    gate, delivered = threading.Event(), []  # type: ignore[var-annotated]
    first = _request(tokenizer, PROMPTS[0], 4, delivered, gate)
    queued = _request(tokenizer, PROMPTS[1], 4, [])
    engine.submit(first)
    engine.submit(queued)
    engine.cancel(queued)  # cancelled while it waits: never admitted, no token
    gate.set()
    assert first.done.wait(120) and queued.done.wait(120)
    # A request whose first token is an end id: a first token (never delivered), no generated token.
    ended: list[int] = []
    stopped = _request(tokenizer, PROMPTS[0], 4, ended, end_ids=[first.row.tokens[0]])
    engine.submit(stopped)
    assert stopped.done.wait(120) and stopped.row.finish_reason == "stop" and ended == []
    reading = engine.stats.take()
    assert _level(reading, llm_metrics.SUCCESS, finished_reason="abort") == 1
    assert _level(reading, llm_metrics.SUCCESS, finished_reason="length") == 1
    assert _level(reading, llm_metrics.SUCCESS, finished_reason="stop") == 1
    assert len(reading.samples[llm_metrics.TTFT]) == 2  # the cancelled one had none
    assert len(reading.samples[llm_metrics.QUEUE]) == 2  # nor a time in the queue that ended in admission
    assert len(reading.samples[llm_metrics.E2E]) == 3
    assert _level(reading, llm_metrics.GENERATION_TOKENS) == 4
    assert _level(reading, llm_metrics.PROMPT_TOKENS) == len(first.row.prompt) + len(stopped.row.prompt)


def test_prefix_cache_queries_and_hits_count_tokens(make_engine: Callable[..., Any], tokenizer: Any) -> None:
    engine = make_engine(prefix_cache=True, num_blocks=128)
    requests = []
    for _ in range(2):  # the second prompt finds the first one's whole blocks
        requests.append(_request(tokenizer, PREAMBLE + "Is it sunny?", 2, []))
        engine.submit(requests[-1])
        assert requests[-1].done.wait(120)
    reading = engine.stats.take()
    length = len(requests[0].row.prompt)
    assert _level(reading, llm_metrics.PREFIX_QUERIES) == 2 * length
    # One token of a prompt is always computed; the rest is found in whole blocks of 16.
    assert _level(reading, llm_metrics.PREFIX_HITS) == (length - 1) // 16 * 16 > 0


def test_the_inter_token_histogram_counts_each_gap_once_in_the_first_bucket_that_holds_it() -> None:
    class _KV:
        prefixes, num_blocks, free_blocks, block_tokens = None, 4, 4, 16

    class _Engine:
        kv = _KV()

    stats = llm_metrics.EngineStats(_Engine())
    stats._samples[llm_metrics.ITL].extend([0.01, 0.0100001, 0.3, 100.0])  # a bound is in its own bucket (le)
    first = stats.take()
    stats._samples[llm_metrics.ITL].append(0.001)
    second = stats.take()
    cumulative = {"0.01": 1, "0.025": 2, "0.2": 2, "0.3": 3, "80": 3, "+Inf": 4}
    for bound, count in cumulative.items():
        assert _level(first, llm_metrics.ITL + "_bucket", le=bound) == count
        assert _level(second, llm_metrics.ITL + "_bucket", le=bound) == count + 1  # totals: only the new gap added
    assert _level(second, llm_metrics.ITL + "_count") == 5
    assert _level(second, llm_metrics.ITL + "_sum") == pytest.approx(100.3210011)
