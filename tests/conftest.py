"""Shared test plumbing: where the tritonserver comes from, and a fixture that runs one.

Tests marked ``triton`` need a server binary. Without one they are skipped with the reason, except
when the ``CI`` environment variable is set: there they fail, because CI installs the server.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Union

import pytest

from tritonkit.errors import ServerError
from tritonkit.runtime import Server
from tritonkit.runtime.locate import find_tritonserver

FIXTURES = Path(__file__).parent / "fixtures"
REPOS = FIXTURES / "repos"

ONNX_CONFIG = """name: "onnx_model"
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]
"""


def build_repo(dest: Path, *sources: str, models: Optional[Sequence[str]] = None, onnx: bool = False) -> Path:
    """Copy the fixture repositories ``sources`` (names under tests/fixtures/repos) into ``dest``.

    ``models`` keeps only the named model folders; ``onnx`` adds a model the wheel's server cannot run.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for folder in sorted((REPOS / source).iterdir()):
            if folder.is_dir() and (models is None or folder.name in models):
                shutil.copytree(folder, dest / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    if onnx:
        add_onnx_model(dest)
    return dest


def add_onnx_model(repo: Path, name: str = "onnx_model") -> Path:
    """Add a model the wheel's server cannot run (backend onnxruntime)."""
    folder = repo / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(ONNX_CONFIG.replace("onnx_model", name), encoding="utf-8")
    (folder / "1" / "model.onnx").write_bytes(b"not a real onnx file; never loaded here")
    return folder


@pytest.fixture(scope="session")
def repo_builder() -> Callable[..., Path]:
    """``repo_builder(dest, *sources, models=None, onnx=False) -> Path``: copy fixture repositories."""
    return build_repo


def _missing_server_reason() -> Union[str, None]:
    try:
        find_tritonserver()
    except ServerError as exc:
        return f"no tritonserver binary: {exc}"
    return None


def skip_or_fail(reason: str, what: str = "this test") -> NoReturn:
    """Skip the running test for ``reason``, or fail it when ``CI`` is set: CI installs every part tests need."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so {what} must not be skipped)", pytrace=False)
    pytest.skip(reason)


def require_tritonserver() -> None:
    """Skip the running test when no tritonserver exists, or fail it when ``CI`` is set."""
    reason = _missing_server_reason()
    if reason is not None:
        skip_or_fail(reason, "server tests")


@pytest.fixture(scope="session")
def installed() -> Callable[[str], str]:
    """``installed("promtool")``: the program's path; a program that is missing skips the test (fails it in CI)."""

    def find(program: str) -> str:
        found = shutil.which(program)
        if found is None:
            skip_or_fail(f"{program} is not installed (apt-get install {_PACKAGES.get(program, program)})")
        return found

    return find


#: The Debian package of each program tests run.
_PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus"}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("triton") is not None:
        require_tritonserver()


ServerFactory = Callable[..., Server]


def _server_factory() -> Iterator[ServerFactory]:
    started: list[Server] = []

    def start(repo: Union[str, Path], **kwargs: Any) -> Server:
        require_tritonserver()
        kwargs.setdefault("startup_timeout_s", 120.0)
        kwargs.setdefault("exit_timeout_s", 10.0)
        server = Server(repo, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def triton_server() -> Iterator[ServerFactory]:
    """Factory ``triton_server(repo, **Server kwargs) -> Server``: started on free ports, stopped at teardown."""
    yield from _server_factory()


@pytest.fixture(scope="module")
def triton_server_module() -> Iterator[ServerFactory]:
    """Like ``triton_server``, but the servers live until the test module ends (share one per module)."""
    yield from _server_factory()
