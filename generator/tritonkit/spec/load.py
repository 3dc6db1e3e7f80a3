"""Load a spec file into typed models, reporting every error in one pass with file:line:col."""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import pydantic
from pydantic import BaseModel

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import Loc, LocationMap
from tritonkit.spec.document import Document, read_document
from tritonkit.spec.root import Spec

__all__ = ["LoadedSpec", "describe_loc", "load_spec", "suggest"]


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with the document it came from (for locations of later errors)."""

    spec: Spec
    document: Document

    def problem(self, loc: Loc, message: str, hint: Optional[str] = None, *, at_key: bool = False,
                model: Optional[str] = None) -> Problem:
        """A Problem located at ``loc`` of this spec, with the path shown in the message."""
        return self.document.locations.problem(loc, f"{describe_loc(loc, self.document.data)} {message}",
                                               hint, at_key=at_key, model=model)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the spec resolve from."""
        return Path(self.document.base_dir)


def suggest(word: str, choices: typing.Iterable[str]) -> Optional[str]:
    """Return the closest of ``choices`` to ``word``, if one is close enough."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def describe_loc(loc: Loc, data: Any) -> str:
    """Render a key path as ``models.resnet.max_batch_size`` (list items by their name when they have one)."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int):
            item = node[key] if isinstance(node, list) and key < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name:
                parts.append(name)
            else:
                parts.append(f"[{key}]")
            node = item
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    text = ".".join(parts).replace(".[", "[")
    return text or "spec"


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation can hold (through Optional, list, dict, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return [annotation]
    found: list[Any] = []
    for arg in typing.get_args(annotation):
        found.extend(_unwrap(arg))
    return found


def _model_at(root: type[BaseModel], loc: Loc) -> Optional[type[BaseModel]]:
    """The pydantic model class that holds the key at the end of ``loc``, if the path is known."""
    current: Optional[type[BaseModel]] = root
    for key in loc[:-1]:
        if current is None:
            return None
        if isinstance(key, int):
            continue
        field = current.model_fields.get(str(key))
        if field is None:
            return None
        classes = [c for c in _unwrap(field.annotation) if isinstance(c, type) and issubclass(c, BaseModel)]
        current = classes[0] if classes else None
    return current


def _problem_for(error: Any, loaded_data: Any, locations: LocationMap) -> Problem:
    loc: Loc = tuple(k for k in error["loc"] if not (isinstance(k, str) and k.startswith("function-")))
    kind = error["type"]
    where = describe_loc(loc, loaded_data)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        owner = _model_at(Spec, loc)
        choices = list(owner.model_fields) if owner else []
        close = suggest(key, choices)
        hint = f"did you mean {close!r}?" if close else (
            f"valid keys here: {', '.join(choices)}" if choices else "remove it")
        return locations.problem(loc, f"unknown key {key!r} in {describe_loc(loc[:-1], loaded_data)}", hint,
                                 at_key=True)
    if kind == "missing":
        return locations.problem(loc[:-1], f"{where} is required but missing",
                                 f"add `{loc[-1]}:` to {describe_loc(loc[:-1], loaded_data)}")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        got = error.get("input")
        options = [o.strip().strip("'") for o in str(expected).replace(" or ", ", ").split(",")]
        close = suggest(str(got), options)
        hint = f"did you mean {close!r}?" if close else f"use one of {expected}"
        return locations.problem(loc, f"{where} is {got!r}, which is not one of {expected}", hint)
    message = _MESSAGES.get(kind, "{msg}").format(msg=error["msg"], **error.get("ctx", {}))
    message = message.removeprefix("Value error, ")
    got = error.get("input")
    suffix = f" (got {got!r})" if not isinstance(got, (dict, list)) and got is not None else ""
    return locations.problem(loc, f"{where}: {message}{suffix}", _hint_for(kind, loc))


_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "too_short": "needs at least {min_length} item(s)",
    "string_too_short": "must not be empty",
}


def _hint_for(kind: str, loc: Loc) -> Optional[str]:
    hints = {
        "greater_than_equal": "use a larger value, or remove the key to use the default",
        "greater_than": "use a larger value, or remove the key to use the default",
        "less_than_equal": "use a smaller value",
        "int_parsing": "write a whole number",
        "int_from_float": "write a whole number",
        "bool_parsing": "write true or false",
        "list_type": "write a YAML list, e.g. [a, b]",
        "dict_type": "write a YAML mapping of key: value",
        "model_type": "write a YAML mapping of key: value",
        "string_type": "write a quoted string",
    }
    return hints.get(kind)


def validate_document(document: Document) -> Spec:
    """Validate parsed data against the spec models.

    Raises:
        SpecError: every problem found, sorted by line.

    """
    data = document.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(document.locations.problem((), "the spec must be a YAML mapping at the top level",
                                                   "start with `models:` or `llms:`"))
    try:
        return Spec.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = [_problem_for(e, data, document.locations) for e in exc.errors()]
        raise SpecError(problems) from None


def load_spec(path: Union[str, Path], display_path: Optional[str] = None) -> LoadedSpec:
    """Read, parse and validate a spec file.

    Raises:
        SpecError: the file is missing, is not YAML, or breaks the schema (all problems at once).

    """
    document = read_document(path, display_path)
    return LoadedSpec(validate_document(document), document)
