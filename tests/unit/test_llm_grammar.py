"""Grammar-constrained decoding (python_backends/llm_grammar.py) with SmolLM2's real tokenizer and llguidance.

The "model" is a seeded random generator of logits, nudged towards the tokens that close strings, arrays and
objects so that its answers end; whatever it prefers, the masks must keep every answer inside the grammar,
which ``jsonschema`` (or ``re.fullmatch``) then checks.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any, Optional

import jsonschema
import pytest
import torch

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common
import llm_grammar

#: The model's embedding is wider than the tokenizer's vocabulary: those logits must be refused.
PADDING = 64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

_OBJ = {"type": "object"}
SCHEMAS: list[dict[str, Any]] = [
    {**_OBJ, "properties": {"name": {"type": "string"}}, "required": ["name"]},
    {**_OBJ, "properties": {"age": {"type": "integer", "minimum": 18, "maximum": 65}}, "required": ["age"]},
    {**_OBJ, "properties": {"x": {"type": "number", "minimum": -2.5, "maximum": 3}}, "required": ["x"]},
    {**_OBJ, "properties": {"x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}}, "required": ["x"]},
    {**_OBJ, "properties": {"n": {"type": "integer", "multipleOf": 5}}, "required": ["n"]},
    {**_OBJ, "properties": {"ok": {"type": "boolean"}, "none": {"type": "null"}}, "required": ["ok", "none"]},
    {**_OBJ, "properties": {"colour": {"enum": ["red", "green", "blue"]}}, "required": ["colour"]},
    {**_OBJ, "properties": {"v": {"enum": [1, "two", None, True]}}, "required": ["v"]},
    {**_OBJ, "properties": {"v": {"const": "fixed"}}, "required": ["v"]},
    {**_OBJ, "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}}, "required": ["code"]},
    {**_OBJ, "properties": {"s": {"type": "string", "minLength": 4, "maxLength": 8}}, "required": ["s"]},
    {**_OBJ, "properties": {"day": {"type": "string", "format": "date"}}, "required": ["day"]},
    {**_OBJ, "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4}},
     "required": ["tags"]},
    {**_OBJ, "properties": {"ints": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 3}},
     "required": ["ints"]},
    {**_OBJ, "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                                     "items": False, "minItems": 2}}, "required": ["pair"]},
    {**_OBJ, "properties": {"grid": {"type": "array", "minItems": 1, "maxItems": 2,
                                     "items": {"type": "array", "items": {"type": "boolean"}, "minItems": 2,
                                               "maxItems": 2}}}, "required": ["grid"]},
    {**_OBJ, "properties": {"user": {**_OBJ, "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
                                     "required": ["id", "email"], "additionalProperties": False}},
     "required": ["user"], "additionalProperties": False},
    {**_OBJ, "properties": {"a": {**_OBJ, "properties": {"b": {**_OBJ, "properties": {"c": {"type": "integer"}},
                                                              "required": ["c"]}}, "required": ["b"]}},
     "required": ["a"]},
    {**_OBJ, "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
        **_OBJ, "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
        "required": ["sku", "qty"], "additionalProperties": False}}}, "required": ["items"]},
    {**_OBJ, "properties": {"req": {"type": "string"}, "opt": {"type": "integer"}}, "required": ["req"],
     "additionalProperties": False},
    {**_OBJ, "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}},
     "additionalProperties": False},
    {**_OBJ, "properties": {"v": {"anyOf": [{"type": "integer", "minimum": 100}, {"type": "string", "maxLength": 3}]}},
     "required": ["v"]},
    {**_OBJ, "properties": {"v": {"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "null"}}]}},
     "required": ["v"]},
    {**_OBJ, "properties": {"v": {"allOf": [{"type": "integer", "minimum": 3}, {"maximum": 7}]}}, "required": ["v"]},
    {**_OBJ, "properties": {"v": {"type": ["string", "null"]}}, "required": ["v"]},
    {**_OBJ, "$defs": {"point": {**_OBJ, "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                                 "required": ["x", "y"], "additionalProperties": False}},
     "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}}, "required": ["from", "to"]},
    {**_OBJ, "additionalProperties": {"type": "integer"}, "minProperties": 1, "maxProperties": 3},
    {**_OBJ, "patternProperties": {"^x_[a-z]+$": {"type": "boolean"}}, "additionalProperties": False,
     "minProperties": 1},
    {**_OBJ, "properties": {"kind": {"enum": ["circle"]}, "radius": {"type": "number", "minimum": 0}},
     "required": ["kind", "radius"], "additionalProperties": False},
    {**_OBJ, "properties": {"title": {"type": "string", "maxLength": 20}, "year": {"type": "integer", "minimum": 1900,
                                                                                     "maximum": 2100},
                            "genres": {"type": "array", "items": {"enum": ["drama", "comedy"]}, "maxItems": 2},
                            "rating": {"type": "number", "minimum": 0, "maximum": 10}},
     "required": ["title", "year", "genres", "rating"], "additionalProperties": False},
    {**_OBJ, "properties": {"empty": {**_OBJ, "additionalProperties": False}}, "required": ["empty"]},
    {**_OBJ, "properties": {"list": {"type": "array", "maxItems": 0}}, "required": ["list"]},
    {**_OBJ, "properties": {"text": {"type": "string", "pattern": "^(yes|no)$"}, "score": {"type": "integer",
                                                                                         "minimum": -3,
                                                                                         "maximum": -1}},
     "required": ["text", "score"]},
    {**_OBJ, "properties": {"meta": {**_OBJ, "properties": {"tags": {"type": "array", "items": {
        "type": "string", "minLength": 1, "maxLength": 5}, "minItems": 1}}, "required": ["tags"]},
                            "id": {"type": "string", "pattern": "^[a-f0-9]{8}$"}}, "required": ["meta", "id"]},
]
#: Bounded, so that a random "model" that never prefers to stop still ends.
REGEXES = [r"[A-Z]{3}-[0-9]{2,4}", r"(yes|no|maybe)", r"\d{4}-\d{2}-\d{2}", r"[a-z]{1,8}@[a-z]{1,8}\.(com|org)",
           r"-?(0|[1-9][0-9]{0,5})\.[0-9]{2}", r"(ab|cd){1,5}!"]


@pytest.fixture(scope="module")
def compiler(tokenizer: Any) -> llm_grammar.GrammarCompiler:
    return llm_grammar.GrammarCompiler(tokenizer)


@pytest.fixture(scope="module")
def masks() -> llm_grammar.Masks:
    return llm_grammar.Masks()


@pytest.fixture(scope="module")
def nudge(tokenizer: Any, compiler: llm_grammar.GrammarCompiler) -> torch.Tensor:
    """Added to the random logits: the tokens that close strings, arrays and objects, so answers end."""
    bias = torch.zeros(compiler.vocab_size + PADDING)
    for piece, token in tokenizer.get_vocab().items():
        if any(c in piece for c in '"}],'):
            bias[token] = 3.0
    bias[compiler.vocab_size:] = 50.0  # the padding would win every step if a mask let it through
    return bias


def _walk(masks: llm_grammar.Masks, matchers: Sequence[Optional[llm_grammar.Matcher]], nudge: torch.Tensor,
          seed: int, end_ids: Sequence[int], device: str = "cpu", max_tokens: int = 300) -> list[list[int]]:
    """Greedy answers of the random "model" for a batch of rows through the masks (None rows: unconstrained)."""
    generator = torch.Generator().manual_seed(seed)
    answers: list[list[int]] = [[] for _ in matchers]
    live = [m is not None for m in matchers]
    for _ in range(max_tokens):
        if not any(live):
            return answers
        logits = (torch.randn((len(matchers), nudge.shape[0]), generator=generator) + nudge).to(device)
        masks.apply(logits, [m if on else None for m, on in zip(matchers, live)])
        picked = torch.argmax(logits, dim=-1).tolist()
        for row, (matcher, token) in enumerate(zip(matchers, picked)):
            if not live[row] or matcher is None:
                continue
            assert matcher.advance(token), matcher.error
            if token in end_ids:
                live[row] = False
            else:
                answers[row].append(token)
    raise AssertionError(f"{sum(live)} answers did not end within {max_tokens} tokens")


def _text(tokenizer: Any, ids: list[int]) -> str:
    return llm_common.decode_text(tokenizer, ids)


def _assert_compact(text: str) -> None:
    """Outside its strings, the JSON has json.dumps's separators and no other whitespace."""
    outside = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    assert not re.search(r"\s", outside.replace(", ", ",").replace(": ", ":")), text


