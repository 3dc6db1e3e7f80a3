"""Models to the bytes of a repository tree: ``{relative path: bytes or file to copy}``."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Union

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.model.types import FileSource, ModelUnit, RepositoryModel
from tritonkit.render.docker import render_docker
from tritonkit.render.k8s import render_k8s
from tritonkit.render.pbtxt import render_config

__all__ = ["KEEP_FILE", "Rendered", "model_digest", "render_tree"]

Rendered = Union[bytes, FileSource]

#: Placed in a version folder that would otherwise be empty (ensembles), so git and copies keep it.
KEEP_FILE = ".gitkeep"


def model_digest(unit: ModelUnit) -> str:
    """What a model serves: its config (less the version policy) and its version files' bytes.

    A change of digest means a new version folder; a change of version policy alone does not,
    so pointing the policy back at an old version is a rollback, not a new version.
    """
    config = pb.ModelConfig()
    config.CopyFrom(unit.config)
    config.ClearField("version_policy")
    digest = hashlib.sha256(config.SerializeToString(deterministic=True))
    for kind, files in (("version", unit.version_files), ("built-from", unit.build_sources)):
        for name in sorted(files):
            digest.update(f"\0{kind}\0{name}\0{files[name].sha256()}".encode())
    return digest.hexdigest()


def _unit_tree(unit: ModelUnit, version: int, spec_name: str, root: str) -> dict[str, Rendered]:
    base = f"{root}/{unit.name}"
    tree: dict[str, Rendered] = {f"{base}/config.pbtxt": render_config(unit.config, spec_name)}
    for name, source in unit.model_files.items():
        tree[f"{base}/{name}"] = source
    files: Mapping[str, FileSource] = unit.version_files or {KEEP_FILE: FileSource(data=b"")}
    for name, source in files.items():
        tree[f"{base}/{version}/{name}"] = source
    return tree


def render_tree(repository: RepositoryModel, versions: Mapping[str, int], spec_name: str,
                root: str = "model_repository") -> dict[str, Rendered]:
    """Render every model's config and its current version folder (the writer keeps older versions).

    ``versions`` gives each model's current version number (chosen by the writer from its
    manifest); a model missing from it gets version 1.
    """
    tree: dict[str, Rendered] = {}
    for unit in repository.units:
        tree.update(_unit_tree(unit, versions.get(unit.name, 1), spec_name, root))
    for path, data in repository.extra_files.items():
        tree[path] = data
    if repository.deployment is not None:
        tree.update(render_docker(repository.deployment))
    if repository.kubernetes is not None:
        tree.update(render_k8s(repository.kubernetes, tree, root))
    return tree
