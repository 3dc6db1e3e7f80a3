"""The GPU suite (docs/benchmarks.md): generated repositories with KIND_GPU instance groups, measured.

Run on a GPU host where tritonkit, the nvidia-pytriton server and numpy<2 are installed:

    python benchmarks/gpu/run_suite.py --out results/ [--quick] [--gpus 0,1]

1. Generates a spec: ``matmul`` (batched torch matmul, dynamic batching) and ``matmul_nobatch`` (the same
   model, no dynamic batching), both ``kind: gpu, count: 2``; and an LLM pipeline whose PyTorch engine
   has ``kind: gpu, count: 2``, on a SmolLM2-135M-architecture model with random weights (the tokenizer
   and config travel; the weights are made here).
2. Serves it with ``tritonkit.Server``; records ``nvidia-smi`` compute processes and the server log
   lines that say where each instance runs.
3. ``tritonkit bench``: matmul vs matmul_nobatch over concurrency 1..128; the LLM BLS streaming at
   concurrency 1, 8, 32. JSON, CSV and PNG per run into --out.
4. ``tritonkit plan`` for the same architecture on this GPU, next to the measured tokens/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SPEC = """\
triton: {{version: "25.10"}}
models:
  - name: matmul
    backend: python
    artifact: matmul.py
    max_batch_size: 128
    input: [{{name: X, data_type: FP32, dims: [1024]}}]
    output: [{{name: Y, data_type: FP32, dims: [1024]}}]
    dynamic_batching: {{max_queue_delay_microseconds: 200}}
    instance_group: [{{{group}}}]
  - name: matmul_nobatch
    backend: python
    artifact: matmul.py
    max_batch_size: 128
    input: [{{name: X, data_type: FP32, dims: [1024]}}]
    output: [{{name: Y, data_type: FP32, dims: [1024]}}]
    instance_group: [{{{group}}}]
llms:
  - name: llm
    layout: ensemble
    engine: {{kind: pytorch, model: smollm2-random, device: {device}, dtype: {dtype}}}
    tokenizer: smollm2-random
    max_batch_size: 32
    max_input_len: 1024
    max_output_len: 256
    streaming: true
    instance_group: [{{{group}}}]
    instances: {{preprocessing: 2, postprocessing: 2, bls: 2}}
"""


def run(cmd: list[str], log: Path, timeout_s: int = 900) -> int:
    """Run a command, teeing its output into ``log``."""
    print("+", " ".join(cmd), flush=True)
    with log.open("a") as handle:
        handle.write("+ " + " ".join(cmd) + "\n")
        handle.flush()
        done = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout_s)
    print(f"  -> exit {done.returncode}", flush=True)
    return done.returncode


def make_random_model(arch: Path, target: Path) -> None:
    """A model of the given architecture with random weights (bf16), saved with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(arch)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    for item in arch.iterdir():
        if item.name != "config.json":
            shutil.copy(item, target / item.name)


def nvidia_smi(log: Path) -> str:
    """The compute processes on the GPUs, as nvidia-smi lists them."""
    done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory,gpu_uuid",
                           "--format=csv"], capture_output=True, text=True)
    gpus = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv"],
                          capture_output=True, text=True)
    text = gpus.stdout + "\n" + done.stdout
    log.write_text(text)
    return text


def bench(args: list[str], out: Path, name: str, log: Path) -> None:
    """Run ``tritonkit bench`` with JSON, CSV and PNG outputs named after ``name``."""
    cmd = [sys.executable, "-m", "tritonkit", "bench", *args, "--save-json", str(out / f"{name}.json"),
           "--save-csv", str(out / f"{name}.csv"), "--save-plot", str(out / f"{name}.png")]
    run(cmd, log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", type=Path, default=HERE / "smollm2-arch",
                        help="folder with config.json + tokenizer of the LLM architecture")
    parser.add_argument("--gpus", default="0", help="GPU ids for the instance groups, e.g. 0 or 0,1")
    parser.add_argument("--quick", action="store_true", help="shorter windows (smoke test)")
    parser.add_argument("--cpu", action="store_true", help="CPU instances instead (a smoke test without a GPU)")
    args = parser.parse_args()
    from tritonkit import Server, generate

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "suite.log"
    work = Path("/tmp/tritonkit-gpu-suite")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(HERE / "matmul.py", work / "matmul.py")
    make_random_model(args.arch, work / "smollm2-random")
    group = "kind: cpu, count: 2" if args.cpu else f"kind: gpu, count: 2, gpus: [{args.gpus}]"
    device, dtype = ("cpu", "float32") if args.cpu else ("cuda", "bfloat16")
    (work / "spec.yaml").write_text(SPEC.format(group=group, device=device, dtype=dtype))
    generate(work / "spec.yaml", work)
    started = time.perf_counter()
    with Server(work / "model_repository", startup_timeout_s=300, exit_timeout_s=20) as server:
        ready_s = time.perf_counter() - started
        smi = "" if args.cpu else nvidia_smi(out / "nvidia-smi.csv")
        placement = [line for line in server.log_lines() if "instance" in line.lower() and
                     ("cuda" in line.lower() or "gpu" in line.lower())]
        (out / "placement.log").write_text("\n".join(placement) + "\n")
        print(f"ready in {ready_s:.1f} s\n{smi}", flush=True)
        window = ["--duration", "4s", "--warmup", "1s"] if args.quick else ["--duration", "8s", "--warmup", "2s"]
        levels = "1,8,64" if args.quick else "1,2,4,8,16,32,64,128"
        for model in ("matmul", "matmul_nobatch"):
            bench([model, "--url", server.grpc_url, "--concurrency", levels, *window], out, model, log)
        llm_window = ["--duration", "8s", "--warmup", "3s"] if args.quick else ["--duration", "20s", "--warmup", "5s"]
        bench(["llm_bls", "--url", server.grpc_url, "--stream", "--concurrency", "1,8,32",
               "--input-tokens", "128", "--output-tokens", "128", "--tokenizer", str(work / "smollm2-random"),
               *llm_window], out, "llm_stream", log)
        (out / "server-log-tail.txt").write_text("\n".join(server.log_lines()[-200:]) + "\n")
    gpu_name = "cpu" if args.cpu else subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                                      capture_output=True, text=True).stdout.splitlines()[0]
    catalog = "H200-141GB" if "H200" in gpu_name else "H100-80GB"
    for concurrency in (1, 8, 32):
        done = subprocess.run([sys.executable, "-m", "tritonkit", "plan", "--model", str(args.arch / "config.json"),
                               "--gpu", catalog, "--dtype", "bf16", "--concurrency", str(concurrency),
                               "--input-tokens", "128", "--output-tokens", "128", "--json"],
                              capture_output=True, text=True, timeout=300)
        (out / f"plan_c{concurrency}.json").write_text(done.stdout or done.stderr)
    (out / "meta.json").write_text(json.dumps({"gpu": gpu_name, "ready_s": ready_s, "gpus": args.gpus}))


if __name__ == "__main__":
    main()