# -- answers keep to their grammar ------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_every_answer_validates_against_its_json_schema(tokenizer: Any, compiler: llm_grammar.GrammarCompiler,
                                                        masks: llm_grammar.Masks, nudge: torch.Tensor,
                                                        device: str) -> None:
    assert len(SCHEMAS) >= 30
    grammars = [compiler.compile("json_schema", json.dumps(schema)) for schema in SCHEMAS]
    for seed in range(2):
        # One batch: every schema's row, and an unconstrained row between each two that the masks leave alone.
        matchers: list[Optional[llm_grammar.Matcher]] = []
        for grammar in grammars:
            matchers += [grammar.matcher(), None]
        answers = _walk(masks, matchers, nudge, seed, compiler.end_ids, device)
        for schema, ids in zip(SCHEMAS, answers[::2]):
            text = _text(tokenizer, ids)
            jsonschema.validate(json.loads(text), schema, format_checker=jsonschema.FormatChecker())
            _assert_compact(text)


def test_json_object_answers_are_objects(tokenizer: Any, compiler: llm_grammar.GrammarCompiler,
                                         masks: llm_grammar.Masks, nudge: torch.Tensor) -> None:
    grammar = compiler.compile("json_object")
    answers = _walk(masks, [grammar.matcher() for _ in range(6)], nudge, 7, compiler.end_ids)
    for ids in answers:
        assert isinstance(json.loads(_text(tokenizer, ids)), dict)
        _assert_compact(_text(tokenizer, ids))


