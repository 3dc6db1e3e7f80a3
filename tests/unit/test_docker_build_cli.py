"""``tritonkit build``: what it says where it cannot build (no TensorRT, no GPU, no repository)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tritonkit.cli import main
from tritonkit.write.generate import generate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["build", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _spec(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    shutil.copy(EXAMPLES / "models" / "tiny_classifier.onnx", tmp_path / "models")
    shutil.copy(EXAMPLES / "onnx_tensorrt.yaml", tmp_path / "spec.yaml")
    return tmp_path / "spec.yaml"


def test_a_spec_without_tensorrt_builds_has_nothing_to_build(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    code, out, err = run(capsys, str(EXAMPLES / "classic.yaml"), "-o", str(tmp_path))
    assert code == 0 and out == ""
    assert "nothing to build" in err


def test_without_a_generated_repository_it_says_to_generate_first(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    code, _, err = run(capsys, str(_spec(tmp_path)), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "no version folder for model 'classifier'" in err and "tritonkit generate" in err


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_it_says_what_is_missing_and_writes_nothing(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    generate(spec, tmp_path / "out")
    version = tmp_path / "out" / "model_repository" / "classifier" / "1"
    before = sorted(p.name for p in version.iterdir())
    code, out, err = run(capsys, str(spec), "-o", str(tmp_path / "out"), "--force")
    assert code == 1 and out == ""
    assert "the TensorRT Python package is not installed" in err
    assert "pip install 'tritonkit[tensorrt]'" in err
    if not Path("/dev/nvidiactl").exists():
        assert "no NVIDIA driver here" in err
    assert sorted(p.name for p in version.iterdir()) == before
