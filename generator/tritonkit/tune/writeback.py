"""The winner written into the spec's own text, as ``plan --write`` does: only its keys change, comments stay."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tritonkit.capacity import SpecEdit
from tritonkit.capacity.spec_edit import edit_entry_text
from tritonkit.errors import Problem, TuneError
from tritonkit.tune.entry import Entry, spec_settings
from tritonkit.tune.space import Candidate
from tritonkit.write.files import write_atomic

__all__ = ["write_winner"]


def write_winner(spec: Path, digest: str, entry: Entry, winner: Candidate) -> SpecEdit:
    """Put ``winner`` into ``entry`` of the spec file; nothing is written when that changes nothing.

    Raises:
        TuneError: the spec changed on disk since the tune read it (its runs may no longer describe it).

    """
    data = spec.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise TuneError(Problem("changed since tune read it, so the winner is not written into it", path=str(spec),
                                hint="the report holds the winner; run tune again on the spec as it is now"))
    text = data.decode("utf-8")
    edit = edit_entry_text(text, entry.section, entry.name, spec_settings(entry, winner), path=str(spec))
    if edit.text != text:
        write_atomic(spec, edit.text.encode("utf-8"), mode=None)
    return edit
