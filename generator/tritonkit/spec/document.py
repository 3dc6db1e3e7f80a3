"""A spec file read from disk: its YAML as plain data, and where every key of it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import LocationMap, parse_yaml


@dataclass(frozen=True)
class Document:
    """A parsed spec file: its data, where every part of it is, and the folder paths resolve from."""

    path: Path
    display_path: str
    data: Any
    locations: LocationMap
    text: str = ""

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the spec resolve from."""
        return self.path.parent


def read_document(path: Union[str, Path], display_path: Optional[str] = None) -> Document:
    """Read and parse a spec file.

    Raises:
        SpecError: the file cannot be read or is not valid YAML.

    """
    spec_path = Path(path)
    shown = display_path or str(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(Problem("spec file not found", path=shown,
                                hint="check the path, or run `tritonkit init` to write an example")) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Problem(f"cannot read spec file: {exc}", path=shown)) from exc
    data, locations = parse_yaml(text, shown)
    return Document(spec_path.resolve(), shown, data, locations, text)
