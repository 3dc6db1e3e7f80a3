"""Golden files: each case's spec renders to exactly the expected tree, byte for byte.

Rewrite the expected files with ``TRITONKIT_UPDATE_GOLDEN=1 pytest tests/golden``; a reviewer reads the diff.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tritonkit.write.generate import generate

CASES = Path(__file__).parent / "repos"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_rendered_tree_matches_golden(case: str, tmp_path: Path) -> None:
    source = CASES / case
    work = tmp_path / "work"
    shutil.copytree(EXAMPLES / "models", work / "models")
    shutil.copy(source / "spec.yaml", work / "spec.yaml")
    generate(work / "spec.yaml", work / "out")
    actual = _tree(work / "out")
    expected_root = source / "expected"
    if os.environ.get("TRITONKIT_UPDATE_GOLDEN") == "1":
        shutil.rmtree(expected_root, ignore_errors=True)
        shutil.copytree(work / "out", expected_root)
    expected = _tree(expected_root)
    assert sorted(actual) == sorted(expected)
    for path, data in expected.items():
        assert actual[path] == data, f"{case}: {path} differs from the golden file"
