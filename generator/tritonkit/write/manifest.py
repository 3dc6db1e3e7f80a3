"""The manifest: what tritonkit wrote into an output folder, so it only ever changes its own files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonkit.errors import Problem, WriteConflictError

__all__ = ["MANIFEST_NAME", "FileRecord", "Manifest", "read_manifest"]

#: Lives inside the model repository; Triton only loads sub-folders, so it ignores a top-level file.
MANIFEST_NAME = ".tritonkit-manifest.json"
_FORMAT = 1


@dataclass(frozen=True)
class FileRecord:
    """A file tritonkit wrote: its hash and the run that wrote it."""

    sha256: str
    run: int


@dataclass
class Manifest:
    """Files written (paths relative to the output folder) and each model's versions with their digests."""

    spec: str = ""
    run: int = 0
    files: dict[str, FileRecord] = field(default_factory=dict)
    versions: dict[str, dict[int, str]] = field(default_factory=dict)
    #: The spec's path relative to the output folder, kept only where ``spec`` cannot say it (a spec outside
    #: the output folder, where ``spec`` is its file name). Manifests without it stay valid.
    spec_path: str = ""

    def made_from(self, spec_name: str, spec_path: str) -> bool:
        """True when this manifest's files were generated from the spec known as ``spec_name``/``spec_path``.

        An empty manifest, or one written before the spec was recorded, belongs to any spec.
        """
        if not self.files or not self.spec or (self.spec_path or self.spec) == spec_path:
            return True
        # Older manifests name a spec outside the output folder by its file name only.
        return not self.spec_path and self.spec == spec_name != spec_path

    @property
    def spec_shown(self) -> str:
        """The spec as a person would name it: its relative path where known, else its name."""
        return self.spec_path or self.spec

    def to_bytes(self) -> bytes:
        """Stable JSON (sorted keys), so an unchanged manifest is byte-identical."""
        data: dict[str, Any] = {
            "format": _FORMAT,
            "generator": "tritonkit",
            "spec": self.spec,
            "run": self.run,
            "models": {name: {"versions": {str(v): d for v, d in sorted(vs.items())}}
                       for name, vs in sorted(self.versions.items())},
            "files": {path: {"sha256": rec.sha256, "run": rec.run} for path, rec in sorted(self.files.items())},
        }
        if self.spec_path and self.spec_path != self.spec:
            data["spec_path"] = self.spec_path
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _parse(data: Any, shown: str) -> Manifest:
    if not isinstance(data, dict) or data.get("generator") != "tritonkit" or data.get("format") != _FORMAT:
        raise ValueError("not a tritonkit manifest of a known format")
    files = {str(p): FileRecord(str(r["sha256"]), int(r["run"])) for p, r in data["files"].items()}
    versions = {str(name): {int(v): str(d) for v, d in entry["versions"].items()}
                for name, entry in data["models"].items()}
    return Manifest(spec=str(data.get("spec", "")), run=int(data["run"]), files=files, versions=versions,
                    spec_path=str(data.get("spec_path", "")))


def read_manifest(path: Path, shown: str) -> Manifest:
    """Read the manifest at ``path``; a missing one is an empty manifest.

    Raises:
        WriteConflictError: the file exists but is not a manifest tritonkit can read.

    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest()
    try:
        return _parse(json.loads(raw), shown)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WriteConflictError(Problem(
            f"the manifest is unreadable ({exc})", path=shown,
            hint="restore it from version control; without it tritonkit cannot tell its files from yours")) from exc
