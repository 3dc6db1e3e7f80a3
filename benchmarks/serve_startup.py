"""Time-to-ready of ``tritonkit serve`` against the bare ``tritonserver`` with the same repository and flags.

Three ways of starting, each ``--runs`` times, in rotating order so load on the machine hits all alike:

- ``bare``: ``tritonserver`` launched directly with the exact command line and environment ``Server`` built,
  polled on ``/v2/health/ready`` every 50 ms;
- ``api``: ``tritonkit.Server(repo).start()`` (checks, stub numpy probe, launch, readiness wait);
- ``cli``: ``tritonkit serve REPO --http-port 0 ...`` as a new process, until it prints its endpoints
  (adds interpreter start-up and imports).

Usage: python benchmarks/serve_startup.py [REPO] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tritonkit.runtime import Server
from tritonkit.runtime.locate import prepare_environment
from tritonkit.runtime.process import free_ports

DEFAULT_REPO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "repos" / "basic"
CLI = [sys.executable, "-c", "import sys; from tritonkit.cli import main; sys.exit(main())"]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def time_bare(repo: Path) -> float:
    """Start the bare server with Server's command line (fresh ports and backend dir), time until ready."""
    probe = Server(repo)
    with tempfile.TemporaryDirectory(prefix="bare-") as workspace:
        environment = prepare_environment(probe.installation, Path(workspace))
        http, grpc, metrics = free_ports(3)
        command = [str(probe.installation.binary), f"--model-repository={repo.resolve()}", f"--http-port={http}",
                   f"--grpc-port={grpc}", f"--metrics-port={metrics}", "--model-control-mode=none",
                   "--log-verbose=0", "--exit-timeout-secs=30", "--exit-on-error=true", *environment.args]
        started = time.perf_counter()
        process = subprocess.Popen(command, env={**os.environ, **environment.env}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        while not _ready(http):
            if process.poll() is not None:
                raise RuntimeError(f"bare tritonserver exited with {process.returncode}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        _stop(process)
    return elapsed


def time_api(repo: Path) -> float:
    """``Server(repo).start()`` until it returns (ready)."""
    started = time.perf_counter()
    server = Server(repo).start()
    elapsed = time.perf_counter() - started
    server.stop()
    return elapsed


def time_cli(repo: Path) -> float:
    """``tritonkit serve`` in a new process until its three endpoint lines are printed."""
    started = time.perf_counter()
    process = subprocess.Popen([*CLI, "serve", str(repo), "--http-port", "0", "--grpc-port", "0",
                                "--metrics-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    elapsed = time.perf_counter() - started
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    if not all(lines):
        raise RuntimeError("tritonkit serve printed no endpoints")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", type=Path, default=DEFAULT_REPO)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"bare": [], "api": [], "cli": []}
    timers = {"bare": time_bare, "api": time_api, "cli": time_cli}
    order = list(timers)
    for run in range(args.runs):
        for name in order[run % 3:] + order[:run % 3]:  # rotate, so no kind always follows another
            samples[name].append(timers[name](args.repo))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    result = {"repo": str(args.repo), "runs": args.runs, "median_s": medians, "samples_s": samples,
              "ratio_api_to_bare": medians["api"] / medians["bare"],
              "ratio_cli_to_bare": medians["cli"] / medians["bare"]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name in timers:
            print(f"{name:5s} median {medians[name]:.2f} s  ({', '.join(f'{v:.2f}' for v in samples[name])})")
        print(f"serve/bare: api {result['ratio_api_to_bare']:.2f}x, cli {result['ratio_cli_to_bare']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
