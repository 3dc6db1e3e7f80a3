"""Golden tests of docker/: each case under tests/golden/docker/ holds a spec and the expected files.

Set TRITONKIT_UPDATE_GOLDEN=1 to rewrite the expected files, then read the diff before committing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tritonkit.model import build_repository
from tritonkit.model.deploy import build_deployment
from tritonkit.render.docker import render_docker
from tritonkit.spec.load import load_spec

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "docker"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "spec.yaml").is_file())


def _rendered(case: Path) -> dict[str, bytes]:
    loaded = load_spec(case / "spec.yaml", display_path="spec.yaml")
    tree = render_docker(build_deployment(loaded, build_repository(loaded).units))
    return {path: data if isinstance(data, bytes) else data.read() for path, data in tree.items()}


def _expected(case: Path) -> dict[str, bytes]:
    root = case / "expected"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rewrite(case: Path, rendered: dict[str, bytes]) -> None:
    shutil.rmtree(case / "expected", ignore_errors=True)
    for path, data in rendered.items():
        target = case / "expected" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def test_there_are_golden_cases() -> None:
    assert {"classic", "onnx_tensorrt", "trtllm"} <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_docker_files_match_the_golden_tree(name: str) -> None:
    case = GOLDEN / name
    rendered = _rendered(case)
    if os.environ.get("TRITONKIT_UPDATE_GOLDEN") == "1":
        _rewrite(case, rendered)
    expected = _expected(case)
    assert sorted(rendered) == sorted(expected)
    for path, data in rendered.items():
        assert data.decode("utf-8", "replace") == expected[path].decode("utf-8", "replace"), path
        assert data == expected[path], path
