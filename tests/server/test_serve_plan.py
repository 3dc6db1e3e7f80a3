"""What ``serve`` decides before start: which models the local server can run, and numpy for the stub."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tritonkit.runtime.locate import find_tritonserver, stub_numpy_version
from tritonkit.runtime.repository import scan_repository, unsupported_models


def test_backends_come_from_configs_and_files(repo_builder, tmp_path: Path) -> None:
    repo = repo_builder(tmp_path / "repo", "basic", onnx=True)
    (repo / "bare" / "1").mkdir(parents=True)
    (repo / "bare" / "1" / "model.plan").write_bytes(b"")
    backends = {m.name: m.backend for m in scan_repository(repo)}
    assert backends == {"add_sub": "python", "add_sub_twice": "ensemble", "bare": "tensorrt",
                        "onnx_model": "onnxruntime", "sleeper": "python", "streamer": "python"}


def test_an_ensemble_over_an_unsupported_step_is_unsupported(repo_builder, tmp_path: Path) -> None:
    repo = repo_builder(tmp_path / "repo", "basic", models=["add_sub_twice"])
    repo_builder(tmp_path / "repo", onnx=True)
    config = repo / "add_sub_twice" / "config.pbtxt"
    config.write_text(config.read_text().replace('model_name: "add_sub"', 'model_name: "onnx_model"'))
    reasons = unsupported_models(scan_repository(repo), frozenset({"python"}))
    assert reasons == {"onnx_model": "backend 'onnxruntime' is not in this tritonserver",
                       "add_sub_twice": "ensemble step 'onnx_model' cannot run here"}


def test_the_stub_sees_numpy_1_of_this_environment() -> None:
    version = stub_numpy_version({"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]})
    assert version is not None and version.startswith("1.")


def test_numpy_2_where_the_stub_would_look_is_seen() -> None:
    base = Path(getattr(sys, "_base_executable", sys.executable)).parent
    version = stub_numpy_version({"PATH": str(base)})
    if version is None or not version.startswith("2."):
        pytest.skip(f"the base interpreter has no numpy 2 (has {version})")
    assert int(version.split(".")[0]) >= 2


def test_find_tritonserver_rejects_a_missing_explicit_binary(tmp_path: Path) -> None:
    from tritonkit.errors import ServerError

    with pytest.raises(ServerError) as caught:
        find_tritonserver(str(tmp_path / "nope"))
    assert caught.value.first.path == str(tmp_path / "nope")
    assert "not an executable file" in caught.value.first.message


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("1", "1 error")])
def test_server_tests_skip_without_a_binary_but_fail_in_ci(tmp_path: Path, ci: str, outcome: str) -> None:
    import subprocess

    tests_dir = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITONSERVER": str(tmp_path / "no-such-tritonserver"), "CI": ci}
    if not ci:
        env.pop("CI")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         f"{tests_dir / 'server' / 'test_serve.py'}::test_serves_every_model_ready_with_metrics"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tests_dir.parent)
    assert outcome in result.stdout, result.stdout
    assert "no tritonserver binary" in result.stdout
    assert (result.returncode != 0) == bool(ci)
    if ci:
        assert "CI is set, so server tests must not be skipped" in result.stdout