def test_regex_answers_match_the_whole_pattern(tokenizer: Any, compiler: llm_grammar.GrammarCompiler,
                                               masks: llm_grammar.Masks, nudge: torch.Tensor) -> None:
    for seed in range(3):
        matchers = [compiler.compile("regex", r).matcher() for r in REGEXES]
        for pattern, ids in zip(REGEXES, _walk(masks, matchers, nudge, seed, compiler.end_ids)):
            assert re.fullmatch(pattern, _text(tokenizer, ids)), (pattern, _text(tokenizer, ids))


@pytest.mark.parametrize(("grammar", "language"), [
    # EBNF as TensorRT-LLM's GuidedDecodingParams.grammar takes it (xgrammar's and llama.cpp's GBNF).
    ('root ::= answer " " unit\nanswer ::= [1-9] [0-9]?\nunit ::= "cm" | "mm"', r"[1-9][0-9]? (cm|mm)"),
    ('root ::= "(" item ("," item)* ")"\nitem ::= [a-c]+', r"\([a-c]+(,[a-c]+)*\)"),
    # llguidance's own Lark syntax.
    ('start: "say " WORD\nWORD: /[a-z]{2,5}/', r"say [a-z]{2,5}"),
])
def test_grammar_answers_stay_in_the_language(tokenizer: Any, compiler: llm_grammar.GrammarCompiler,
                                              masks: llm_grammar.Masks, nudge: torch.Tensor, grammar: str,
                                              language: str) -> None:
    compiled = compiler.compile("grammar", grammar)
    for seed in range(3):
        (ids,) = _walk(masks, [compiled.matcher()], nudge, seed, compiler.end_ids)
        assert re.fullmatch(language, _text(tokenizer, ids))


# -- the end of an answer ---------------------------------------------------------------------------------


def _allowed(masks: llm_grammar.Masks, matcher: llm_grammar.Matcher, width: int) -> list[int]:
    logits = torch.zeros((1, width))
    masks.apply(logits, [matcher])
    return torch.nonzero(torch.isfinite(logits[0])).flatten().tolist()


