"""What the engine's vLLM-named metrics cost on a GPU, outside and inside Triton.

    bash benchmarks/gpu/device.sh .carry OUT metrics_cost.py [--duration 15s]

1. Outside Triton: ``benchmarks/llm_metrics_cost.py``'s scheduler runs on random weights of the SmolLM2-135M
   shape (bf16, CUDA graphs), statistics collected or switched off, at concurrency 1, 8 and 64.
2. Inside Triton: two LLM-API models of that shape in one server, identical but for
   ``engine.parameters: {metrics: false}`` on one (no publisher thread, no call into Triton's metrics API),
   loaded in turn with ``tritonkit bench --stream`` (128 + 128 tokens) at concurrency 64, twice each;
   then the ``vllm:`` series on ``/metrics`` (the published model's only).
Everything lands as JSON in --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

SPEC = """\
llms:
  - name: published
    engine: {{kind: pytorch, model: {model}, device: cuda, dtype: bfloat16}}
    tokenizer: {model}
    max_batch_size: 64
    max_input_len: 512
    max_output_len: 256
  - name: unpublished
    engine: {{kind: pytorch, model: {model}, device: cuda, dtype: bfloat16, parameters: {{metrics: false}}}}
    tokenizer: {model}
    max_batch_size: 64
    max_input_len: 512
    max_output_len: 256
"""


def _find(tree: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in a JSON tree."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = _find(item, key)
            if found is not None:
                return found
    return None


def inside_triton(arch: Path, out: Path, duration: str) -> dict[str, Any]:
    from run_suite import make_random_model

    from tritonkit import Server, generate

    work = Path("/tmp/tritonkit-metrics-cost")
    work.mkdir(parents=True, exist_ok=True)
    make_random_model(arch, work / "weights")
    (work / "spec.yaml").write_text(SPEC.format(model="weights"))
    generate(work / "spec.yaml", work)
    runs: dict[str, list[dict[str, Any]]] = {"published": [], "unpublished": []}
    with Server(work / "model_repository", startup_timeout_s=400, exit_timeout_s=20) as server:
        for round_ in range(2):
            for name in ("unpublished", "published") if round_ % 2 == 0 else ("published", "unpublished"):
                saved = out / f"bench_{name}_{round_}.json"
                cmd = [sys.executable, "-m", "tritonkit", "bench", name, "--url", server.grpc_url, "--stream",
                       "--concurrency", "64", "--input-tokens", "128", "--output-tokens", "128",
                       "--tokenizer", str(work / "weights"), "--duration", duration, "--warmup", "3s",
                       "--save-json", str(saved)]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                print(name, done.stdout[-1500:], done.stderr[-1000:], flush=True)
                figures = json.loads(saved.read_text()) if saved.exists() else {}
                runs[name].append({"output_tokens_per_s": _find(figures, "output_tokens_per_s"),
                                   "itl_ms": _find(figures, "itl_ms"), "ttft_ms": _find(figures, "ttft_ms")})
        with urllib.request.urlopen(f"http://{server.metrics_url.split('/')[2]}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    series = [line for line in text.splitlines() if line.startswith("vllm:") and "_bucket" not in line]
    (out / "vllm_series.txt").write_text("\n".join(series))
    return {"runs": runs, "vllm_series": len(series),
            "unpublished_series": sum('model="unpublished"' in line for line in series)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, required=True)
    parser.add_argument("--duration", default="15s")
    parser.add_argument("--skip-engine", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import llm_metrics_cost

    report: dict[str, Any] = {"hooks": llm_metrics_cost.hooks()}
    if not args.skip_engine:
        report["engine"] = llm_metrics_cost.engine("cuda", str(args.arch), [1, 8, 64], 3)
    (args.out / "metrics_cost.json").write_text(json.dumps(report, indent=2))
    report["inside_triton"] = inside_triton(args.arch, args.out, args.duration)
    (args.out / "metrics_cost.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
