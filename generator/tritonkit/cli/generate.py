"""``tritonkit generate``: render a spec into a versioned model repository, writing only what changed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from tritonkit.cli._app import app, err_console

if TYPE_CHECKING:
    from tritonkit.write.plan import WritePlan

_STYLES = {"create": "green", "update": "yellow", "remove": "red", "same": "dim",
           "conflict": "bold red", "modified": "bold red"}


def _print_plan(plan: WritePlan, *, quiet: bool) -> None:
    for action in plan.actions:
        if quiet and action.status == "same":
            continue
        style = _STYLES.get(action.status, "")
        reason = f"  ({action.reason})" if action.reason else ""
        err_console.print(f"[{style}]{action.status:>8}[/] {action.path}{reason}", highlight=False)


@app.command()
def generate(
    spec: Annotated[Path, typer.Argument(help="The spec file (YAML).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Folder that receives model_repository/ (and docker/). Default: the spec "
                               "file's own folder, wherever the command is run from.",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 3 if the repository differs from the spec "
                                        "(for CI); write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite generated files that were edited by "
                                        "hand. Files tritonkit did not write are never touched.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not list unchanged files.")] = False,
) -> int:
    """Render SPEC into a versioned Triton model repository: SPEC's folder/model_repository/ unless -o says.

    Each path gets one status on stderr: create, same, update or remove. A model whose config or
    files change gets the next version folder; earlier ones stay as its version policy says. A
    repository made from another spec is never overwritten: give each spec its own -o folder.
    """
    from tritonkit.write.generate import generate as run_generate  # heavy: protobuf, pydantic

    result = run_generate(spec, output, dry_run=dry_run, check=check, force=force)
    _print_plan(result.plan, quiet=quiet or check)
    if result.plan.conflicts and not (dry_run or check):
        return 1
    if check:
        err_console.print("up to date")
    elif dry_run:
        err_console.print(f"dry run: {len(result.plan.changes)} change(s) planned, nothing written")
    return 0
