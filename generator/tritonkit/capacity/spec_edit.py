"""Put a plan's (or tune's) values into an entry of a YAML spec by editing its text, so comments and layout stay."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

import yaml

from tritonkit.capacity.architecture import PlanError
from tritonkit.capacity.estimate import GpuPlan
from tritonkit.errors import Problem

__all__ = ["SpecChange", "SpecEdit", "SpecValues", "edit_entry_text", "edit_spec_text", "spec_values"]

_Pair = tuple[yaml.Node, yaml.Node]
#: A key path inside an entry (``("dynamic_batching", "max_queue_delay_microseconds")``, ``("instance_group",
#: 0, "count")``) and its new YAML text, or None to remove the key.
Setting = tuple[tuple[Union[str, int], ...], Optional[str]]


@dataclass(frozen=True)
class SpecValues:
    """The values ``plan --write`` sets in an ``llms:`` entry."""

    tensor_parallel_size: int
    max_batch_size: int
    free_gpu_memory_fraction: float
    max_tokens: int
    #: Replicas the plan needs; the LLM-API kind runs them as instances of one server (gpu_device_ids).
    replicas: int = 1

    @property
    def gpus(self) -> list[int]:
        """The GPUs of one replica: 0 .. tensor_parallel_size - 1."""
        return list(range(self.tensor_parallel_size))

    @property
    def max_num_tokens(self) -> int:
        """Tokens per scheduled batch for TensorRT-LLM: its usual 8192, or one token per sequence if more."""
        return max(8192, self.max_batch_size)


def spec_values(plan: GpuPlan) -> SpecValues:
    """Return the spec values of a GPU plan (engine layouts: one replica per host, further ones are hosts)."""
    return SpecValues(plan.tensor_parallel, plan.max_batch_size, plan.kv_free_gpu_memory_fraction,
                      plan.kv_max_tokens, plan.replicas)


@dataclass(frozen=True)
class SpecChange:
    """One key set by the edit: where, the old text (None when the key was added) and the new text."""

    key: str
    old: Optional[str]
    new: str
    line: int


@dataclass(frozen=True)
class SpecEdit:
    """The edited text and what changed in it."""

    text: str
    changes: tuple[SpecChange, ...]


@dataclass(frozen=True)
class _Splice:
    start: int
    end: int
    text: str
    order: int


class _Editor:
    """Collects splices against the original text, then applies them from the end backwards."""

    def __init__(self, text: str, prefix: str) -> None:
        self.text = text if text.endswith("\n") else text + "\n"
        self.prefix = prefix
        self.splices: list[_Splice] = []
        self.changes: list[SpecChange] = []

    def splice(self, span: tuple[int, int], new: str, change: tuple[str, Optional[str], str, int]) -> None:
        self.splices.append(_Splice(span[0], span[1], new, len(self.splices)))
        key, old, value, line = change
        self.changes.append(SpecChange(f"{self.prefix}.{key}", old, value, line))

    def set_scalar(self, mapping: yaml.MappingNode, key: str, value: str, where: str) -> None:
        pair = _find(mapping, key)
        if pair is None:
            self.insert(mapping, key, value, where)
            return
        node = pair[1]
        old = self.text[node.start_mark.index:_content_end(node)]
        if old != value:
            self.splice((node.start_mark.index, _content_end(node)), value,
                        (f"{where}{key}", old, value, node.start_mark.line + 1))

    def replace_value(self, pair: _Pair, value: str, where: str) -> None:
        key_node, node = pair
        old = self.text[node.start_mark.index:_content_end(node)]
        self.splice((key_node.end_mark.index, _content_end(node)), f": {value}",
                    (f"{where}{key_node.value}", old, value, key_node.start_mark.line + 1))

    def insert(self, mapping: yaml.MappingNode, key: str, value: str, where: str) -> None:
        line = mapping.start_mark.line + 1
        if mapping.flow_style:
            close = _content_end(mapping) - 1
            text = f", {key}: {value}" if mapping.value else f"{key}: {value}"
            self.splice((close, close), text, (f"{where}{key}", None, value, line))
            return
        indent = mapping.value[0][0].start_mark.column
        at = self.text.find("\n", _content_end(mapping.value[-1][1]))
        at = len(self.text) if at < 0 else at + 1
        self.splice((at, at), f"{' ' * indent}{key}: {value}\n",
                    (f"{where}{key}", None, value, self.text.count("\n", 0, at) + 1))

    def remove(self, mapping: yaml.MappingNode, pair: _Pair, where: str) -> None:
        """Remove one key: its whole lines in a block mapping, the key and a comma in a flow one."""
        key_node, node = pair
        start, end = key_node.start_mark.index, _content_end(node)
        if mapping.flow_style:
            tail = re.match(r"\s*,\s*", self.text[end:])
            head = None if tail else re.search(r",\s*$", self.text[:start])
            end, start = (end + tail.end() if tail else end), (head.start() if head else start)
        else:
            line_start = self.text.rfind("\n", 0, start) + 1
            if not self.text[line_start:start].strip():
                start = line_start
            newline = self.text.find("\n", end)
            end = len(self.text) if newline < 0 else newline + 1
        old = self.text[node.start_mark.index:_content_end(node)]
        self.splice((start, end), "", (f"{where}{key_node.value}", old, "(removed)", key_node.start_mark.line + 1))

    def result(self) -> str:
        text = self.text
        for item in sorted(self.splices, key=lambda s: (s.start, s.order), reverse=True):
            text = text[:item.start] + item.text + text[item.end:]
        return text


def _find(mapping: yaml.MappingNode, key: str) -> Optional[_Pair]:
    return next(((k, v) for k, v in mapping.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _name_of(entry: yaml.MappingNode) -> Optional[str]:
    pair = _find(entry, "name")
    return str(pair[1].value) if pair is not None and isinstance(pair[1], yaml.ScalarNode) else None


def _content_end(node: yaml.Node) -> int:
    """End of a node's own text: block collections end at their last child, not at the next token."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False) or not node.value:
        return int(node.end_mark.index)
    last = node.value[-1]
    return _content_end(last[1] if isinstance(last, tuple) else last)


