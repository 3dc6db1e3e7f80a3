"""``tritonkit validate``: exit codes, the FILE:LINE:COL output, --json, --gpu-count."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonkit.cli import main

CORPUS = Path(__file__).parents[1] / "corpus"
MODEL_PY = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def make_repo(root: Path, config: str) -> Path:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.py").write_text(MODEL_PY)
    (root / "m" / "config.pbtxt").write_text(config)
    return root


def test_a_good_repository_exits_0_with_a_summary_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CORPUS / "good" / "ensemble_two_steps")]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "ensemble_two_steps: ok: 3 models, 0 errors, 0 warnings" in err


def test_errors_exit_1_one_line_each_in_compiler_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo", 'name: "x"\nbackend: "python"\nmax_batch_size: -4\n')
    assert main(["validate", str(repo)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "repo/m/config.pbtxt:1:1: unexpected directory name 'm' for model 'x', directory name must equal "
        "model name; set name: \"m\", or rename the folder to 'x'",
        "repo/m/config.pbtxt:3:1: 'max_batch_size' must be non-negative value for m (got -4); use 0 for a "
        "model without a batch dimension, or the largest batch it takes",
    ]
    assert "invalid: 1 model, 2 errors, 0 warnings" in err


def test_warnings_alone_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CORPUS / "warn" / "count_zero")]) == 0
    out, _ = capsys.readouterr()
    assert ": warning: instance group m_0 of model m has count 0" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json", str(CORPUS / "bad" / "parse_placeholder")]) == 1
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert data["ok"] is False and data["warnings"] == []
    (error,) = data["errors"]
    assert set(error) == {"path", "line", "col", "model", "message", "hint", "field"}
    assert (error["path"], error["line"], error["col"], error["model"]) == \
        ("parse_placeholder/m/config.pbtxt", 2, 17, "m")


def test_json_of_a_good_repository(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json", str(CORPUS / "good" / "python_simple")]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "errors": [], "warnings": [], "notes": []}


def test_gpu_count_flag_checks_gpu_ids(capsys: pytest.CaptureFixture[str]) -> None:
    repo = str(CORPUS / "bad" / "gpu_id_beyond_host")
    assert main(["validate", repo, "--gpu-count", "4"]) == 0
    assert main(["validate", repo, "--gpu-count", "2"]) == 1
    assert "invalid or unsupported gpu id 2" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert main(["validate", str(tmp_path), "--gpu-count", "-1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_file_is_read_as_a_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["validate", str(tmp_path / "file")]) == 1
    assert "the spec must be a YAML mapping at the top level" in capsys.readouterr().out


def test_console_script_in_a_subprocess() -> None:
    script = Path(sys.executable).parent / "tritonkit"
    done = subprocess.run([str(script), "validate", "--json", str(CORPUS / "bad" / "ensemble_cycle")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    messages = [e["message"] for e in json.loads(done.stdout)["errors"]]
    assert any("'loop_b' is unused" in m for m in messages)


def test_a_project_folder_gets_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(CORPUS / "good" / "python_simple", tmp_path / "model_repository")
    (tmp_path / "tritonkit.yaml").write_text("models: []\n")
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: is a project folder that holds model_repository/" in err
    assert f"did you mean {tmp_path / 'model_repository'}?" in err
    assert main(["validate", str(tmp_path / "model_repository")]) == 0


def test_an_empty_repository_is_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{tmp_path}: warning: no model found" in err and "tritonkit generate SPEC" in err
