"""Write a run's changes so that a repository is either the old one or the new one, never a mix.

A model repository cannot be swapped with one rename: the user's own files may live inside it, and
``docker/`` and ``k8s/`` sit beside it. So ``generate`` writes in three steps, with a write-ahead journal:

1. **Stage.** Every new or changed file goes into ``OUT/.tritonkit-staging/``, beside the repository (Triton
   reads every folder inside a repository, hidden ones too, so nothing is staged there). A file whose folder
   exists is staged on its own; a folder that does not exist yet (a new version folder, a new model, the
   first ``docker/``) is staged whole, so that it later appears with one rename. Each staged file and folder
   is fsynced. A target on another filesystem (a mount inside ``OUT``) is refused here: no rename crosses
   it. The live tree has not changed: a kill, a full disk or any other error here leaves the old
   repository as it was; an error also removes the staging folder, a kill leaves it to the next run.
2. **Commit.** The journal, every rename and removal of the switch in order, is written to
   ``journal.json.tmp`` in the staging folder, fsynced, and renamed to ``journal.json``. That rename is the
   commit point: before it the old repository stands, after it the new one will.
3. **Switch.** Each staged file or folder is renamed onto its target, each file the run removes is
   unlinked, the folders that held them are pruned when empty, the touched folders are fsynced, and then
   the journal and the staging folder are removed.

Every ``generate`` first takes a lock on ``OUT`` (``flock`` of the folder, where the platform has it) and
recovers: a journal is replayed to its end (each step is idempotent: a rename whose staged source is gone
was done, a removal whose file is gone was done), and a staging folder without a journal (a kill before the
commit) is removed. A replayed rename or removal never touches a file whose content is not the one the
journal recorded, so a file changed by hand in between is reported rather than overwritten.

What a kill during the switch itself leaves (a few renames, milliseconds) is part old, part new until the
next run: a changed model's new version folder may stand beside its old ``config.pbtxt``, and a Triton that
polls the folder then would load that. No order of renames avoids it, since a model's config and its version
folders are separate entries that Triton reads together; only new models and new version folders appear
whole. So ``validate`` reports a journal that is waiting, and ``generate --check`` and ``--dry-run`` refuse
to judge the tree until a run has finished it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from tritonkit.errors import Problem, WriteConflictError, WriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["STAGING_DIR", "Switch", "hash_file", "interrupted_write", "locked", "recover", "remove_stray_temp_files",
           "write_switch"]

#: The staging folder, in the output folder beside ``model_repository/``.
STAGING_DIR = ".tritonkit-staging"
JOURNAL_NAME = "journal.json"
_FORMAT = 1


@dataclass
class Switch:
    """What a run changes under ``root``: ``puts`` (path, bytes) and ``removals`` (path, the sha256 it must have)."""

    root: Path
    puts: list[tuple[str, bytes]] = field(default_factory=list)
    removals: list[tuple[str, str]] = field(default_factory=list)


def hash_file(path: Path) -> Optional[str]:
    """The sha256 of a file's bytes, or None when there is no file at ``path``."""
    try:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _fsync_dir(path: Path) -> None:
    """Make a folder's entries (renames, new files) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync of a folder
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:  # os.write names no file: say which one
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        os.close(fd)
    os.chmod(path, 0o644)


def _new_top(root: Path, path: str) -> Optional[str]:
    """The outermost folder of ``path`` that does not exist yet, or None when its folder exists."""
    parts = path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        if not (root / folder).is_dir():
            return folder
    return None


def _shown(path: Path) -> str:
    relative = os.path.relpath(path.resolve(), Path.cwd())
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def _stage(switch: Switch, staging: Path) -> list[dict[str, Any]]:
    """Stage every put under ``staging``; return the journal's steps. Changes nothing in the live tree."""
    root, steps = switch.root, []
    new_dirs: dict[str, str] = {}  # a new folder of the live tree -> its staged copy
    device = os.stat(staging).st_dev
    for index, (path, data) in enumerate(switch.puts):
        top = _new_top(root, path)
        home = root / (top or path)
        if os.stat(home.parent).st_dev != device:  # a mount inside OUT: a rename cannot cross it
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(root / path))
        if top is None:
            staged = f"{STAGING_DIR}/{index:05d}"
            steps.append({"op": "put", "src": staged, "dst": path, "before": hash_file(root / path)})
            target = root / staged
        else:
            if top not in new_dirs:
                new_dirs[top] = f"{STAGING_DIR}/{index:05d}.d"
                steps.append({"op": "put", "src": new_dirs[top], "dst": top, "before": None})
            target = root / new_dirs[top] / path[len(top) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
        _write_file(target, data)
    for staged in new_dirs.values():
        for folder in sorted({p.parent for p in (root / staged).rglob("*")} | {root / staged}, reverse=True):
            _fsync_dir(folder)
    for path, sha256 in switch.removals:
        steps.append({"op": "remove", "path": path, "sha256": sha256})
    return steps


def _commit(staging: Path, steps: list[dict[str, Any]]) -> None:
    data = json.dumps({"format": _FORMAT, "generator": "tritonkit", "steps": steps}, indent=1).encode("utf-8")
    temp = staging / f"{JOURNAL_NAME}.tmp"
    _write_file(temp, data + b"\n")
    _fsync_dir(staging)
    os.replace(temp, staging / JOURNAL_NAME)  # the commit point
    _fsync_dir(staging)


def _conflict(root: Path, path: str, what: str) -> WriteConflictError:
    return WriteConflictError(Problem(
        f"{what} after generate planned to replace it", path=_shown(root / path),
        hint=f"move it away (it is not tritonkit's to overwrite) and run tritonkit generate again; the "
             f"run's journal is {_shown(root / STAGING_DIR / JOURNAL_NAME)}"))


def _check_put(root: Path, step: dict[str, Any]) -> None:
    """Refuse a rename still to do whose target is no longer what the journal found there."""
    src, dst = root / step["src"], root / step["dst"]
    if not src.exists() and not src.is_symlink():
        return  # renamed already
    if src.is_dir():
        if dst.exists() or dst.is_symlink():
            raise _conflict(root, step["dst"], "a folder appeared here")
    elif hash_file(dst) != step["before"] or (step["before"] is None and (dst.exists() or dst.is_symlink())):
        raise _conflict(root, step["dst"], "this file was changed")


def _put(root: Path, step: dict[str, Any], touched: set[Path]) -> None:
    src, dst = root / step["src"], root / step["dst"]
    if not src.exists() and not src.is_symlink():
        return  # renamed already
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    touched.add(dst.parent)


def _remove(root: Path, step: dict[str, Any], touched: set[Path], removed: list[str]) -> None:
    target = root / step["path"]
    if hash_file(target) == step["sha256"]:
        target.unlink()
        touched.add(target.parent)
    # A file gone already was removed before a kill: its folders may still need pruning. A file whose content
    # is not the recorded one is not ours any more and stays (and so does its folder).
    removed.append(step["path"])


def _prune_empty_dirs(root: Path, removed: list[str], touched: set[Path]) -> None:
    for path in removed:
        parent = (root / path).parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            touched.add(parent.parent)
            parent = parent.parent


def _replay(root: Path, steps: list[dict[str, Any]]) -> None:
    touched: set[Path] = set()
    removed: list[str] = []
    for step in steps:  # every check first, so that a refused step leaves the journal's work undone
        if step["op"] == "put":
            _check_put(root, step)
    for step in steps:
        if step["op"] == "put":
            _put(root, step, touched)
        else:
            _remove(root, step, touched, removed)
    _prune_empty_dirs(root, removed, touched)
    for folder in sorted(touched):
        if folder.is_dir():
            _fsync_dir(folder)
    staging = root / STAGING_DIR
    (staging / JOURNAL_NAME).unlink()  # the switch is done: from here on, only leftovers to remove
    _fsync_dir(staging)
    shutil.rmtree(staging)


def _read_journal(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict) or data.get("generator") != "tritonkit" or data.get("format") != _FORMAT:
        raise ValueError("not a tritonkit journal of a known format")
    steps = data["steps"]
    for step in steps:
        keys = ("src", "dst") if step["op"] == "put" else ("path",)
        for key in keys:
            if not isinstance(step[key], str) or step[key].startswith("/") or ".." in step[key].split("/"):
                raise ValueError(f"a step names {step[key]!r}, outside the output folder")
    return list(steps)


def _os_problem(exc: OSError, path: Path, out: Path, done: str, fix: str, size: int = 0) -> Problem:
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    folder = _shown(out)
    folder = "the current folder" if folder == "." else folder
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        needs = f" (this run writes {max(1, size // 1024)} KiB)" if size else ""
        fix = f"free space on the device that holds {folder}{needs}, or use another -o folder; then {fix}"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {folder} writable, then {fix}"
    elif exc.errno == errno.EXDEV:
        fix = (f"generate renames staged files from {folder}/{STAGING_DIR} into place, so the output folder must be "
               f"one filesystem: mount the parent folder instead, or generate elsewhere and copy; then {fix}")
    return Problem(f"{reason} while writing it; {done}", path=_shown(path), hint=fix)


def recover(out: Path) -> bool:
    """Finish a switch a killed run committed, or remove what a run killed before its commit left.

    Returns True when something was left over. Call it with :func:`locked` held.

    Raises:
        WriteConflictError: a file the journal would replace was changed since; nothing of it is touched.
        WriteError: the journal cannot be read or a step fails (a full disk, permissions).

    """
    staging = out / STAGING_DIR
    if not staging.is_dir():
        return False
    journal = staging / JOURNAL_NAME
    if not journal.is_file():
        shutil.rmtree(staging)  # a run killed before its commit: the repository is still the old one
        return True
    try:
        steps = _read_journal(journal)
    except (ValueError, KeyError, TypeError) as exc:
        raise WriteError(Problem(
            f"the journal of an interrupted generate is unreadable ({exc})", path=_shown(journal),
            hint=f"the repository may hold part of two runs: restore {_shown(out)} from version control, remove "
                 f"{_shown(staging)}, and run tritonkit generate again")) from exc
    try:
        _replay(out, steps)
    except OSError as exc:
        raise WriteError(_os_problem(
            exc, Path(exc.filename) if exc.filename else journal, out,
            "the write of an interrupted generate is still unfinished",
            "run tritonkit generate again: it finishes that write from its journal")) from exc
    return True


def write_switch(switch: Switch) -> None:
    """Stage, commit and switch ``switch``: afterwards the tree is the new one, or (on error) still the old.

    Raises:
        WriteError: staging failed (the old tree is intact and nothing is left behind), or the switch
            failed after the commit (the next run finishes it).

    """
    root = switch.root
    staging = root / STAGING_DIR
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        steps = _stage(switch, staging)
        _commit(staging, steps)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(_os_problem(
            exc, _failed_path(exc, switch, staging), root, "nothing was changed: the repository is as it was",
            "run tritonkit generate again", size=sum(len(data) for _, data in switch.puts))) from exc
    try:
        _replay(root, steps)
    except OSError as exc:
        raise WriteError(_os_problem(
            exc, Path(exc.filename) if exc.filename else staging / JOURNAL_NAME, root,
            "the repository holds part of the old files and part of the new ones until the write is finished",
            "run tritonkit generate again: it finishes the write from its journal")) from exc


def _failed_path(exc: OSError, switch: Switch, staging: Path) -> Path:
    """The live path whose staged copy failed, rather than the staging folder's internal name."""
    name = Path(str(exc.filename)) if exc.filename else staging
    try:
        relative = name.relative_to(staging).as_posix()
    except ValueError:
        return name
    index, _, inner = relative.partition("/")
    number = index.split(".")[0]
    if number.isdigit() and int(number) < len(switch.puts):
        path = switch.puts[int(number)][0]
        if inner:
            top = _new_top(switch.root, path) or ""
            return switch.root / top / inner
        return switch.root / path
    return name


#: The temporary name ``write_atomic`` (files.py) gives a file: ``tempfile.mkstemp``'s 8 random characters.
_ATOMIC_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def remove_stray_temp_files(root: Path, paths: set[str]) -> None:
    """Remove what an older tritonkit, killed while it wrote one of ``paths`` in place, left beside it.

    Only ``.NAME.XXXXXXXX.tmp`` beside a file named NAME that tritonkit writes: never another file.
    """
    by_folder: dict[Path, set[str]] = {}
    for path in paths:
        target = root / path
        by_folder.setdefault(target.parent, set()).add(target.name)
    for folder, names in by_folder.items():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _ATOMIC_TEMP.fullmatch(entry.name)
            if match and match["name"] in names and entry.is_file() and not entry.is_symlink():
                entry.unlink()


def interrupted_write(repository: Path) -> Optional[Problem]:
    """The problem to report when a killed ``generate`` left its switch unfinished beside ``repository``."""
    journal = repository.parent / STAGING_DIR / JOURNAL_NAME
    if not journal.is_file():
        return None
    return Problem(
        f"an interrupted generate left this repository half switched: part old files, part new ones (its journal "
        f"is {_shown(journal)})", path=_shown(repository),
        hint="run tritonkit generate again: it finishes the write before anything else")


@contextmanager
def locked(out: Union[str, Path]) -> Iterator[None]:
    """Hold an exclusive lock on the output folder (when it exists), so two runs never write it at once."""
    folder = Path(out)
    if fcntl is None or not folder.is_dir():
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
