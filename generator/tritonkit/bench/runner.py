"""One bench run end to end: read the model, build its requests, sweep the load levels."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

from tritonkit.bench.client import BenchClient, open_client
from tritonkit.bench.load import INTERRUPTED, LoadClient, ProgressCallback, run_level
from tritonkit.bench.openai import OpenAIBenchClient, openai_bodies
from tritonkit.bench.options import BenchError, BenchOptions
from tritonkit.bench.payload import ModelInfo, Payload, generate_payloads, load_payloads
from tritonkit.bench.prompts import (
    TokenCounter,
    llm_payloads,
    load_tokenizer,
    read_prompts,
    synthetic_prompts,
)
from tritonkit.bench.summary import LevelResult, few_samples_note, summarize_level
from tritonkit.errors import Problem

__all__ = ["BenchResult", "LevelProgress", "run_bench"]

#: Given a level's label, returns the callback that reports that level's progress (or None).
LevelProgress = Callable[[str], Optional[ProgressCallback]]


@dataclass(frozen=True)
class BenchResult:
    """A whole sweep: what was measured, how, and every level's figures."""

    model: str
    protocol: str
    url: str
    mode: str
    stream: bool
    kind: str
    notes: tuple[str, ...]
    levels: list[LevelResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form printed by ``--json`` and written by ``--save-json``."""
        return {"model": self.model, "protocol": self.protocol, "url": self.url, "mode": self.mode,
                "stream": self.stream, "kind": self.kind, "notes": list(self.notes),
                "levels": [level.to_dict() for level in self.levels]}


def level_label(options: BenchOptions, level: float) -> str:
    """Return ``concurrency 8`` or ``rate 50/s``."""
    if options.mode == "rate":
        return f"rate {level:g}/s"
    return f"concurrency {int(level)}"


def _llm_requests(options: BenchOptions, model: ModelInfo) -> tuple[list[Payload], TokenCounter, str]:
    tokenizer = load_tokenizer(options.tokenizer) if options.tokenizer else None
    if options.prompts is not None:
        prompts = read_prompts(options.prompts)
    else:
        prompts = synthetic_prompts(options.input_tokens, 32, tokenizer)
    counter = TokenCounter(tokenizer)
    token_note = ("output tokens counted with the tokenizer" if counter.exact else
                  "output tokens counted as streamed responses with text" if options.stream else
                  "output tokens approximated as words; pass --tokenizer for exact counts")
    note = f"{prompts.note}; {token_note}; max_tokens {options.output_tokens}"
    return llm_payloads(model, prompts, options.output_tokens, options.stream), counter, note


def _prepare(client: BenchClient, options: BenchOptions, model: ModelInfo) -> tuple[str, str]:
    if model.decoupled and not options.stream:
        raise BenchError(Problem(f"model {model.name} is decoupled: it answers over a stream",
                                 path=options.url, model=model.name, hint="add --stream"))
    if options.stream and not model.decoupled:
        raise BenchError(Problem(f"--stream needs a decoupled model; {model.name} answers once per request",
                                 path=options.url, model=model.name,
                                 hint="drop --stream, or bench a decoupled model (an llms: entry with "
                                      f"streaming on; with layout: ensemble, {model.name}_bls)"))
    if model.is_llm:
        payloads, counter, note = _llm_requests(options, model)
        client.prepare(payloads, counter.count)
        return "llm", note
    if options.input_data is not None:
        client.prepare(load_payloads(model, options.input_data))
        return "classic", f"inputs from {options.input_data.name}"
    client.prepare(generate_payloads(model, seed=options.seed))
    return "classic", "random inputs generated from the model's metadata"


def _prompts(options: BenchOptions) -> tuple[tuple[str, ...], TokenCounter, str]:
    tokenizer = load_tokenizer(options.tokenizer) if options.tokenizer else None
    prompts = read_prompts(options.prompts) if options.prompts is not None else synthetic_prompts(
        options.input_tokens, 32, tokenizer)
    return prompts.texts, TokenCounter(tokenizer), prompts.note


async def _open_openai(options: BenchOptions) -> tuple[OpenAIBenchClient, str]:
    texts, counter, prompt_note = _prompts(options)
    client = OpenAIBenchClient(options, counter.count if counter.exact else None)
    try:
        await client.check_model()
    except BaseException:
        await client.close()
        raise
    client.prepare(openai_bodies(options, texts))
    tokens = ("output tokens counted with the tokenizer" if counter.exact else
              "output tokens from the server's usage (pass --tokenizer to count them as AIPerf does)")
    figures = "TTFT and ITL as AIPerf defines them" if options.stream else "no TTFT/ITL without --stream"
    return client, (f"{prompt_note}; {tokens}; max_tokens {options.output_tokens}; "
                    f"{options.endpoint} endpoint; {figures}")


async def _open(options: BenchOptions) -> tuple[LoadClient, Any, str, str]:
    """(the load client, the object to close, the kind of model, the note) for Triton or an OpenAI server."""
    if options.openai_url is not None:
        openai_client, note = await _open_openai(options)
        return openai_client, openai_client, "llm", note
    client = open_client(options)
    try:
        model = await client.model_info()
        kind, note = _prepare(client, options, model)
    except BaseException:
        await client.close()
        raise
    return client, client, kind, note


async def _sweep(options: BenchOptions, progress: Optional[LevelProgress]) -> BenchResult:
    client, closing, kind, note = await _open(options)
    try:
        protocol = "openai" if options.openai_url else options.protocol
        result = BenchResult(options.model, protocol, options.openai_url or options.url, options.mode,
                             options.stream, kind, (note,))
        for level in options.levels:
            callback = progress(level_label(options, level)) if progress is not None else None
            run = await run_level(client, options, level, callback)
            result.levels.append(summarize_level(run, options.mode))
        thin = few_samples_note([(level_label(options, level.level), level) for level in result.levels])
        return replace(result, notes=(*result.notes, thin)) if thin else result
    finally:
        await closing.close()


def run_bench(options: BenchOptions, progress: Optional[LevelProgress] = None) -> BenchResult:
    """Run the whole sweep on a fresh event loop and return its figures.

    Raises:
        BenchError: the model cannot be read or benchmarked as asked.

    """
    INTERRUPTED.clear()
    with _ctrl_c_ends_the_load():
        return asyncio.run(_sweep(options, progress))


@contextmanager
def _ctrl_c_ends_the_load() -> Iterator[None]:
    """Ctrl-C ends the sweep at once: KeyboardInterrupt out of the event loop, and no load sends another request.

    Left to ``asyncio.run``, Ctrl-C cancels the sweep's task, and a request in flight over gRPC may take that
    cancellation as its own (its call ends CANCELLED, counted as one failed request): the load then ran on to
    its end, and ``tune`` on to its next candidate.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        INTERRUPTED.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
