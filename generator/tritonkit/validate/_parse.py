"""Read each model folder of a repository: parse config.pbtxt against Triton's schema, list versions."""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Optional

from tritonkit.errors import Problem
from tritonkit.triton import parse_config
from tritonkit.validate._locate import Locator
from tritonkit.validate._report import ModelEntry, Sink
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

    placeholders = _report_placeholders(text, entry, sink)
    try:
        config = parse_config(text)
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        if line is not None and line in placeholders:
            return None  # already reported as a leftover placeholder, at this very line
        message = _PARSE_PREFIX.sub("", str(exc)).rstrip(".")
        sink.add(Problem(f"config.pbtxt does not parse as Triton's ModelConfig: {message}",
                         path=entry.config_path, line=line, col=col, model=entry.name,
                         hint=_parse_hint(message)))
        return None
    return config


def _report_placeholders(text: str, entry: ModelEntry, sink: Sink) -> set[int]:
    """Report ``${...}`` left from a template; return the lines where one breaks parsing."""
    breaking: set[int] = set()
    for number, line_text in enumerate(text.splitlines(), start=1):
        for match in _PLACEHOLDER.finditer(line_text):
            before = line_text[: match.start()]
            quoted = before.count('"') % 2 == 1 or before.count("'") % 2 == 1
            problem = Problem(
                f"template placeholder '{match.group(0)}' was never filled in",
                path=entry.config_path, line=number, col=match.start() + 1, model=entry.name,
                hint=f"replace it with a value (e.g. run fill_template.py with '{match.group(1)}:<value>')",
                severity="warning" if quoted else "error")
            sink.add(problem)
            if not quoted:
                breaking.add(number)
    return breaking


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
