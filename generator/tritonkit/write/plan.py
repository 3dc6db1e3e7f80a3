"""Compare a rendered tree with the disk and the manifest; write only what changed, atomically as a whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tritonkit.errors import Problem, WriteConflictError
from tritonkit.model.types import FileSource
from tritonkit.render.repository import Rendered
from tritonkit.write.journal import Switch, hash_file, write_switch
from tritonkit.write.manifest import FileRecord, Manifest

__all__ = ["Action", "WritePlan", "apply_plan", "plan_writes"]


@dataclass(frozen=True)
class Action:
    """One path and what happens to it: create, same, update, remove, or a conflict that blocks the run."""

    status: str
    path: str
    data: Optional[Rendered] = None
    sha256: str = ""
    reason: str = ""


@dataclass
class WritePlan:
    """Every action of a run, and the manifest as it will be afterwards."""

    root: Path
    actions: list[Action] = field(default_factory=list)
    manifest: Optional[Manifest] = None
    #: The manifest's path when it is missing although files are in the way (it was likely lost).
    lost_manifest: Optional[str] = None

    @property
    def changes(self) -> list[Action]:
        """Actions that would change the disk."""
        return [a for a in self.actions if a.status in ("create", "update", "remove")]

    @property
    def conflicts(self) -> list[Action]:
        """Actions that stop the run: files not ours, or ours but edited by hand."""
        return [a for a in self.actions if a.status in ("conflict", "modified")]


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes_of(data: Rendered) -> bytes:
    return bytes(data.read()) if isinstance(data, FileSource) else bytes(data)


def _plan_file(root: Path, path: str, data: Rendered, manifest: Manifest, force: bool,
               lost_manifest: Optional[str]) -> Action:
    new_hash = data.sha256() if isinstance(data, FileSource) else _hash_bytes(data)
    disk_hash = hash_file(root / path)
    record = manifest.files.get(path)
    if disk_hash is None:
        return Action("create", path, data, new_hash)
    if disk_hash == new_hash:
        return Action("same", path, data, new_hash)
    if record is None:
        reason = "exists but was not written by tritonkit"
        if lost_manifest is not None:
            reason += f" as far as it can tell: there is no {lost_manifest}, the record of its files (lost?)"
        return Action("conflict", path, data, new_hash, reason)
    if disk_hash != record.sha256 and not force:
        return Action("modified", path, data, new_hash, "was edited by hand since tritonkit wrote it")
    return Action("update", path, data, new_hash)


def _plan_removal(root: Path, path: str, record: FileRecord, force: bool) -> Optional[Action]:
    disk_hash = hash_file(root / path)
    if disk_hash is None:
        return None
    if disk_hash != record.sha256 and not force:
        return Action("modified", path, reason="was edited by hand; tritonkit would remove it")
    return Action("remove", path, sha256=record.sha256)


def plan_writes(root: Path, tree: Mapping[str, Rendered], keep: set[str], manifest: Manifest,
                force: bool = False, *, lost_manifest: Optional[str] = None) -> WritePlan:
    """Plan a run: ``tree`` is what must exist, ``keep`` are recorded files left as they are (old versions).

    ``lost_manifest`` names the manifest when it is missing from disk: files in the way are then most
    likely tritonkit's own, and the conflicts say so.
    """
    plan = WritePlan(root)
    for path in sorted(tree):
        plan.actions.append(_plan_file(root, path, tree[path], manifest, force, lost_manifest))
    if plan.conflicts:
        plan.lost_manifest = lost_manifest
    for path in sorted(keep - set(tree)):
        if path in manifest.files and (root / path).exists():
            plan.actions.append(Action("same", path, sha256=manifest.files[path].sha256))
    for path, record in sorted(manifest.files.items()):
        if path not in tree and path not in keep:
            action = _plan_removal(root, path, record, force)
            if action is not None:
                plan.actions.append(action)
    return plan


_CONFLICT_HINTS = {
    "conflict": "tritonkit never changes files it did not write: move it away, or generate into "
                "another folder with -o",
    "modified": "move the change into the spec, or rerun with --force to overwrite it",
}


def _copied_hint(source: Path) -> str:
    """For a hand-edited copy: the file it is copied from is the one to edit."""
    import tritonkit.python_backends as shipped

    if Path(shipped.__file__).parent in source.resolve().parents:
        return (f"it is a copy of tritonkit's own {source.name}, replaced on every run: to change it, copy "
                "that file into your project and name it in the spec (artifact: or files:), or rerun with "
                "--force to restore it")
    relative = os.path.relpath(source.resolve(), Path.cwd())
    shown = source.as_posix() if relative.startswith("..") else Path(relative).as_posix()
    return f"it is copied from {shown}: make the change there and run generate again, or rerun with --force " \
           "to overwrite it"


def _conflict_hint(plan: WritePlan, action: Action) -> str:
    if action.status == "modified" and isinstance(action.data, FileSource) and action.data.path is not None:
        return _copied_hint(action.data.path)
    if action.status == "conflict" and plan.lost_manifest is not None:
        return (f"if tritonkit generated these files, restore {plan.lost_manifest} (e.g. from version control) "
                "or remove the repository and generate again; otherwise move them away, or generate into another "
                "folder with -o")
    return _CONFLICT_HINTS[action.status]


def apply_plan(plan: WritePlan) -> None:
    """Carry out a plan without conflicts, atomically for the whole tree (see :mod:`tritonkit.write.journal`).

    Raises:
        WriteConflictError: the plan has conflicts (checked again here, so nothing is half-written).
        WriteError: the files could not be written (a full disk, permissions); the old tree is intact.

    """
    if plan.conflicts:
        raise WriteConflictError([Problem(a.reason, path=a.path, hint=_conflict_hint(plan, a))
                                  for a in plan.conflicts])
    switch = Switch(plan.root)
    for action in plan.actions:
        if action.status in ("create", "update") and action.data is not None:
            switch.puts.append((action.path, _bytes_of(action.data)))
        elif action.status == "remove":
            switch.removals.append((action.path, action.sha256))
    if switch.puts or switch.removals:
        write_switch(switch)
