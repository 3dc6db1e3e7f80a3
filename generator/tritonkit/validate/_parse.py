"""Read each model folder of a repository: parse config.pbtxt against Triton's schema, list versions."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from tritonkit.errors import Problem
from tritonkit.triton import parse_config
from tritonkit.validate._locate import Locator
from tritonkit.validate._report import ModelEntry, Sink
from tritonkit.validate._templates import nvidia_template, optional_placeholders
from tritonkit.validate._view import RepositoryView

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

__all__ = ["read_model"]

#: Folders a model may hold besides versions: --model-config-name configs, warmup data, Python caches.
_NOT_VERSIONS = {"configs", "warmup", "__pycache__"}
_PLACEHOLDER = re.compile(r"\$\{([^}\n]*)\}?")
_PARSE_PREFIX = re.compile(r"^\d+:\d+ : (?:'[^\n]*?': )?")
_UNKNOWN_FIELD = re.compile(r'Message type "inference\.(\w+)" has no field named "(\w+)"')
_UNKNOWN_ENUM = re.compile(r'Enum type "inference\.([\w.]+)" has no value named (\w+)')


def read_model(view: RepositoryView, name: str, sink: Sink) -> ModelEntry:
    """Return one model folder as a ModelEntry, reporting unparsable config text into ``sink``."""
    folder = f"{view.root_name}/{name}"
    raw = view.config_text(name)
    entry = ModelEntry(name=name, folder=folder, config=None, locator=Locator(""),
                       has_config_file=raw is not None)
    _read_versions(view, entry, sink)
    if raw is None:
        return entry
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        sink.add(Problem(f"config.pbtxt is not UTF-8 text ({exc.reason} at byte {exc.start})",
                         path=entry.config_path, line=1, col=1, model=name,
                         hint="save the file as UTF-8"))
        return entry
    entry.locator = Locator(text)
    entry.config = _parse(text, entry, sink)
    return entry


def _read_versions(view: RepositoryView, entry: ModelEntry, sink: Sink) -> None:
    for folder in view.version_dirs(entry.name):
        if folder.isdigit() and (folder == "0" or not folder.startswith("0")):
            entry.versions[int(folder)] = view.version_files(entry.name, folder)
        elif not folder.startswith(".") and folder not in _NOT_VERSIONS:
            why = "has a leading zero" if folder.isdigit() else "is not a number"
            sink.warning(entry, (), f"folder '{folder}' is ignored by Triton: its name {why}",
                         hint="version folders are named 1, 2, 3 ...; move or rename it",
                         path=f"{entry.folder}/{folder}")


def _parse(text: str, entry: ModelEntry, sink: Sink) -> Optional[ModelConfig]:
    from google.protobuf import text_format

    placeholders = _find_placeholders(text)
    breaking = {p.line for p in placeholders if not p.quoted}
    for found in placeholders:
        if not found.quoted:  # each one stops the parser: an error where it stands
            sink.add(Problem(f"template placeholder '{found.text}' was never filled in", path=entry.config_path,
                             line=found.line, col=found.col, model=entry.name, severity="error",
                             hint=f"replace it with a value (e.g. run fill_template.py with "
                                  f"'{found.name}:<value>')"))
    try:
        config = parse_config(text)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        _report_quoted(placeholders, None, entry, sink)
        if line is not None and line in breaking:
            return None  # already reported as a leftover placeholder, at this very line
        message = _PARSE_PREFIX.sub("", str(exc)).rstrip(".")
        sink.add(Problem(f"config.pbtxt does not parse as Triton's ModelConfig: {message}",
                         path=entry.config_path, line=line, col=col, model=entry.name,
                         hint=_parse_hint(message)))
        return None
    _report_quoted(placeholders, config, entry, sink)
    return config


@dataclass(frozen=True)
class _Placeholder:
    text: str
    name: str
    line: int
    col: int
    quoted: bool


def _find_placeholders(text: str) -> list[_Placeholder]:
    """Every ``${...}`` left from a template, outside comments, with whether it sits inside a string."""
    found = []
    for number, line_text in enumerate(text.splitlines(), start=1):
        code = line_text[: _comment_start(line_text)]
        for match in _PLACEHOLDER.finditer(code):
            before = code[: match.start()]
            quoted = before.count('"') % 2 == 1 or before.count("'") % 2 == 1
            found.append(_Placeholder(match.group(0), match.group(1), number, match.start() + 1, quoted))
    return found


def _comment_start(line: str) -> int:
    """The index of the ``#`` that starts a comment on ``line`` (outside quotes), or the line's length."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote and line[index - 1] != "\\":
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return index
    return len(line)