def _flow(values: dict[str, str]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in values.items()) + "}"


def _compose(text: str, path: str) -> yaml.Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise PlanError(Problem(f"not valid YAML: {exc.problem}", path=path,
                                line=mark.line + 1 if mark else None,
                                col=mark.column + 1 if mark else None)) from None
    if not isinstance(root, yaml.MappingNode):
        raise PlanError(Problem("a spec is a YAML mapping with an llms: section", path=path, line=1))
    return root


def _select_llm(root: yaml.MappingNode, path: str, llm: Optional[str]) -> tuple[int, yaml.MappingNode]:
    pair = _find(root, "llms")
    if pair is None or not isinstance(pair[1], yaml.SequenceNode) or not pair[1].value:
        line = pair[0].start_mark.line + 1 if pair else 1
        raise PlanError(Problem("spec has no llms: entries to write the plan into", path=path, line=line,
                                hint="add an llms: entry (see tritonkit init) or drop --write"))
    entries = [node for node in pair[1].value if isinstance(node, yaml.MappingNode)]
    names = [_name_of(node) or "?" for node in entries]
    if llm is None and len(entries) == 1:
        return 0, entries[0]
    if llm is not None and llm in names:
        return names.index(llm), entries[names.index(llm)]
    what = f"no llms: entry is named {llm!r}" if llm is not None else "spec has several llms: entries"
    raise PlanError(Problem(what, path=path, line=pair[0].start_mark.line + 1,
                            hint=f"pass --llm with one of: {', '.join(names)}"))


def edit_spec_text(text: str, values: SpecValues, *, path: str = "spec.yaml",
                   llm: Optional[str] = None) -> SpecEdit:
    """Return ``text`` with ``values`` set in one ``llms:`` entry, every other byte kept.

    Raises:
        PlanError: the text is not YAML, has no ``llms:`` entry, the entry has no engine, or ``llm``
            names no entry (or is needed to choose between several).

    """
    root = _compose(text, path)
    assert isinstance(root, yaml.MappingNode)  # _compose checked it
    index, entry = _select_llm(root, path, llm)
    editor = _Editor(text, f"llms[{_name_of(entry) or index}]")
    api = _edit_engine(editor, entry, path, values)
    editor.set_scalar(entry, "max_batch_size", str(values.max_batch_size), "")
    _edit_kv_cache(editor, entry, values)
    if api:
        _edit_api_instances(editor, entry, values)
    else:
        _edit_instance_group(editor, entry, values)
    new_text = editor.result()
    yaml.safe_load(new_text)  # an edit that breaks the YAML is a bug here: let it surface as one
    return SpecEdit(new_text, tuple(editor.changes))


def _edit_engine(editor: _Editor, entry: yaml.MappingNode, path: str, values: SpecValues) -> bool:
    """Set the engine's keys; True for TensorRT-LLM's LLM-API kind."""
    pair = _find(entry, "engine")
    if pair is None or not isinstance(pair[1], yaml.MappingNode):
        raise PlanError(Problem("llms: entry has no engine mapping", path=path,
                                line=entry.start_mark.line + 1,
                                hint="add engine: {kind: tensorrt_llm_api, model: ...} first"))
    editor.set_scalar(pair[1], "tensor_parallel_size", str(values.tensor_parallel_size), "engine.")
    kind = _find(pair[1], "kind")
    api = kind is not None and isinstance(kind[1], yaml.ScalarNode) and kind[1].value == "tensorrt_llm_api"
    if api:
        editor.set_scalar(pair[1], "max_num_tokens", str(values.max_num_tokens), "engine.")
    return api


def _edit_api_instances(editor: _Editor, entry: yaml.MappingNode, values: SpecValues) -> None:
    """The LLM-API kind: every replica an instance of this server, tp GPUs each (gpu_device_ids)."""
    gpus = "[" + ", ".join(str(g) for g in range(values.tensor_parallel_size * values.replicas)) + "]"
    flow = "[" + _flow({"count": str(values.replicas), "gpus": gpus}) + "]"
    pair = _find(entry, "instance_group")
    if pair is None:
        editor.insert(entry, "instance_group", flow, "")
    else:
        editor.replace_value(pair, flow, "")


