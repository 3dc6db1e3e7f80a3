"""A newcomer's first hour: the README's main command from a fresh clone, venv and HOME, on a busy machine.

```
python benchmarks/first_start.py [--busy 2] [--keep]
```

Clones this checkout's HEAD into a temporary folder, then runs the command that follows
``<!-- main-command -->`` in its README (taken from the README, as CI takes the test command) with a new,
empty ``HOME`` (so every cache, pip's and tritonkit's, starts empty) and ``--busy`` processes that spin on
the CPU the whole time (2 by default: both cores of this project's machines; 0 for an idle machine). It
times the install (until ``generate`` runs), ``generate``, and ``serve`` until READY, prints the load steps
``serve`` showed, then asks ``tritonkit chat smollm2 "What is the capital of France?"`` from the same venv
(the README's next step) and stops ``serve`` with Ctrl-C. Prints one JSON report; exits 1 if any step failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _spin() -> None:
    while True:
        pass


def readme_command(readme: Path, marker: str = "<!-- main-command -->") -> str:
    """The shell command in the ```sh block right after ``marker``."""
    text = readme.read_text(encoding="utf-8")
    found = re.search(re.escape(marker) + r"\s*```sh\n(?P<command>.*?)\n```", text, re.S)
    if found is None:
        raise SystemExit(f"no command after {marker} in {readme}")
    return found.group("command").strip()


def _read(stream: Any, lines: list[tuple[float, str]], started: float) -> None:
    for line in iter(stream.readline, ""):
        lines.append((time.monotonic() - started, line.rstrip("\n")))


def _first(lines: list[tuple[float, str]], pattern: str) -> float | None:
    return next((at for at, line in list(lines) if re.search(pattern, line)), None)


def run(busy: int, keep: bool) -> dict[str, Any]:
    """Clone, run the main command until READY, chat, Ctrl-C; the timings and what was seen."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for spinner in spinners:
        spinner.start()
    work = Path(tempfile.mkdtemp(prefix="tritonkit-first-start-"))
    report: dict[str, Any] = {"busy_processes": busy}
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "tritonkit")], check=True)
        clone, home = work / "tritonkit", work / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "XDG_CACHE_HOME", "TRITONKIT_CACHE_DIR",
                                                                 "PIP_CACHE_DIR", "PYTHONPATH")}
        env.update(HOME=str(home), PATH=env.get("PATH", os.defpath))
        command = readme_command(clone / "README.md")
        report["command"] = command
        started = time.monotonic()
        serve = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines: list[tuple[float, str]] = []
        reader = threading.Thread(target=_read, args=(serve.stdout, lines, started), daemon=True)
        reader.start()
        while serve.poll() is None and _first(lines, r"Ctrl-C stops it") is None and time.monotonic() - started < 3600:
            time.sleep(1)
        report["load_average_at_ready"] = os.getloadavg()
        report["install_s"] = _first(lines, r"^\s*create ")
        report["generate_done_s"] = _first(lines, r"starting tritonserver")
        report["ready_s"] = _first(lines, r"Ctrl-C stops it")
        report["serve_steps"] = [f"{at:6.1f} s  {line}" for at, line in lines
                                 if re.search(r"^\S+: .*\(\d+ s\)$", line)]
        if report["ready_s"] is None:
            report["error"] = "serve never became ready: " + " | ".join(line for _, line in lines[-15:])
            return report
        chat = subprocess.run(["bash", "-c", '. .venv/bin/activate && tritonkit chat smollm2 '
                               '"What is the capital of France?"'], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=600)
        report["chat_answer"] = chat.stdout.strip()
        report["chat_ok"] = chat.returncode == 0 and "Paris" in chat.stdout
        os.killpg(serve.pid, signal.SIGINT)
        report["serve_exit_code"] = serve.wait(timeout=120)
        return report
    finally:
        for spinner in spinners:
            spinner.terminate()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            report["kept"] = str(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--busy", type=int, default=2, help="processes spinning on the CPU meanwhile (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the clone, venv and HOME")
    args = parser.parse_args()
    report = run(args.busy, args.keep)
    print(json.dumps(report, indent=1))
    ok = report.get("chat_ok") and report.get("serve_exit_code") == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
