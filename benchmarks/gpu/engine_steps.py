"""The PyTorch engine's decode speed on a GPU, outside and inside Triton, for the plan's engine profile.

    bash benchmarks/gpu/device.sh .carry OUT engine_steps.py [--quick]

1. Outside Triton: tritonkit's in-flight scheduler (python_backends/llm_scheduler.py) on random-weight
   models of the SmolLM2-135M and Llama-3-8B shapes in bf16, ``c`` requests of 128 prompt + 128 output
   tokens submitted together (EOS ignored), for c in 1, 8, 32, 64: output tokens/s and ms per step.
2. Inside Triton: the LLM-API model of the SmolLM2 shape, generated and served, loaded with
   ``tritonkit bench`` (streaming, 128 + 128 tokens) at concurrency 1, 32 and 64.
Everything lands as JSON in --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "python_backends"))

LLAMA_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False}


def _model(config: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    import llm_generate

    torch.manual_seed(0)
    with torch.device("cuda"):
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16,
                                                attn_implementation=llm_generate.attention_for(torch.device("cuda"))
                                                ).eval()


def engine_speed(model: Any, concurrency: int, prompt_len: int = 128, output_len: int = 128) -> dict[str, float]:
    """Tokens/s and ms/step of the scheduler with ``concurrency`` requests submitted together."""
    import llm_generate
    import llm_scheduler

    engine = llm_scheduler.Engine(model, 0, max_batch=max(concurrency, 1), num_blocks=concurrency * 32,
                                  block_tokens=16, prefill_chunk=512, max_queue=concurrency + 1)
    try:
        requests = [llm_scheduler.Request(llm_generate.Row(prompt=[(7 * i + j) % 1000 + 10 for j in range(prompt_len)],
                                                           max_new_tokens=output_len, end_ids=[]),
                                          lambda request, tokens: None) for i in range(concurrency)]
        start = time.perf_counter()
        for request in requests:
            engine.submit(request)
        for request in requests:
            request.done.wait(600)
        elapsed = time.perf_counter() - start
    finally:
        engine.stop()
    tokens = sum(len(r.row.tokens) for r in requests)
    return {"tokens_per_s": round(tokens / elapsed, 1), "ms_per_step": round(elapsed / output_len * 1000, 2)}


def baselines(model: Any, prompt_len: int = 128, output_len: int = 128) -> dict[str, float]:
    """Batch-1 ms per step of transformers' own ``generate`` and tritonkit's static-batch loop, same model."""
    import torch

    import llm_generate

    prompt = [(3 * j) % 1000 + 10 for j in range(prompt_len)]
    ids = torch.tensor([prompt], device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=output_len, min_new_tokens=output_len,
                   do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    hf = (time.perf_counter() - start) / output_len * 1000
    row = llm_generate.Row(prompt=prompt, max_new_tokens=output_len, end_ids=[])
    start = time.perf_counter()
    llm_generate.generate(model, [row], 0, lambda events: None)
    own = (time.perf_counter() - start) / output_len * 1000
    return {"hf_generate_ms_per_step": round(hf, 2), "static_loop_ms_per_step": round(own, 2)}


def profile_steps(model: Any, out: Path) -> None:
    """cProfile of the scheduler's thread over one batch-1 request (top functions by own time)."""
    import cProfile
    import io
    import pstats

    import llm_scheduler

    profiler = cProfile.Profile()
    original = llm_scheduler.Engine._loop

    def loop(self: Any) -> None:
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    llm_scheduler.Engine._loop = loop  # type: ignore[method-assign]
    try:
        engine_speed(model, 1, 128, 64)
    finally:
        llm_scheduler.Engine._loop = original  # type: ignore[method-assign]
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    (out / "scheduler_profile.txt").write_text(text.getvalue())
    print(text.getvalue()[:4000], flush=True)


def outside_triton(arch: Path, levels: list[int]) -> dict[str, Any]:
    """Scheduler speed for both shapes at each concurrency level."""
    import torch
    from transformers import AutoConfig, LlamaConfig

    results: dict[str, Any] = {}
    for name, config in (("smollm2-135m", AutoConfig.from_pretrained(arch)), ("llama-3-8b", LlamaConfig(**LLAMA_8B))):
        model = _model(config)
        engine_speed(model, 2, 32, 8)  # warm up the kernels
        results[name] = {str(c): engine_speed(model, c) for c in levels}
        results[name]["baselines"] = baselines(model)
        print(name, json.dumps(results[name]), flush=True)
        del model
        torch.cuda.empty_cache()
    return results


SPEC = """\
llms:
  - name: llm
    engine: {kind: pytorch, model: smollm2-random, device: cuda, dtype: bfloat16}
    tokenizer: smollm2-random
    max_batch_size: 64
    max_input_len: 1024
    max_output_len: 256
"""


def inside_triton(arch: Path, out: Path, levels: list[int], duration: str) -> dict[str, Any]:
    """``tritonkit bench`` against the generated LLM-API model of the SmolLM2 shape."""
    from run_suite import make_random_model

    from tritonkit import Server, generate

    work = Path("/tmp/tritonkit-engine-steps")
    work.mkdir(parents=True, exist_ok=True)
    make_random_model(arch, work / "smollm2-random")
    (work / "spec.yaml").write_text(SPEC)
    generate(work / "spec.yaml", work)
    with Server(work / "model_repository", startup_timeout_s=300, exit_timeout_s=20) as server:
        cmd = [sys.executable, "-m", "tritonkit", "bench", "llm", "--url", server.grpc_url, "--stream",
               "--concurrency", ",".join(str(c) for c in levels), "--input-tokens", "128", "--output-tokens", "128",
               "--tokenizer", str(work / "smollm2-random"), "--duration", duration, "--warmup", "3s",
               "--save-json", str(out / "triton_bench.json")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        print(done.stdout[-3000:], done.stderr[-2000:], flush=True)
    return json.loads((out / "triton_bench.json").read_text()) if (out / "triton_bench.json").exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-triton", action="store_true")
    parser.add_argument("--only-triton", action="store_true")
    parser.add_argument("--profile", action="store_true", help="only profile the scheduler at batch 1")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        from transformers import AutoConfig

        model = _model(AutoConfig.from_pretrained(args.arch))
        engine_speed(model, 1, 32, 8)
        print(json.dumps(baselines(model)), flush=True)
        profile_steps(model, args.out)
        return
    levels = [1, 8, 32, 64]
    report: dict[str, Any] = {} if args.only_triton else {"outside_triton": outside_triton(args.arch, levels)}
    (args.out / "engine_steps.json").write_text(json.dumps(report, indent=2))
    if not args.skip_triton:
        report["inside_triton"] = inside_triton(args.arch, args.out, [1, 32, 64], "8s" if args.quick else "15s")
    (args.out / "engine_steps.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report.get("outside_triton", {}), indent=2))


if __name__ == "__main__":
    main()
