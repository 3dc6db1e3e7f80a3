"""Read-only views of a model repository: on disk, or as an in-memory map of rendered files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Protocol

__all__ = ["DiskRepository", "MappingRepository", "RepositoryView"]

_CONFIG = "config.pbtxt"


class RepositoryView(Protocol):
    """What validation needs to know about a repository: names, configs, and version folders."""

    root_name: str

    def models(self) -> list[str]:
        """Return the names of the model folders, sorted."""
        ...

    def stray_files(self) -> list[str]:
        """Return the names of plain files at the top of the repository, sorted."""
        ...

    def config_text(self, model: str) -> Optional[bytes]:
        """Return the bytes of ``<model>/config.pbtxt``, or None when there is none."""
        ...

    def version_dirs(self, model: str) -> list[str]:
        """Return the names of every folder inside the model folder, sorted."""
        ...

    def version_files(self, model: str, version: str) -> list[str]:
        """Return the names of the entries (files and folders) of one version folder, sorted."""
        ...

    def version_file(self, model: str, version: str, name: str) -> Optional[bytes]:
        """Return the bytes of the file ``<model>/<version>/<name>``, or None when it is not a file."""
        ...


class DiskRepository:
    """A repository folder on disk."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.root_name = root.resolve().name or str(root)

    def models(self) -> list[str]:
        """Return the names of the model folders, hidden ones left out (Triton skips them too)."""
        return sorted(p.name for p in self._root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def stray_files(self) -> list[str]:
        """Return the names of plain files at the top of the repository."""
        return sorted(p.name for p in self._root.iterdir() if p.is_file() and not p.name.startswith("."))

    def config_text(self, model: str) -> Optional[bytes]:
        """Return the bytes of the model's config.pbtxt, or None."""
        path = self._root / model / _CONFIG
        return path.read_bytes() if path.is_file() else None

    def version_dirs(self, model: str) -> list[str]:
        """Return the names of the folders inside the model folder."""
        return sorted(p.name for p in (self._root / model).iterdir() if p.is_dir())

    def version_files(self, model: str, version: str) -> list[str]:
        """Return the names of the entries of one version folder."""
        return sorted(p.name for p in (self._root / model / version).iterdir())

    def version_file(self, model: str, version: str, name: str) -> Optional[bytes]:
        """Return the bytes of one file of a version folder, or None."""
        path = self._root / model / version / name
        return path.read_bytes() if path.is_file() else None


class MappingRepository:
    """A repository held in memory as ``{"model/1/model.py": content, ...}``.

    Keys are posix paths relative to the repository root. Only names matter, except for
    ``<model>/config.pbtxt`` and files read by rules (``<model>/<version>/model.yaml``), whose values
    are ``bytes``, ``str``, or an object with ``read() -> bytes``.
    A key ending in ``/`` names an empty folder, e.g. ``"pipeline/1/"`` for an ensemble's version folder.
    """

    def __init__(self, files: Mapping[str, object], root_name: str = "model_repository") -> None:
        self.root_name = root_name
        self._files = files
        self._children: dict[tuple[str, ...], set[str]] = {}
        self._dirs: set[tuple[str, ...]] = {()}
        for key in files:
            self._add(key)

    def _add(self, key: str) -> None:
        parts = tuple(part for part in key.strip("/").split("/") if part)
        is_dir = key.endswith("/")
        for depth in range(len(parts)):
            parent, name = parts[:depth], parts[depth]
            self._children.setdefault(parent, set()).add(name)
            if depth < len(parts) - 1 or is_dir:
                self._dirs.add(parts[: depth + 1])

    def _list(self, parent: tuple[str, ...], dirs: Optional[bool]) -> list[str]:
        names = self._children.get(parent, set())
        if dirs is None:
            return sorted(names)
        return sorted(n for n in names if (((*parent, n)) in self._dirs) == dirs)

    def models(self) -> list[str]:
        """Return the names of the model folders."""
        return [n for n in self._list((), dirs=True) if not n.startswith(".")]

    def stray_files(self) -> list[str]:
        """Return the names of plain files at the top of the repository."""
        return [n for n in self._list((), dirs=False) if not n.startswith(".")]

    def config_text(self, model: str) -> Optional[bytes]:
        """Return the bytes of the model's config.pbtxt, or None."""
        return self._bytes(f"{model}/{_CONFIG}")

    def version_file(self, model: str, version: str, name: str) -> Optional[bytes]:
        """Return the bytes of one file of a version folder, or None."""
        return self._bytes(f"{model}/{version}/{name}")

    def _bytes(self, key: str) -> Optional[bytes]:
        value = self._files.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        read = getattr(value, "read", None)  # e.g. tritonkit.model.types.FileSource
        return bytes(read()) if callable(read) else b""

    def version_dirs(self, model: str) -> list[str]:
        """Return the names of the folders inside the model folder."""
        return self._list((model,), dirs=True)

    def version_files(self, model: str, version: str) -> list[str]:
        """Return the names of the entries of one version folder."""
        return self._list((model, version), dirs=None)