def _report_quoted(placeholders: list[_Placeholder], config: Optional[ModelConfig], entry: ModelEntry,
                   sink: Sink) -> None:
    """One warning for the placeholders left in strings, one note for NVIDIA's optional parameters left unset.

    A placeholder inside a string parses, and the model sees the text ``${name}`` as the value. Where
    the config is one of NVIDIA's TensorRT-LLM templates and the parameter is one it documents as
    optional, NVIDIA's code reads that text as unset: a note, not a warning (see ``_templates``).
    """
    quoted = [p for p in placeholders if p.quoted]
    optional = optional_placeholders(config)
    unset = [p for p in quoted if p.name in optional and p.text == "${" + p.name + "}"]
    others = [p for p in quoted if p not in unset]
    if others:
        first = others[0]
        if len(others) == 1:
            message = f"template placeholder '{first.text}' was never filled in"
        else:
            message = (f"{len(others)} template placeholders were never filled in: "
                       + ", ".join(f"'{p.text}' (line {p.line})" for p in others))
        fill = ",".join(f"{p.name}:<value>" for p in others[:3]) + (",..." if len(others) > 3 else "")
        sink.add(Problem(message, path=entry.config_path, line=first.line, col=first.col, model=entry.name,
                         severity="warning", hint=f"the model reads the text itself as the value: replace each "
                                                  f"with a value (e.g. fill_template.py with '{fill}')"))
    if unset:
        model = nvidia_template(config)
        names = sorted({p.name for p in unset})
        left = "are left as placeholders" if len(names) != 1 else "is left as a placeholder"
        sink.add(Problem(f"{len(names)} optional parameter{'s' * (len(names) != 1)} of NVIDIA's {model} "
                         f"template {left}, which NVIDIA's code reads as unset (its default applies): "
                         f"{', '.join(names)}",
                         path=entry.config_path, line=unset[0].line, col=unset[0].col, model=entry.name,
                         severity="note", hint="fill one (fill_template.py '<name>:<value>') only to change its "
                                               "default; tensorrtllm_backend's docs/model_config.md lists them"))


def _parse_hint(message: str) -> str:
    from tritonclient.grpc import model_config_pb2

    field_match = _UNKNOWN_FIELD.search(message)
    if field_match:
        descriptor = model_config_pb2.DESCRIPTOR.message_types_by_name.get(field_match.group(1))
        names = [f.name for f in descriptor.fields] if descriptor is not None else []
        close = difflib.get_close_matches(field_match.group(2), names, n=1)
        return f"did you mean '{close[0]}'?" if close else "remove the field; see model_config.proto"
    enum_match = _UNKNOWN_ENUM.search(message)
    if enum_match:
        return _enum_hint(enum_match.group(1), enum_match.group(2))
    if "oneof" in message:
        return "a model has one scheduler: keep only one of dynamic_batching, sequence_batching, " \
               "ensemble_scheduling"
    return "fix the syntax at this position; see model_config.proto for the schema"


def _enum_hint(enum_path: str, value: str) -> str:
    from tritonclient.grpc import model_config_pb2

    descriptor = None
    head, _, tail = enum_path.partition(".")
    if tail:
        message = model_config_pb2.DESCRIPTOR.message_types_by_name.get(head)
        descriptor = message.enum_types_by_name.get(tail) if message is not None else None
    else:
        descriptor = model_config_pb2.DESCRIPTOR.enum_types_by_name.get(head)
    names = [v.name for v in descriptor.values] if descriptor is not None else []
    close = difflib.get_close_matches(value, names, n=1)
    if close:
        return f"did you mean {close[0]}?"
    return f"use one of: {', '.join(names)}" if names else "see model_config.proto for the values"
