"""``tritonkit validate --target dynamo-triton`` and a spec's ``triton.target``: exit codes and what is printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonkit.cli import main

CONFIG = ('name: "m"\nbackend: "python"\nmax_batch_size: 4\n'
          'input [ { name: "IN" data_type: TYPE_FP16 dims: [ 4 ] } ]\n'
          'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')
SPEC = """\
triton: {{version: "26.09"{target}}}
models:
  - name: m
    backend: python
    artifact: m.py
    max_batch_size: 4
    input: [{{name: IN, data_type: FP16, dims: [4]}}]
    output: [{{name: OUT, data_type: FP32, dims: [4]}}]
"""
MODEL_PY = "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def make_repo(root: Path) -> Path:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.py").write_text(MODEL_PY)
    (root / "m" / "config.pbtxt").write_text(CONFIG)
    return root


def test_dynamo_target_warns_and_still_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    assert main(["validate", str(repo), "--target", "dynamo-triton"]) == 0
    out, err = capsys.readouterr()
    assert "repo/m/config.pbtxt:4:22: warning: input 'IN' (FP16): through Dynamo's front door requests to this " \
           "model fail; Dynamo: \"Requests with half-precision input/output tensors are rejected" in out
    assert "repo: note: served through Dynamo's front door" in out
    assert "ok: 1 model, 0 errors" in err


def test_the_default_target_is_triton(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    assert main(["validate", str(repo)]) == 0
    assert "Dynamo" not in capsys.readouterr().out


def test_an_unknown_target_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(make_repo(tmp_path / "repo")), "--target", "dynamo"]) == 2
    assert "'dynamo' is not one of 'triton', 'dynamo-triton'" in capsys.readouterr().err


def test_a_spec_names_its_target_and_the_flag_overrides_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.py").write_text(MODEL_PY)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(target=", target: dynamo-triton"))
    assert main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "spec.yaml:7:" in out and "half-precision" in out  # located at the spec key that wrote the input
    assert main(["validate", str(spec), "--target", "triton"]) == 0
    assert "Dynamo" not in capsys.readouterr().out
    spec.write_text(SPEC.format(target=""))
    assert main(["validate", str(spec), "--target", "dynamo-triton"]) == 0
    assert "half-precision" in capsys.readouterr().out


def test_a_spec_target_outside_the_two_is_a_spec_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.py").write_text(MODEL_PY)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(target=", target: dynamo"))
    assert main(["validate", str(spec)]) == 1
    assert "spec.yaml:1:" in capsys.readouterr().out
