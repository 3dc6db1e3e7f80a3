"""The root typer app, shared options, and the one place exceptions become output and exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from importlib import metadata as importlib_metadata
from typing import Annotated, Any, Callable

import typer
from rich.console import Console

from tritonkit.errors import TritonkitError

try:  # typer >= 0.20 vendors click; older releases use click itself
    from typer._click import exceptions as _click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    name="tritonkit",
    help="Spec to Triton model repository: generate, validate, serve, call, bench and plan.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _installed_version() -> str:
    try:
        return importlib_metadata.version("tritonkit")
    except importlib_metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from tritonkit import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tritonkit {_installed_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    """Spec to Triton model repository: generate, validate, serve, call, bench and plan."""


#: Status lines, progress and errors go to stderr; results go to stdout.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3


def report(error: TritonkitError) -> None:
    """Print every problem of an error in the compiler shape, one per line, on stderr."""
    for problem in error.problems:
        err_console.print(problem.format(), markup=False)


def handle_errors(run: Callable[[], Any]) -> int:
    """Run a click command in non-standalone mode and map every outcome to an exit code."""
    try:
        result = run()
    except TritonkitError as exc:
        report(exc)
        return int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except _click_exceptions.ClickException as exc:
        exc.show(file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception:
        if os.environ.get("TRITONKIT_DEBUG") == "1":
            traceback.print_exc()
        else:
            exc_type, exc_value, _ = sys.exc_info()
            err_console.print(f"internal error: {exc_type.__name__ if exc_type else 'Exception'}: {exc_value}",
                              markup=False)
        err_console.print("this is a bug in tritonkit, please report it "
                          "(set TRITONKIT_DEBUG=1 for the full traceback)")
        return EXIT_USER_ERROR
    return int(result) if isinstance(result, int) else EXIT_OK
