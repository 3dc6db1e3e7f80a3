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
import shutil
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


def _engine(kind: str, model: Any, concurrency: int, max_len: int) -> Any:
    """A scheduler of ``kind``: ``dynamic`` (llm_scheduler.Engine), ``slots`` (CUDA graphs) or ``slots-eager``."""
    import llm_scheduler

    common = {"max_batch": max(concurrency, 1), "num_blocks": max(concurrency, 1) * (max_len // 16 + 1),
              "block_tokens": 16, "prefill_chunk": 512, "max_queue": concurrency + 1}
    if kind == "dynamic":
        return llm_scheduler.Engine(model, 0, **common)
    return llm_scheduler.Engine(model, 0, max_len=max_len, cuda_graphs=kind == "slots", **common)


def engine_speed(model: Any, concurrency: int, prompt_len: int = 128, output_len: int = 128,
                 kind: str = "slots") -> dict[str, Any]:
    """Tokens/s and ms/step of the scheduler with ``concurrency`` requests submitted together."""
    import llm_generate
    import llm_scheduler

    engine = _engine(kind, model, concurrency, prompt_len + output_len)
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
    return {"tokens_per_s": round(tokens / elapsed, 1), "ms_per_step": round(elapsed / output_len * 1000, 2),
            "errors": [r.error for r in requests if r.error], "tokens": [r.row.tokens for r in requests]}


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
    """Both schedulers side by side for both shapes at each concurrency level, and whether they agree.

    Greedy tokens of the CUDA-graph steps must equal those of the same slots run eagerly (same
    kernels); against the dynamic engine (transformers' eager attention) bf16 rounding may differ.
    """
    import torch
    from transformers import AutoConfig, LlamaConfig

    results: dict[str, Any] = {}
    for name, config in (("smollm2-135m", AutoConfig.from_pretrained(arch)), ("llama-3-8b", LlamaConfig(**LLAMA_8B))):
        model = _model(config)
        row: dict[str, Any] = {}
        for kind in ("slots", "dynamic"):
            engine_speed(model, 2, 32, 8, kind)  # warm up the kernels
            for c in levels:
                measured = engine_speed(model, c, kind=kind)
                row.setdefault(str(c), {})[kind] = {k: v for k, v in measured.items() if k != "tokens"}
                row[str(c)][kind + "_tokens"] = measured["tokens"]
        for c in levels:
            cell = row[str(c)]
            cell["ratio"] = round(cell["slots"]["tokens_per_s"] / cell["dynamic"]["tokens_per_s"], 2)
            cell["greedy_rows_equal_dynamic"] = sum(a == b for a, b in zip(cell.pop("slots_tokens"),
                                                                           cell.pop("dynamic_tokens")))
        graphed = engine_speed(model, 8, kind="slots")["tokens"]
        eager = engine_speed(model, 8, kind="slots-eager")["tokens"]
        row["graph_vs_eager_rows_equal_of_8"] = sum(a == b for a, b in zip(graphed, eager))
        row["baselines"] = baselines(model)
        results[name] = row
        print(name, json.dumps(row), flush=True)
        del model
        torch.cuda.empty_cache()
    return results


SPEC = """\
llms:
  - name: llm
    engine: {{kind: pytorch, model: {model}, device: cuda, dtype: bfloat16}}
    tokenizer: {model}
    max_batch_size: 64
    max_input_len: 1024
    max_output_len: 256
"""


def make_8b_model(arch: Path, target: Path) -> None:
    """Random bf16 weights of the Llama-3-8B shape with SmolLM2's tokenizer and vocabulary (49,152 rows).

    The vocabulary must be the tokenizer's, or bench's token counts (the text re-encoded) miss every id
    past it; the output layer is then 0.4 of 16 GB smaller than Llama-3-8B's.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    small = AutoConfig.from_pretrained(arch)
    config = LlamaConfig(**{**LLAMA_8B, "vocab_size": small.vocab_size, "bos_token_id": small.bos_token_id,
                            "eos_token_id": small.eos_token_id})
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    del model
    torch.cuda.empty_cache()
    for item in arch.iterdir():
        if item.name != "config.json":
            shutil.copy(item, target / item.name)


def inside_triton(arch: Path, out: Path, levels: list[int], duration: str,
                  shapes: tuple[str, ...] = ("smollm2-135m", "llama-3-8b")) -> dict[str, Any]:
    """``tritonkit bench`` against the generated LLM-API model, SmolLM2 and Llama-3-8B shapes."""
    from run_suite import make_random_model

    from tritonkit import Server, generate

    results: dict[str, Any] = {}
    for name, make in (("smollm2-135m", make_random_model), ("llama-3-8b", make_8b_model)):
        if name not in shapes:
            continue
        work = Path(f"/tmp/tritonkit-engine-steps/{name}")
        work.mkdir(parents=True, exist_ok=True)
        make(arch, work / "weights")
        (work / "spec.yaml").write_text(SPEC.format(model="weights"))
        generate(work / "spec.yaml", work)
        saved = out / f"triton_bench_{name}.json"
        with Server(work / "model_repository", startup_timeout_s=400, exit_timeout_s=20) as server:
            cmd = [sys.executable, "-m", "tritonkit", "bench", "llm", "--url", server.grpc_url, "--stream",
                   "--concurrency", ",".join(str(c) for c in levels), "--input-tokens", "128",
                   "--output-tokens", "128", "--tokenizer", str(work / "weights"), "--duration", duration,
                   "--warmup", "3s", "--save-json", str(saved)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            print(name, done.stdout[-3000:], done.stderr[-2000:], flush=True)
            print("\n".join(line for line in server.log_lines() if "tritonkit engine" in line), flush=True)
        results[name] = json.loads(saved.read_text()) if saved.exists() else {}
        shutil.rmtree(work / "weights", ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-triton", action="store_true")
    parser.add_argument("--only-triton", action="store_true")
    parser.add_argument("--profile", action="store_true", help="only profile the scheduler at batch 1")
    parser.add_argument("--shapes", default="smollm2-135m,llama-3-8b", help="inside Triton: which shapes")
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
    if args.skip_triton:
        (args.out / "engine_steps.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report.get("outside_triton", {}), indent=2))
        return
    (args.out / "engine_steps.json").write_text(json.dumps(report, indent=2))
    report["inside_triton"] = inside_triton(args.arch, args.out, [1, 32, 64], "8s" if args.quick else "15s",
                                            tuple(args.shapes.split(",")))
    (args.out / "engine_steps.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report.get("outside_triton", {}), indent=2))


if __name__ == "__main__":
    main()
