"""What applications ask of the engine besides text: log probabilities, logit bias, n sequences, seeds.

On the real SmolLM2 model and tokenizer, through the in-flight scheduler, outside Triton.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module", params=["dynamic", "slots"])
def engine(model: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    import llm_scheduler

    extra = {"max_len": 512, "cuda_graphs": False} if request.param == "slots" else {}
    running = llm_scheduler.Engine(model, 2, max_batch=4, num_blocks=200, block_tokens=16, **extra)
    yield running
    running.stop()


def _prompt(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True)
    return list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)


def _run(engine: Any, tokenizer: Any, rows: list[Any]) -> list[Any]:
    import llm_scheduler

    requests = [llm_scheduler.Request(row, lambda request, tokens: None) for row in rows]
    for request in requests:
        engine.submit(request)
    for request in requests:
        assert request.done.wait(120)
        assert request.error is None
    return [r.row for r in requests]


def _row(tokenizer: Any, text: str, **settings: Any) -> Any:
    import llm_generate

    return llm_generate.Row(prompt=_prompt(tokenizer, text), max_new_tokens=settings.pop("max_new", 8),
                            end_ids=llm_common.end_ids(tokenizer), **settings)


def test_top_logprobs_rank_the_model_distribution_and_hold_the_greedy_choice(engine: Any, tokenizer: Any) -> None:
    (row,) = _run(engine, tokenizer, [_row(tokenizer, "What is the capital of France?", top_logprobs=5)])
    assert len(row.token_logprobs) >= len(row.tokens) and len(row.top) == len(row.token_logprobs)
    for token, logprob, top in zip(row.tokens, row.token_logprobs, row.top):
        assert len(top) == 5
        assert top[0][0] == token  # greedy: the chosen token is the most likely one
        assert math.isclose(top[0][1], logprob, abs_tol=1e-5)
        values = [lp for _, lp in top]
        assert values == sorted(values, reverse=True) and all(lp <= 0 for lp in values)
        assert sum(math.exp(lp) for lp in values) <= 1.0 + 1e-5
    assert math.isclose(row.cum_logprob, sum(row.token_logprobs), abs_tol=1e-4)


def test_logit_bias_forces_and_bans_tokens(engine: Any, tokenizer: Any) -> None:
    plain, = _run(engine, tokenizer, [_row(tokenizer, "What is the capital of France?")])
    first = plain.tokens[0]
    forced = tokenizer.encode(" banana", add_special_tokens=False)[0]
    banned, pushed = _run(engine, tokenizer, [_row(tokenizer, "What is the capital of France?",
                                                   logit_bias={first: -100.0}),
                                              _row(tokenizer, "What is the capital of France?", max_new=3,
                                                   logit_bias={forced: 100.0})])
    assert banned.tokens[0] != first and first not in banned.tokens
    assert pushed.tokens == [forced] * 3


def test_identical_prompts_prefilled_together_answer_as_each_does_alone(engine: Any, tokenizer: Any) -> None:
    alone, = _run(engine, tokenizer, [_row(tokenizer, "Name three colours.", max_new=10)])
    rows = _run(engine, tokenizer, [_row(tokenizer, "Name three colours.", max_new=10) for _ in range(3)])
    assert [r.tokens for r in rows] == [alone.tokens] * 3


def test_a_seed_repeats_its_samples_and_another_seed_differs(engine: Any, tokenizer: Any) -> None:
    settings = {"temperature": 1.5, "max_new": 12}
    first, again, other = _run(engine, tokenizer, [_row(tokenizer, "Tell me a story.", seed=7, **settings),
                                                   _row(tokenizer, "Tell me a story.", seed=7, **settings),
                                                   _row(tokenizer, "Tell me a story.", seed=8, **settings)])
    assert first.tokens == again.tokens
    assert first.tokens != other.tokens


def test_token_texts_put_back_together_give_the_decoded_text(tokenizer: Any) -> None:
    texts = llm_common.TokenTexts(tokenizer)
    assert texts.byte_level
    for sample in ["Paris is the capital of France.", "naïve café — 東京 🙂", "line one\n\tline two"]:
        ids = tokenizer.encode(sample, add_special_tokens=False)
        joined = b"".join(bytes(texts.of(i)[1]) for i in ids)
        assert joined.decode("utf-8") == sample
        entry = texts.entry(ids[0], -0.5)
        assert entry == {"token": texts.of(ids[0])[0], "logprob": -0.5, "bytes": texts.of(ids[0])[1]}


def test_grammar_rows_answer_json_that_validates_beside_free_rows(engine: Any, tokenizer: Any) -> None:
    import json

    import jsonschema

    import llm_grammar

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                               "rank": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["city", "rank"], "additionalProperties": False}
    grammar = llm_grammar.GrammarCompiler(tokenizer).compile("json_schema", json.dumps(schema))
    ends = llm_common.end_ids(tokenizer)
    rows = [_row(tokenizer, "Name a city as JSON.", max_new=40, temperature=0.9, seed=s, grammar=grammar.matcher(ends))
            for s in range(3)]
    rows.append(_row(tokenizer, "What is the capital of France?", max_new=8))  # unconstrained, same batch
    *constrained, free = _run(engine, tokenizer, rows)
    for row in constrained:
        assert row.finish_reason == "stop"
        jsonschema.validate(json.loads(tokenizer.decode(row.tokens, skip_special_tokens=True)), schema)
    assert "Paris" in tokenizer.decode(free.tokens)