def test_a_finished_answer_allows_only_its_end_ids(tokenizer: Any, compiler: llm_grammar.GrammarCompiler,
                                                   masks: llm_grammar.Masks) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in compiler.end_ids
    matcher = compiler.compile("json_object").matcher()
    for token in tokenizer.encode('{"a": [1, 2]', add_special_tokens=False):
        assert matcher.advance(token)
    assert not matcher.complete and not matcher.must_end
    assert im_end not in _allowed(masks, matcher, compiler.vocab_size + PADDING)
    assert matcher.advance(tokenizer.convert_tokens_to_ids("}"))
    assert matcher.complete and matcher.must_end
    assert _allowed(masks, matcher, compiler.vocab_size + PADDING) == sorted(compiler.end_ids)
    assert matcher.advance(im_end) and matcher.error == ""


def test_a_request_with_its_own_end_id_may_end_with_it(tokenizer: Any, compiler: llm_grammar.GrammarCompiler,
                                                       masks: llm_grammar.Masks) -> None:
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert end_of_text not in compiler.end_ids
    matcher = compiler.compile("regex", "ok").matcher(end_ids=[*compiler.end_ids, end_of_text])
    assert matcher.advance(tokenizer.encode("ok", add_special_tokens=False)[0])
    assert _allowed(masks, matcher, compiler.vocab_size) == sorted([*compiler.end_ids, end_of_text])
    assert matcher.advance(end_of_text)
    # A request that ends on its own id only: the tokenizer's end id is not allowed in its place.
    matcher = compiler.compile("regex", "ok").matcher(end_ids=[end_of_text])
    assert matcher.advance(tokenizer.encode("ok", add_special_tokens=False)[0])
    assert _allowed(masks, matcher, compiler.vocab_size) == [end_of_text]
    # A tokenizer with two end ids (a chat model's turn end and its EOS): either ends the answer.
    both = llm_grammar.GrammarCompiler(tokenizer, end_ids=[end_of_text, *compiler.end_ids])
    for end in both.end_ids:
        matcher = both.compile("regex", "ok").matcher()
        assert matcher.advance(tokenizer.encode("ok", add_special_tokens=False)[0]) and matcher.must_end
        assert _allowed(masks, matcher, both.vocab_size) == sorted(both.end_ids)
        assert matcher.advance(end) and matcher.error == ""


def test_an_end_id_before_the_grammar_is_complete_is_refused(tokenizer: Any,
                                                             compiler: llm_grammar.GrammarCompiler) -> None:
    matcher = compiler.compile("json_object").matcher()
    assert matcher.advance(tokenizer.convert_tokens_to_ids("{"))
    assert not matcher.advance(compiler.end_ids[0])
    assert "ended before the grammar was complete" in matcher.error


def test_a_refused_token_fails_its_row_only(tokenizer: Any, compiler: llm_grammar.GrammarCompiler,
                                            masks: llm_grammar.Masks, nudge: torch.Tensor) -> None:
    grammar = compiler.compile("json_schema", json.dumps(SCHEMAS[1]))
    broken, healthy = grammar.matcher(), grammar.matcher()
    assert not broken.advance(tokenizer.encode("hello", add_special_tokens=False)[0])
    assert "hello" in broken.error and broken.must_end
    before = torch.randn((3, compiler.vocab_size))
    logits = before.clone()
    masks.apply(logits, [broken, None, healthy])  # the broken row is masked to its end ids; no exception
    assert torch.equal(logits[1], before[1])
    assert torch.isfinite(logits[2]).sum() > 0
    (ids,) = _walk(masks, [healthy], nudge, 3, compiler.end_ids)
    jsonschema.validate(json.loads(_text(tokenizer, ids)), SCHEMAS[1])


def test_masks_take_one_row_and_check_the_batch(compiler: llm_grammar.GrammarCompiler,
                                                masks: llm_grammar.Masks) -> None:
    matcher = compiler.compile("regex", "[0-9]").matcher()
    row = torch.zeros(compiler.vocab_size + PADDING)
    masks.apply(row, [matcher])
    assert int(torch.isfinite(row).sum()) == 10  # the ten digits
    with pytest.raises(ValueError, match="2 rows of logits but 1 matchers"):
        masks.apply(torch.zeros((2, compiler.vocab_size)), [matcher])
    untouched = torch.randn((2, 8))
    masks.apply(untouched, [None, None])  # nothing constrained: nothing read, nothing changed


