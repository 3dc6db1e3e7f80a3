"""The CLI imports no optional extra until a command needs it (a GPU host may lack the gateway's web stack)."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_loads_without_the_gateway_stack_or_the_bench_extra() -> None:
    code = ("import sys; import tritonkit.cli; "
            "loaded = [m for m in ('starlette', 'uvicorn', 'httptools', 'tritonkit.gateway') if m in sys.modules]; "
            "print(loaded); sys.exit(1 if loaded else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
