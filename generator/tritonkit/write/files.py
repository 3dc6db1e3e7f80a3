"""Atomic file writes: a temporary file in the target's folder, then a rename, so no reader sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

__all__ = ["write_atomic"]


def write_atomic(target: Path, data: bytes, mode: Optional[int] = 0o644) -> None:
    """Write ``data`` to ``target`` atomically, creating its folder.

    ``mode`` is the new file's permission bits; ``None`` keeps those of the file being replaced
    (0o644 when there is none).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
