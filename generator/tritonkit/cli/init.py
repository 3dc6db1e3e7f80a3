"""``tritonkit init``: write a commented example spec (and the model files it uses) to start from."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from tritonkit.cli._app import app, err_console
from tritonkit.errors import Problem, WriteConflictError

#: What each template writes: the example spec, renamed, and the model files it points at.
_TEMPLATES = {
    "full": ("tritonkit.yaml", ("models/add_sub.py", "models/scale.py")),
    "classic": ("classic.yaml", ("models/add_sub.py", "models/scale.py")),
    "llm": ("llm.yaml", ()),
}


def _example_bytes(name: str) -> bytes:
    return resources.files("tritonkit.examples").joinpath(name).read_bytes()


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to write the spec into.")] = Path("."),
    template: Annotated[str, typer.Option("--template", help="full (LLM pipeline + classic models), "
                                          "classic, or llm.")] = "full",
) -> int:
    """Write an example spec, tritonkit.yaml, that the local server can load as it is.

    Existing files are never overwritten.
    """
    if template not in _TEMPLATES:
        raise typer.BadParameter(f"unknown template {template!r}; use one of {', '.join(_TEMPLATES)}",
                                 param_hint="--template")
    spec_name, extra = _TEMPLATES[template]
    planned = {"tritonkit.yaml": _example_bytes(spec_name)}
    planned.update({name: _example_bytes(name) for name in extra})
    existing = [name for name in planned if (directory / name).exists()]
    if existing:
        raise WriteConflictError([Problem("already exists; init never overwrites files", path=str(directory / n),
                                          hint="choose another folder, or move the file away") for n in existing])
    for name, data in planned.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        err_console.print(f"  create {target}", highlight=False)
    err_console.print(f"next: tritonkit generate {directory / 'tritonkit.yaml'} (writes "
                      f"{directory / 'model_repository'}), then tritonkit serve {directory / 'model_repository'}",
                      highlight=False)
    return 0