def _edit_kv_cache(editor: _Editor, entry: yaml.MappingNode, values: SpecValues) -> None:
    settings = {"free_gpu_memory_fraction": f"{values.free_gpu_memory_fraction:.2f}",
                "max_tokens": str(values.max_tokens)}
    pair = _find(entry, "kv_cache")
    if pair is None or not isinstance(pair[1], yaml.MappingNode):
        if pair is None:
            editor.insert(entry, "kv_cache", _flow(settings), "")
        else:
            editor.replace_value(pair, _flow(settings), "")
        return
    for key, value in settings.items():
        editor.set_scalar(pair[1], key, value, "kv_cache.")


def _edit_instance_group(editor: _Editor, entry: yaml.MappingNode, values: SpecValues) -> None:
    gpus = "[" + ", ".join(str(gpu) for gpu in values.gpus) + "]"
    pair = _find(entry, "instance_group")
    groups = pair[1].value if pair is not None and isinstance(pair[1], yaml.SequenceNode) else []
    if pair is not None and len(groups) == 1 and isinstance(groups[0], yaml.MappingNode):
        editor.set_scalar(groups[0], "kind", "gpu", "instance_group[0].")
        editor.set_scalar(groups[0], "gpus", gpus, "instance_group[0].")
        return
    flow = "[" + _flow({"kind": "gpu", "count": "1", "gpus": gpus}) + "]"
    if pair is None:
        editor.insert(entry, "instance_group", flow, "")
    else:
        editor.replace_value(pair, flow, "")


def _flow_value(tree: object) -> str:
    """A settings subtree as flow YAML: ``{a: {b: 1}}``, ``[{count: 2}]`` for an index."""
    if not isinstance(tree, dict):
        return str(tree)
    if all(isinstance(key, int) for key in tree):
        return "[" + ", ".join(_flow_value(tree[key]) for key in sorted(tree)) + "]"
    return _flow({str(key): _flow_value(value) for key, value in tree.items() if value is not None})


def _settings_tree(settings: list[Setting]) -> dict[Union[str, int], object]:
    tree: dict[Union[str, int], object] = {}
    for keys, value in settings:
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})  # type: ignore[assignment]
        node[keys[-1]] = value
    return tree


def _apply_tree(editor: _Editor, mapping: yaml.MappingNode, tree: dict[Union[str, int], object], where: str) -> None:
    for key, value in tree.items():
        assert isinstance(key, str)  # indexes only follow a sequence key
        pair = _find(mapping, key)
        if value is None:
            if pair is not None:
                editor.remove(mapping, pair, where)
        elif pair is None:
            editor.insert(mapping, key, _flow_value(value), where)
        elif not isinstance(value, dict):
            if isinstance(pair[1], yaml.ScalarNode):
                editor.set_scalar(mapping, key, str(value), where)
            else:
                editor.replace_value(pair, str(value), where)
        elif isinstance(pair[1], yaml.MappingNode):
            _apply_tree(editor, pair[1], value, f"{where}{key}.")
        elif isinstance(pair[1], yaml.SequenceNode) and _items_present(pair[1], value):
            for index, subtree in value.items():
                item = pair[1].value[int(index)]
                assert isinstance(item, yaml.MappingNode) and isinstance(subtree, dict)
                _apply_tree(editor, item, subtree, f"{where}{key}[{index}].")
        else:
            editor.replace_value(pair, _flow_value(value), where)


def _items_present(sequence: yaml.SequenceNode, tree: dict[Union[str, int], object]) -> bool:
    return all(isinstance(i, int) and i < len(sequence.value) and isinstance(sequence.value[i], yaml.MappingNode)
               and isinstance(subtree, dict) for i, subtree in tree.items())


def edit_entry_text(text: str, section: str, name: str, settings: list[Setting], *,
                    path: str = "spec.yaml") -> SpecEdit:
    """Return ``text`` with ``settings`` applied to the ``section`` entry (``models`` or ``llms``) named ``name``.

    Keys that exist keep their place and comments; missing ones are added in flow style under their
    nearest existing parent; a value of None removes the key.

    Raises:
        PlanError: the text is not YAML, or has no such entry.

    """
    root = _compose(text, path)
    assert isinstance(root, yaml.MappingNode)  # _compose checked it
    pair = _find(root, section)
    entries = pair[1].value if pair is not None and isinstance(pair[1], yaml.SequenceNode) else []
    entry = next((e for e in entries if isinstance(e, yaml.MappingNode) and _name_of(e) == name), None)
    if entry is None:
        raise PlanError(Problem(f"spec has no {section}: entry named {name!r}", path=path,
                                hint="the spec changed since the run began: run again on the spec as it is"))
    editor = _Editor(text, f"{section}[{name}]")
    _apply_tree(editor, entry, _settings_tree(settings), "")
    new_text = editor.result()
    yaml.safe_load(new_text)  # an edit that breaks the YAML is a bug here: let it surface as one
    return SpecEdit(new_text, tuple(editor.changes))
