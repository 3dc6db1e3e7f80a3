"""``tritonkit validate SPEC``: the spec, its models and the repository they render to, checked in memory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tritonkit.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_good_spec_passes_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    code, _, err = run(capsys, "validate", str(tmp_path / "examples" / "classic.yaml"))
    assert code == 0 and "ok: 3 models, 0 errors" in err
    assert not (tmp_path / "examples" / "model_repository").exists()


def test_a_spec_error_is_reported_in_the_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("models:\n  - name: m\n    backend: pythn\n")
    code, out, _ = run(capsys, "validate", str(spec), "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    (error,) = data["errors"]
    assert (error["path"], error["line"], error["col"]) == (str(spec), 3, 14)
    assert error["hint"] == "did you mean 'python'?"


def test_a_rule_only_the_rendered_repository_breaks_is_found(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLES / "models", tmp_path / "models")
    text = (EXAMPLES / "classic.yaml").read_text()
    text = text.replace("output_map: {SUM: sum}", "output_map: {SUM: sum, DIFF: diff}")
    (tmp_path / "spec.yaml").write_text(text)
    code, out, _ = run(capsys, "validate", str(tmp_path / "spec.yaml"))
    assert code == 1
    assert "model_repository/add_then_scale/config.pbtxt:" in out and "ensemble tensor 'diff' is unused" in out
