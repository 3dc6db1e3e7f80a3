"""Every command's options: one meaning per name, ``--version``, and help texts that print what they say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from importlib import metadata
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import pytest
import typer

from tritonkit.cli import app, main

CLI = [sys.executable, "-c", "import sys; from tritonkit.cli import main; sys.exit(main())"]


def _without_none(hint: Any) -> Any:
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if get_origin(hint) is Union and len(args) == 1 else hint


def _options() -> dict[str, list[tuple[str, Any]]]:
    """Each long option name -> (command, the value's type) for every command that has it.

    Read from the commands' signatures, which typer turns into the options.
    """
    found: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for info in app.registered_commands:
        assert info.callback is not None
        command = info.name or info.callback.__name__
        for name, hint in get_type_hints(info.callback, include_extras=True).items():
            if get_origin(hint) is not Annotated:
                continue
            base, *extras = get_args(hint)
            option = next((e for e in extras if isinstance(e, typer.models.OptionInfo)), None)
            if option is None:
                continue
            # In Annotated form typer takes a first positional string, kept as ``default``, as a name too.
            names = [option.default, *(option.param_decls or ())]
            declared = [d for d in names if isinstance(d, str) and d.startswith("--")] or \
                ["--" + name.replace("_", "-")]
            for flag in (part for decl in declared for part in decl.split("/")):
                found[flag].append((command, _without_none(base)))
    return found


#: Names whose value types differ on purpose while the meaning is one: bench sweeps a comma-separated
#: list of what plan and tune take one of (``--concurrency 16``, ``--request-rate 50`` mean the same to all).
_SWEPT = {"--concurrency", "--request-rate"}


def test_an_option_name_means_one_thing_in_every_command() -> None:
    for flag, uses in _options().items():
        kinds = {command: kind for command, kind in uses}
        if flag in _SWEPT:
            continue
        assert len(set(kinds.values())) == 1, f"{flag} differs between commands: {kinds}"


def test_the_names_the_issue_found_ambiguous() -> None:
    options = _options()
    assert {c for c, _ in options["--json"]} >= {"bench", "infer", "plan", "validate"}
    assert all(kind is bool for _, kind in options["--json"])
    assert {c for c, _ in options["--timeout"]} == {"bench", "chat", "infer", "openai"}  # seconds per response
    assert {c for c, _ in options["--gpus"]} == {"serve"} and options["--gpus"][0][1] is str
    assert [c for c, _ in options["--gpu-count"]] == ["validate"]
    assert [c for c, _ in options["--ready-timeout"]] == ["serve"]
    assert {c for c, _ in options["--output"]} == {"generate", "build"}  # a folder in both
    assert {f for f in options if f.startswith("--save-")} == {"--save-json", "--save-csv", "--save-plot"}


@pytest.mark.parametrize(("argv", "message"), [
    (["validate", ".", "--gpus", "2"], "No such option: --gpus"),
    (["serve", ".", "--timeout", "5"], "No such option: --timeout"),
    (["bench", "m", "--json", "out.json"], "unexpected extra argument"),
])
def test_old_meanings_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"tritonkit {metadata.version('tritonkit')}\n"


def _help(command: str) -> str:
    done = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "100"}, check=False)
    assert done.returncode == 0, done.stderr
    return " ".join(re.sub("[│╭╮╰╯─]", " ", done.stdout).split())


def test_build_help_keeps_the_extra_name() -> None:
    assert "pip install 'tritonkit[tensorrt]'" in _help("build")


def test_chat_and_infer_help_name_real_models() -> None:
    chat = _help("chat")
    assert "smollm2" in chat and "'chat'" not in chat
    assert "add_sub" in _help("infer")
