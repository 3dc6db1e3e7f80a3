"""Plumbing for the compose tests: is a Docker engine here, and the stand-in base image they run.

Tests marked ``docker`` need a running Docker engine, ``docker-compose`` (1.29, Debian's; Compose v2 is
not installable here), ``debootstrap`` (to build the stand-in base image) and ``prometheus``. Without
them they are skipped with the reason, except when ``CI`` is set: there they fail, because ``.ci/run``
installs them and starts dockerd.

No image registry is reachable, so NGC's ``tritonserver`` image is replaced by a stand-in built locally
by ``build_base_image.sh`` (a debootstrapped Debian with the nvidia-pytriton wheel's server). Its tag
is a hash of the build script and the pinned packages, so a machine builds it once and reuses it; the
tritonkit wheel of this checkout (for the OpenAI gateway's container) goes into a thin layer above it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional

import pytest

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]
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


def base_image_tag(pins: list[str], bare_pins: Sequence[str] = (), recipe_extra: Sequence[str] = ()) -> str:
    """The stand-in's tag: a hash of its recipe (the build script, the pins it installs, and ``recipe_extra``)."""
    recipe = hashlib.sha256(BUILD_SCRIPT.read_bytes())
    for pin in [*sorted(pins), "--no-deps", *sorted(bare_pins), "--extra", *recipe_extra]:
        recipe.update(b"\0" + pin.encode())
    return f"{IMAGE_REPOSITORY}:{recipe.hexdigest()[:16]}"


def _present(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0


def ensure_base_image(pins: list[str], bare_pins: Sequence[str] = (), wheel: Optional[Path] = None) -> str:
    """The stand-in base image with ``pins`` (and ``bare_pins`` without dependencies) installed; return its tag.

    ``wheel`` is a wheel of tritonkit built from this checkout: pins may name it (the gateway's
    ``tritonkit[gateway]==<version>``, which no index has), and it is installed over the base in a layer
    of its own, so a change to tritonkit's code rebuilds that layer only. Its dependencies are part of the
    base's recipe, so a changed dependency rebuilds the base.
    """
    extra = _requirements_of(wheel) if wheel is not None else []
    base = base_image_tag(pins, bare_pins, extra)
    if not _present(base):
        args = [*sorted(pins), *(["--no-deps", *sorted(bare_pins)] if bare_pins else [])]
        env = dict(os.environ)
        if wheel is not None:
            env["TRITONKIT_COMPOSE_FIND_LINKS"] = str(wheel.parent)
        subprocess.run(["bash", str(BUILD_SCRIPT), base, *args], check=True, timeout=1500, env=env)
    if wheel is None:
        _remove_other_recipes({base})
        return base
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]
    tag = f"{base}-tritonkit-{digest}"
    if not _present(tag):
        _layer_wheel(base, wheel, tag)
    _remove_other_recipes({base, tag})
    return tag


def _requirements_of(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's metadata."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode("utf-8")
    return sorted(line for line in metadata.splitlines() if line.startswith("Requires-Dist:"))


def _layer_wheel(base: str, wheel: Path, tag: str) -> None:
    """``tag``: ``base`` with ``wheel`` installed over whatever version of it the base has."""
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(wheel, context)
        Path(context, "Dockerfile").write_text(
            f"FROM {base}\nCOPY {wheel.name} /tmp/wheel/\n"
            f"RUN python3 -m pip install --no-deps --force-reinstall --no-cache-dir /tmp/wheel/{wheel.name} "
            "&& rm -rf /tmp/wheel\n", encoding="utf-8")
        subprocess.run(["docker", "build", "-q", "-t", tag, context], check=True, capture_output=True, timeout=600)


def build_wheel(folder: Path) -> Path:
    """A wheel of tritonkit from this checkout, in ``folder`` (no network: the build backend is installed).

    Built from a copy of the package's sources, so setuptools' ``build/`` stays out of the checkout and
    no module deleted since an earlier build can ride along.
    """
    source = folder / "source"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPOSITORY / name, source / name)
    for name in ("generator", "python_backends", "examples"):
        shutil.copytree(REPOSITORY / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(folder), str(source)], check=True, capture_output=True, timeout=600)
    return next(folder.glob("tritonkit-*.whl"))


def _remove_other_recipes(keep: set[str]) -> None:
    """Remove stand-ins of earlier recipes (hundreds of MB each); one still in use stays."""
    listed = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY],
                            capture_output=True, text=True, check=False).stdout.split()
    for tag in listed:
        if tag not in keep:
            subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def base_image_builder() -> Callable[..., str]:
    """``base_image_builder(pins, bare_pins, wheel) -> tag``: see ``ensure_base_image``."""
    return ensure_base_image


@pytest.fixture(scope="session")
def tritonkit_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tritonkit from this checkout as a wheel: the gateway container's tritonkit (it is on no index)."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))
