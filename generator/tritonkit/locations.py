"""YAML text to plain data plus a map from each key path to its line and column.

Used wherever a YAML file's problems must point at a line: the spec (``tritonkit.spec``) and the files of a
model repository that ``validate`` reads (NVIDIA's ``model.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

import yaml

from tritonkit.errors import Problem, SpecError

__all__ = ["Loc", "LocationMap", "Mark", "parse_yaml"]

Loc = tuple[Union[str, int], ...]


@dataclass(frozen=True)
class Mark:
    """A 1-based line and column in a file."""

    line: int
    col: int


@dataclass
class LocationMap:
    """Where each value (and each mapping key) of a YAML document starts.

    Paths are tuples of keys and list indices, as pydantic reports them in ``loc``.
    """

    path: str
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)
    block_scalars: dict[Loc, bool] = field(default_factory=dict)

    def value(self, loc: Loc) -> Mark:
        """Return the mark of the value at ``loc``, or of its nearest known ancestor."""
        for end in range(len(loc), -1, -1):
            mark = self.values.get(loc[:end])
            if mark is not None:
                return mark
        return Mark(1, 1)

    def key(self, loc: Loc) -> Mark:
        """Return the mark of the key that names ``loc`` (falls back to the value's mark)."""
        mark = self.keys.get(loc)
        return mark if mark is not None else self.value(loc)

    def problem(self, loc: Loc, message: str, hint: Optional[str] = None, *,
                at_key: bool = False, model: Optional[str] = None) -> Problem:
        """Build a Problem located at ``loc`` in this document."""
        mark = self.key(loc) if at_key else self.value(loc)
        return Problem(message, path=self.path, line=mark.line, col=mark.col, hint=hint, model=model)


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


_CONSTRUCTOR = yaml.SafeLoader("")
#: libyaml's parser, where PyYAML was built with it, composes the same nodes (with marks) ~10x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.ScalarNode) -> Any:
    # Resolve the scalar with PyYAML's safe rules (ints, floats, bools, null, strings).
    return _CONSTRUCTOR.construct_object(node, deep=True)


class _Builder:
    """Turns a composed node tree into plain data while recording marks."""

    def __init__(self, locations: LocationMap) -> None:
        self.locations = locations
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.locations.values[loc] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if node.style in ("|", ">"):
            self.locations.block_scalars[loc] = True
        return _scalar(node)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(self._problem(key_node, "mapping keys must be plain scalars",
                                                   "write the key as a plain word"))
                continue
            key = _scalar(key_node)
            if key in result:
                self.problems.append(self._problem(
                    key_node, f"duplicate key {key!r}", "keep one of the two entries"))
                continue
            self.locations.keys[(*loc, key)] = _mark(key_node)
            result[key] = self.build(value_node, (*loc, key))
        return result

    def _problem(self, node: yaml.Node, message: str, hint: str) -> Problem:
        mark = _mark(node)
        return Problem(message, path=self.locations.path, line=mark.line, col=mark.col, hint=hint)


def parse_yaml(text: str, display_path: str) -> tuple[Any, LocationMap]:
    """Parse YAML text into plain data and a location map.

    Raises:
        SpecError: the text is not YAML, uses anchors/aliases oddly, or repeats a key.

    """
    locations = LocationMap(display_path)
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise SpecError(Problem(f"not valid YAML: {exc.problem or exc}", path=display_path, line=line,
                                col=col, hint="fix the YAML syntax at this position")) from exc
    if node is None:
        return None, locations
    builder = _Builder(locations)
    data = builder.build(node, ())
    if builder.problems:
        raise SpecError(builder.problems)
    return data, locations
