"""The ``tritonkit`` command: a thin root app that mounts one module per command."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Optional

import typer

from tritonkit.cli._app import app, handle_errors

__all__ = ["app", "main"]

# Each command lives in its own module and registers itself on ``app`` when imported.
_COMMAND_MODULES = (
    "init",
    "generate",
    "validate",
    "serve",
    "infer",
    "chat",
    "bench",
    "openai",
    "plan",
    "build",
    "tune",
)

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"tritonkit.cli.{_name}")
    except ModuleNotFoundError as _exc:  # a command not written yet is simply absent
        if _exc.name != f"tritonkit.cli.{_name}":
            raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 user error, 2 usage error, 3 drift)."""
    command = typer.main.get_command(app)
    return handle_errors(lambda: command.main(args=list(argv) if argv is not None else None,
                                              prog_name="tritonkit", standalone_mode=False))
