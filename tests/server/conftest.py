"""Fixtures of the server tests: the basic fixture repository and one server over it per module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Callable, Optional

import pytest

from tritonkit.runtime import Server
from tritonkit.write.generate import generate

ServerFactory = Callable[..., Server]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def basic_repo(tmp_path_factory: pytest.TempPathFactory, repo_builder: Callable[..., Path]) -> Path:
    """add_sub (batched, 2 CPU instances), add_sub_twice (ensemble), streamer (decoupled), sleeper."""
    return repo_builder(tmp_path_factory.mktemp("basic") / "model_repository", "basic")


@pytest.fixture(scope="module")
def basic_server(basic_repo: Path, triton_server_module: ServerFactory) -> Iterator[Server]:
    """One server over ``basic_repo`` shared by a test module."""
    yield triton_server_module(basic_repo)


@pytest.fixture
def make_repo(tmp_path: Path, repo_builder: Callable[..., Path]) -> Callable[..., Path]:
    """Factory ``make_repo(*sources, models=None, onnx=False) -> Path``: a fresh repository in tmp_path."""
    counter = iter(range(1000))

    def make(*sources: str, models: Optional[Sequence[str]] = None, onnx: bool = False) -> Path:
        return repo_builder(tmp_path / f"repo{next(counter)}", *sources, models=models, onnx=onnx)

    return make


@pytest.fixture(scope="module")
def default_example_server(tmp_path_factory: pytest.TempPathFactory, triton_server_module: ServerFactory) -> Server:
    """The default example (examples/tritonkit.yaml), unchanged, generated and served by one server per module."""
    root = tmp_path_factory.mktemp("default-example")
    shutil.copytree(EXAMPLES, root, dirs_exist_ok=True)
    generate(root / "tritonkit.yaml", root)
    return triton_server_module(root / "model_repository", startup_timeout_s=400.0)
