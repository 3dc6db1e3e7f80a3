"""Check spec blocks that mirror Triton messages against ``model_config.proto``'s own descriptors."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import Problem
from tritonkit.locations import Loc
from tritonkit.spec.load import LoadedSpec, suggest

__all__ = ["ModelConfig", "check_block", "merge_raw_config", "new_config"]

ModelConfig = model_config_pb2.ModelConfig


def new_config() -> model_config_pb2.ModelConfig:
    """Return an empty ``ModelConfig`` message."""
    return model_config_pb2.ModelConfig()


def _check_field(loaded: LoadedSpec, field: FieldDescriptor, value: Any, loc: Loc) -> list[Problem]:
    if field.message_type is not None and not field.message_type.GetOptions().map_entry:
        items = value if field.label == FieldDescriptor.LABEL_REPEATED and isinstance(value, list) else [value]
        problems: list[Problem] = []
        for i, item in enumerate(items):
            item_loc = (*loc, i) if items is value else loc
            problems += _check_message(loaded, field.message_type, item, item_loc)
        return problems
    if field.enum_type is not None:
        names = [v.name for v in field.enum_type.values]
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str) and item not in names:
                close = suggest(item, names)
                hint = f"did you mean {close!r}?" if close else f"use one of {', '.join(names)}"
                return [loaded.problem(loc, f"is {item!r}, not a value of {field.enum_type.name}", hint)]
    return []


def _check_message(loaded: LoadedSpec, descriptor: Descriptor, value: Any, loc: Loc) -> list[Problem]:
    """Walk a mapping against a message descriptor; report unknown keys and enum values where they are."""
    if not isinstance(value, dict):
        return [loaded.problem(loc, f"must be a mapping (Triton message {descriptor.name})",
                               "write it as key: value pairs")]
    problems: list[Problem] = []
    fields = {f.name: f for f in descriptor.fields}
    fields.update({f.json_name: f for f in descriptor.fields})
    for key, item in value.items():
        field = fields.get(str(key))
        if field is None:
            close = suggest(str(key), [f.name for f in descriptor.fields])
            hint = f"did you mean {close!r}?" if close else (
                "valid keys: " + ", ".join(f.name for f in descriptor.fields))
            problems.append(loaded.problem((*loc, key), f"has no field {key!r} (Triton {descriptor.name})", hint,
                                           at_key=True))
            continue
        problems += _check_field(loaded, field, item, (*loc, key))
    return problems


def check_block(loaded: LoadedSpec, message: Message, value: Any, loc: Loc) -> list[Problem]:
    """Fill ``message`` from a spec mapping after checking it against the message's descriptor.

    Returns the problems found; ``message`` is filled only when there are none.
    """
    problems = _check_message(loaded, message.DESCRIPTOR, value, loc)
    if problems:
        return problems
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as exc:
        return [loaded.problem(loc, f"does not fit Triton's {message.DESCRIPTOR.name}: {exc}",
                               "check the value types against model_config.proto")]
    return []


_TEXT_POS = re.compile(r"^(\d+):(\d+) : (.*)$", re.S)


def _fragment_position(loaded: LoadedSpec, loc: Loc, frag_line: int, frag_col: int) -> tuple[int, int]:
    """Map a line:col inside a raw_config fragment to the spec file."""
    locations = loaded.document.locations
    mark = locations.value(loc)
    if not locations.block_scalars.get(loc):
        # A quoted or plain one-line string: the fragment starts just after the opening quote.
        return mark.line, mark.col + frag_col
    # A block scalar (|) starts on the line after its indicator, indented as its first line is.
    line = mark.line + frag_line
    lines = loaded.document.text.splitlines()
    text_line = lines[line - 1] if 0 < line <= len(lines) else ""
    indent = len(text_line) - len(text_line.lstrip(" "))
    return line, indent + frag_col


def merge_raw_config(loaded: LoadedSpec, config: model_config_pb2.ModelConfig, text: str,
                     loc: Loc) -> list[Problem]:
    """Merge a ``raw_config`` pbtxt fragment into ``config``; errors point at the YAML line of the fragment."""
    try:
        text_format.Merge(text, config)
    except text_format.ParseError as exc:
        locations = loaded.document.locations
        mark = locations.value(loc)
        match = _TEXT_POS.match(str(exc))
        line, col, message = mark.line, mark.col, str(exc)
        if match:
            frag_line, frag_col, message = int(match[1]), int(match[2]), match[3]
            line, col = _fragment_position(loaded, loc, frag_line, frag_col)
        return [Problem(f"raw_config is not valid for Triton's ModelConfig: {message}",
                        path=locations.path, line=line, col=col,
                        hint="fix the pbtxt fragment; field names are those of model_config.proto")]
    return []
