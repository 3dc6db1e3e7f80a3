"""Plumbing for the compose tests: is a Docker engine here, and the stand-in base image they run.

Tests marked ``docker`` need a running Docker engine, ``docker-compose`` (1.29, Debian's; Compose v2 is
not installable here), ``debootstrap`` (to build the stand-in base image) and ``prometheus``. Without
them they are skipped with the reason, except when ``CI`` is set: there they fail, because ``.ci/run``
installs them and starts dockerd.

No image registry is reachable, so NGC's ``tritonserver`` image is replaced by a stand-in built locally
by ``build_base_image.sh`` (a debootstrapped Debian with the nvidia-pytriton wheel's server). Its tag
is a hash of the build script and the pinned packages, so a machine builds it once and reuses it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional

import pytest

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build_base_image.sh"
IMAGE_REPOSITORY = "tritonkit-compose-base"
TOOLS = ("docker", "docker-compose", "debootstrap", "prometheus")


def missing_docker_reason() -> Optional[str]:
    """Why the compose tests cannot run here, or None when they can."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (apt-get install docker.io docker-compose debootstrap prometheus)"
    try:
        probe = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                               text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 30 s"
    if probe.returncode != 0:
        return f"no running Docker engine (start dockerd): {probe.stderr.strip()[-300:]}"
    return None


def require_docker() -> None:
    """Skip the running test when no Docker engine is usable, or fail it when ``CI`` is set."""
    reason = missing_docker_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so compose tests must not be skipped)", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        require_docker()


def base_image_tag(pins: list[str]) -> str:
    """The stand-in's tag: a hash of its recipe (the build script and the pins it installs)."""
    recipe = hashlib.sha256(BUILD_SCRIPT.read_bytes())
    for pin in sorted(pins):
        recipe.update(b"\0" + pin.encode())
    return f"{IMAGE_REPOSITORY}:{recipe.hexdigest()[:16]}"


def ensure_base_image(pins: list[str]) -> str:
    """Build the stand-in base image with ``pins`` installed unless this machine has it; return its tag."""
    tag = base_image_tag(pins)
    present = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    if present.returncode != 0:
        subprocess.run(["bash", str(BUILD_SCRIPT), tag, *sorted(pins)], check=True, timeout=900)
        _remove_other_recipes(tag)
    return tag


def _remove_other_recipes(keep: str) -> None:
    """Remove stand-ins of earlier recipes (about 350 MB each); one still in use stays."""
    listed = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY],
                            capture_output=True, text=True, check=False).stdout.split()
    for tag in listed:
        if tag != keep:
            subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def base_image_builder() -> Callable[[list[str]], str]:
    """``base_image_builder(pins) -> tag``: the stand-in base image with ``pins`` installed, built once."""
    return ensure_base_image
