"""The objects the model layer hands to render: Triton models as config messages plus their files."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from tritonkit.locations import Loc

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

    from tritonkit.model.deploy import Deployment
    from tritonkit.model.k8s import KubernetesPlan

__all__ = ["FileSource", "ModelUnit", "RepositoryModel", "python_backend_files"]


@dataclass(frozen=True)
class FileSource:
    """Where the bytes of one generated file come from: a file to copy, or bytes in memory."""

    path: Optional[Path] = None
    data: Optional[bytes] = None

    def read(self) -> bytes:
        """Return the file's bytes."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def sha256(self) -> str:
        """The SHA-256 of the bytes, hashed once per file version however often it is asked for."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        assert self.path is not None
        stat = self.path.stat()
        return _file_sha256(str(self.path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime too, so an edited file is hashed again; read in blocks, not all at once.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def python_backend_files(main: str, helpers: tuple[str, ...]) -> dict[str, FileSource]:
    """A version folder of one of tritonkit's Python models: ``main`` as ``model.py``, helpers beside it."""
    from importlib import resources

    root = resources.files("tritonkit.python_backends")
    files = {"model.py": FileSource(path=Path(str(root.joinpath(main))))}
    files.update({name: FileSource(path=Path(str(root.joinpath(name)))) for name in helpers})
    return files


@dataclass(frozen=True)
class ModelUnit:
    """One model folder of the repository.

    Attributes:
        name: the model (and folder) name.
        config: the ``ModelConfig`` message, without a version policy decision of tritonkit's own.
        version_files: files of each version folder, by name inside it (``model.py``, ``model.onnx``).
        model_files: files beside ``config.pbtxt`` (label files, ``warmup/`` data), by relative name.
        spec_loc: where the model is declared in the spec, for error messages.
        origin: the spec entry that produced it (``models`` or ``llms``) and that entry's name.

    """

    name: str
    config: model_config_pb2.ModelConfig
    version_files: dict[str, FileSource] = field(default_factory=dict)
    model_files: dict[str, FileSource] = field(default_factory=dict)
    spec_loc: Loc = ()
    origin: str = "models"
    build_sources: dict[str, FileSource] = field(default_factory=dict)


@dataclass(frozen=True)
class RepositoryModel:
    """Everything ``generate`` renders: the models and the deployment settings they imply."""

    units: tuple[ModelUnit, ...]
    triton_version: str
    extra_files: dict[str, Union[FileSource, bytes]] = field(default_factory=dict)
    deployment: Optional[Deployment] = None
    kubernetes: Optional[KubernetesPlan] = None
