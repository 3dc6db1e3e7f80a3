"""Find a tritonserver binary and prepare what it needs to start (backends, libraries, Python paths)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from importlib import util as importlib_util
from pathlib import Path
from typing import Optional

from tritonkit.errors import Problem, ServerError

__all__ = ["TRITONSERVER_ENV", "Environment", "Installation", "check_stub_numpy", "find_tritonserver",
           "prepare_environment", "stub_numpy_version"]

#: Environment variable naming the tritonserver binary to use.
TRITONSERVER_ENV = "TRITONSERVER"

_WHEEL_HINT = "install the wheel's server with `pip install 'tritonkit[serve]'`, pass --tritonserver PATH, " \
              f"set {TRITONSERVER_ENV}, or run inside the NGC tritonserver container"


@dataclass(frozen=True)
class Installation:
    """A tritonserver binary and what is known about its layout.

    ``dist_dir`` is set for the server shipped in the ``nvidia-pytriton`` wheel, which needs the stub,
    library paths and backend directory prepared by :func:`prepare_environment`.
    """

    binary: Path
    source: str
    dist_dir: Optional[Path] = None
    backend_dir: Optional[Path] = None

    @property
    def is_wheel(self) -> bool:
        """True for the server of the ``nvidia-pytriton`` wheel."""
        return self.dist_dir is not None

    def backends(self) -> Optional[frozenset[str]]:
        """Names of the backends this server can load, or None when they cannot be listed."""
        if self.backend_dir is None or not self.backend_dir.is_dir():
            return None
        return frozenset(p.name for p in self.backend_dir.iterdir() if p.is_dir())


@dataclass
class Environment:
    """Extra command-line flags and environment variables a server installation needs."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _wheel_dist_dir() -> Optional[Path]:
    spec = importlib_util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    dist = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    return dist if (dist / "bin" / "tritonserver").is_file() else None


def _installation(binary: Path, source: str) -> Installation:
    root = binary.resolve().parent.parent
    if (root / "python_backend_stubs").is_dir():
        return Installation(binary, source, dist_dir=root, backend_dir=root / "backends")
    backends = root / "backends"
    return Installation(binary, source, backend_dir=backends if backends.is_dir() else None)


def find_tritonserver(explicit: Optional[str] = None) -> Installation:
    """Find the server: ``explicit``, then ``$TRITONSERVER``, then ``tritonserver`` on PATH, then the wheel's.

    Raises:
        ServerError: no server binary was found, or a named one does not exist.

    """
    for value, source in ((explicit, "--tritonserver"), (os.environ.get(TRITONSERVER_ENV), TRITONSERVER_ENV)):
        if value:
            path = Path(value).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise ServerError(Problem(f"{source} names {path}, which is not an executable file",
                                          path=str(path), hint=_WHEEL_HINT))
            return _installation(path.resolve(), source)
    on_path = shutil.which("tritonserver")
    if on_path:
        return _installation(Path(on_path).resolve(), "PATH")
    dist = _wheel_dist_dir()
    if dist is not None:
        return _installation(dist / "bin" / "tritonserver", "nvidia-pytriton wheel")
    raise ServerError(Problem("no tritonserver found", hint=_WHEEL_HINT))


_STUB = "triton_python_backend_stub"


def _stub_for_running_python(dist: Path) -> Path:
    """The wheel's stub built for this Python; else one installed by hand into backends/python/.

    Triton's docs have users copy a stub into the backend folder; the wheel ships one per Python
    version instead. The versioned one is right by construction, so it wins; a hand-installed one is
    used only when the wheel has none for this Python.
    """
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / _STUB
    if stub.is_file():
        return stub
    installed = dist / "backends" / "python" / _STUB
    if installed.is_file():
        return installed
    stubs = dist / "python_backend_stubs"
    available = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
    raise ServerError(Problem(f"the tritonserver wheel has no Python backend stub for Python {version}",
                              path=str(dist), hint=f"run tritonkit with one of Python {', '.join(available)}"))


def _link_backends(dist: Path, workspace: Path) -> Path:
    """Build a private backend directory: the wheel's Python backend plus the stub for this Python."""
    backends = workspace / "backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for entry in (dist / "backends" / "python").iterdir():
        if entry.is_file() and entry.name != _STUB:  # the stub is chosen below, whatever is installed there
            (python_dir / entry.name).symlink_to(entry)
    (python_dir / _STUB).symlink_to(_stub_for_running_python(dist))
    return backends


def _interpreter_bin_dir() -> str:
    """The folder of the running interpreter, e.g. a virtual environment's ``bin``.

    The stub embeds Python with ``PYTHONPATH`` ignored (``-E``), and finds its prefix by looking for
    ``python3`` on ``PATH``: with this folder first, it uses the same environment (and numpy) as we do.
    """
    return str(Path(sys.executable).parent)


def _join(*parts: Optional[str]) -> str:
    return os.pathsep.join(p for p in parts if p)


def prepare_environment(installation: Installation, workspace: Path) -> Environment:
    """Return the flags and environment the server needs; for the wheel's server, build its backend dir.

    Raises:
        ServerError: the wheel has no stub for the running Python.

    """
    if not installation.is_wheel:
        return Environment()
    dist = installation.dist_dir
    assert dist is not None  # is_wheel says so
    libs = dist.parent.parent / "nvidia_pytriton.libs"
    libdir = sysconfig.get_config_var("LIBDIR")
    env = {
        "LD_LIBRARY_PATH": _join(str(libs), libdir, os.environ.get("LD_LIBRARY_PATH")),
        "PATH": _join(_interpreter_bin_dir(), os.environ.get("PATH")),
    }
    args = [f"--backend-directory={_link_backends(dist, workspace)}", f"--cache-directory={dist / 'caches'}"]
    return Environment(args=args, env=env)


def stub_numpy_version(env: dict[str, str]) -> Optional[str]:
    """Return the numpy version the Python backend stub will import, or None if it has none.

    The stub's interpreter is the first ``python3`` on the server's ``PATH``. When that is the running
    interpreter's own environment, read the installed version; otherwise ask that interpreter.
    """
    python = shutil.which("python3", path=env.get("PATH"))
    if python is None or Path(python).parent == Path(sys.executable).parent:
        try:
            return importlib_metadata.version("numpy")
        except importlib_metadata.PackageNotFoundError:
            return None
    code = "import numpy; print(numpy.__version__)"
    result = subprocess.run([python, "-E", "-c", code], env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def check_stub_numpy(installation: Installation, env: dict[str, str]) -> None:
    """Refuse numpy 2 where the wheel's Python backend stub imports it (``env`` is the server's environment).

    Raises:
        ServerError: the stub would import numpy 2, with which the wheel's Python backend passes empty tensors.

    """
    if not installation.is_wheel:
        return
    version = stub_numpy_version(env)
    if version is not None and int(version.split(".")[0]) >= 2:
        raise ServerError(Problem(
            f"numpy {version} is installed where the Python backend stub imports it; with numpy 2 the "
            "wheel's Python backend passes empty tensors", hint="install numpy<2 (`pip install 'numpy<2'`)"))
