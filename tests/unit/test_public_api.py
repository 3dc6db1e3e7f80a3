"""The public API is what ``__all__`` says, and every name in it resolves (httpx's test_exported_members)."""

from __future__ import annotations

import subprocess
import sys
import types

import tritonkit


def _public_names() -> list[str]:
    """What the package offers: names it defines or re-exports from its own modules, the lazy ones, the version."""
    eager = [name for name, value in vars(tritonkit).items()
             if not name.startswith("_") and not isinstance(value, types.ModuleType)
             and str(getattr(value, "__module__", "")).startswith("tritonkit")]
    return sorted({*eager, *tritonkit._LAZY, "__version__"})


def test_all_is_every_public_name_sorted() -> None:
    """A name the package offers but ``__all__`` leaves out (or one ``__all__`` invents) fails here."""
    assert tritonkit.__all__ == _public_names()


def test_every_exported_name_resolves() -> None:
    for name in tritonkit.__all__:
        assert getattr(tritonkit, name) is not None, name


def test_public_names_do_not_start_with_underscore_except_version() -> None:
    assert all(not n.startswith("_") or n == "__version__" for n in tritonkit.__all__)


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "tritonkit", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "generate" in done.stdout