# -- compiling: the request path, the cache, and errors a client can act on --------------------------------


def test_compiled_constraints_are_cached_by_their_text(compiler: llm_grammar.GrammarCompiler) -> None:
    schema = json.dumps(SCHEMAS[0])
    assert compiler.compile("json_schema", schema) is compiler.compile("json_schema", schema)
    assert compiler.compile("json_schema", schema) is not compiler.compile("json_schema", schema + " ")
    assert compiler.compile("json_object") is compiler.compile("json_object", "ignored")


def test_small_cache_drops_the_least_recently_used(tokenizer: Any) -> None:
    small = llm_grammar.GrammarCompiler(tokenizer, cache_size=2)
    first = small.compile("regex", "a")
    small.compile("regex", "b")
    assert small.compile("regex", "a") is first  # used again: now the most recent
    small.compile("regex", "c")  # drops "b"
    assert small.compile("regex", "a") is first


def test_request_threads_compile_and_take_matchers_at_once(tokenizer: Any,
                                                           compiler: llm_grammar.GrammarCompiler) -> None:
    failures: list[BaseException] = []

    def request(index: int) -> None:
        try:
            schema = json.dumps(SCHEMAS[index % 4])
            matcher = compiler.compile("json_schema", schema).matcher()
            assert matcher.advance(tokenizer.convert_tokens_to_ids("{"))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("json_schema", json.dumps({**_OBJ, "properties": {"a": {"type": "array", "uniqueItems": True}}}),
     'Unimplemented keys: ["uniqueItems"]; remove them from the schema'),
    ("json_schema", json.dumps({**_OBJ, "properties": {"a": {"not": {"type": "string"}}}}), '["not"]'),
    ("json_schema", '{"type": "object", "properties": {', "json_schema is not valid JSON: Expecting property name "
                                                         "enclosed in double quotes: line 1 column 35"),
    ("json_schema", '["not", "an", "object"]', "json_schema must be a JSON object (got list)"),
    ("json_schema", json.dumps({**_OBJ, "properties": {"a": {"type": "strin"}}}), "Invalid type: strin"),
    ("json_schema", json.dumps({**_OBJ, "properties": {"a": {"$ref": "#/$defs/gone"}}}), "/$defs/gone"),
    ("json_schema", json.dumps({**_OBJ, "properties": {"a": {"type": "string", "pattern": "a(b"}}}),
     "invalid regex 'a(b' at character 2: unclosed group"),
    ("json_schema", json.dumps({**_OBJ, "properties": {"a": {"type": "string", "minLength": 5, "maxLength": 2}},
                                "required": ["a"]}), "unsatisfiable"),
    ("regex", "[a-", "regex cannot be used for constrained decoding: invalid regex '[a-' at character 1: "
                     "unclosed character class"),
    ("regex", "ab[0-9]{3,1}", "at character 8: invalid repetition count range"),
    ("grammar", 'root ::= "a" | (b', "Expected ')' at line 1"),
    ("grammar", 'root ::= item\n', "Rule 'item' not found"),
    ("grammar", 'start: "a" | b\nb: "x" c', 'line 2, column 4: unknown name: "c"'),
    ("regex", "  ", "regex is empty"),
    ("xml", "<a/>", "unknown constraint kind 'xml'; use one of json_object, json_schema, regex, grammar"),
])
def test_a_constraint_that_cannot_compile_is_a_request_error(compiler: llm_grammar.GrammarCompiler, kind: str,
                                                             text: str, message: str) -> None:
    with pytest.raises(llm_common.RequestError) as caught:
        compiler.compile(kind, text)
    assert caught.value.code == llm_common.INVALID_ARGUMENT
    assert message in str(caught.value)
    with pytest.raises(llm_common.RequestError):  # a failure is not cached as a success
        compiler.compile(kind, text)
