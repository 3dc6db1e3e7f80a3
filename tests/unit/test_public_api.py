"""The public API is what ``__all__`` says, and every name in it resolves (httpx's test_exported_members)."""

from __future__ import annotations

import subprocess
import sys

import tritonkit


def test_every_exported_name_resolves() -> None:
    for name in tritonkit.__all__:
        assert getattr(tritonkit, name) is not None, name


def test_public_names_do_not_start_with_underscore_except_version() -> None:
    assert all(not n.startswith("_") or n == "__version__" for n in tritonkit.__all__)


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "tritonkit", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "generate" in done.stdout
