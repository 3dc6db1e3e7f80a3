"""Every example spec generates, and the committed model_repository/ is in sync with the default one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tritonkit.write.generate import generate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_generates(name: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    result = generate(tmp_path / "examples" / name, tmp_path)
    assert result.written and result.versions


def test_top_level_model_repository_is_in_sync_with_the_default_example() -> None:
    generate(ROOT / "examples" / "tritonkit.yaml", ROOT, check=True)
