"""Rules between an ensemble and the models of its steps: existence, versions, maps, types, shapes."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["check_ensemble_links"]

_STEP = ("ensemble_scheduling", "step")


@dataclass
class _Node:
    """An ensemble tensor as Triton's ensemble_utils.cc sees it: type, shape, and decoupled label."""

    model: str
    dtype: int
    dims: list[int]
    full_dims: list[int]
    decoupled: bool = False
    label: int = 0
    visited: bool = False
    prev: list[_Node] = field(default_factory=list)
    next: list[_Node] = field(default_factory=list)
    sibling: Optional[list[Any]] = None  # shared [visited, label] of one step's outputs


def _node(model: str, batching: bool, dtype: int, dims: list[int]) -> _Node:
    return _Node(model, dtype, dims, ([-1] if batching else []) + dims)


def check_ensemble_links(entry: ModelEntry, models: dict[str, ModelEntry], broken: set[str],
                         sink: Sink) -> None:
    """Check an ensemble against its step models; models in ``broken`` already failed on their own."""
    config = entry.config
    assert config is not None
    batching = config.max_batch_size > 0
    tensors: dict[str, _Node] = {}
    for tensor in config.input:
        dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
        tensors[tensor.name] = _node(entry.name, batching, tensor.data_type, dims)
    for tensor in config.output:
        dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
        tensors.setdefault(tensor.name, _node(entry.name, batching, tensor.data_type, dims))
    steps = list(enumerate(config.ensemble_scheduling.step))
    missing = [(index, step.model_name) for index, step in steps if step.model_name not in models]
    for index, name in missing:
        sink.error(entry, (*_STEP, index, "model_name"),
                   f"ensemble '{entry.name}' depends on '{name}' which is not in the model repository",
                   hint=_missing_hint(name, models))
    if missing:
        return
    for index, step in steps:
        target = _step_model(entry, models, broken, sink, index, step)
        if target is None or not _check_step(entry, sink, index, step, target, tensors):
            return
    _check_decoupled(entry, sink, config, tensors)


def _missing_hint(name: str, models: dict[str, ModelEntry]) -> str:
    close = difflib.get_close_matches(name, list(models), n=1)
    return f"did you mean '{close[0]}'?" if close else f"add a model folder '{name}', or fix the model_name"


def _step_model(entry: ModelEntry, models: dict[str, ModelEntry], broken: set[str], sink: Sink,
                index: int, step: Any) -> Optional[ModelEntry]:
    target = models[step.model_name]
    if step.model_name in broken or target.config is None:
        return None  # its own errors are reported at its own config; Triton fails this ensemble too
    available = target.available_versions()
    if step.model_version != -1 and step.model_version not in available:
        have = ", ".join(map(str, available)) or "none"
        sink.error(entry, (*_STEP, index, "model_version"),
                   f"ensemble '{entry.name}' depends on '{step.model_name}' whose required version "
                   f"{step.model_version} is not loaded (loaded: {have})",
                   hint="use model_version: -1 for the latest version" if step.model_version == 0 else
                   f"add {target.folder}/{step.model_version}/ or use model_version: -1")
        return None
    return target


def _check_step(entry: ModelEntry, sink: Sink, index: int, step: Any, target: ModelEntry,
                tensors: dict[str, _Node]) -> bool:
    model = target.config
    assert model is not None and entry.config is not None
    if model.max_batch_size != 0 and model.max_batch_size < entry.config.max_batch_size:
        sink.error(entry, ("max_batch_size",),
                   f"ensemble {entry.name} allows maximum batch size {entry.config.max_batch_size}, but "
                   f"it contains model {target.name} which only allows maximum batch size to be "
                   f"{model.max_batch_size}", hint=f"lower the ensemble's max_batch_size to at most "
                                                   f"{model.max_batch_size}")
        return False
    return _map_inputs(entry, sink, index, step, target, tensors) and \
        _map_outputs(entry, sink, index, step, target, tensors)


def _map_inputs(entry: ModelEntry, sink: Sink, index: int, step: Any, target: ModelEntry,
                tensors: dict[str, _Node]) -> bool:
    model = target.config
    assert model is not None
    names = [t.name for t in model.input]
    for key, value in sorted(step.input_map.items()):
        if key not in names and target.auto_complete:
            _warn_auto_complete(entry, sink, (*_STEP, index, "input_map", key), "input", key, target)
            tensors.setdefault(value, _unknown(target.name))
        elif key not in names:
            sink.error(entry, (*_STEP, index, "input_map", key),
                       f"in ensemble {entry.name}, ensemble tensor {value} is mapping to non-existing input "
                       f"{key} in model {target.name}",
                       hint=f"input_map keys are {target.name}'s inputs: {', '.join(names) or 'none'}")
            return False
    for tensor in model.input:
        if tensor.name not in step.input_map:
            if tensor.optional:
                continue
            sink.error(entry, (*_STEP, index, "input_map"),
                       f"in ensemble {entry.name}, input {tensor.name} in model {target.name} is not mapped "
                       "to any ensemble tensors", hint=f"add input_map {{ key: \"{tensor.name}\" value: ... }}")
            return False
        value = step.input_map[tensor.name]
        node = _node(target.name, model.max_batch_size > 0, tensor.data_type, list(tensor.dims))
        if not _merge(entry, sink, (*_STEP, index, "input_map", tensor.name), tensors, value, node):
            return False
    return True


def _map_outputs(entry: ModelEntry, sink: Sink, index: int, step: Any, target: ModelEntry,
                 tensors: dict[str, _Node]) -> bool:
    model = target.config
    assert model is not None
    by_name = {t.name: t for t in model.output}
    sibling: list[Any] = [False, 0]
    for key, value in sorted(step.output_map.items()):
        tensor = by_name.get(key)
        if tensor is None and target.auto_complete:
            _warn_auto_complete(entry, sink, (*_STEP, index, "output_map", key), "output", key, target)
            node = tensors.setdefault(value, _unknown(target.name))
            node.sibling, node.decoupled = sibling, target.decoupled
            continue
        if tensor is None:
            sink.error(entry, (*_STEP, index, "output_map", key),
                       f"in ensemble {entry.name}, ensemble tensor {value} is mapped from non-existing output "
                       f"{key} in model {target.name}",
                       hint=f"output_map keys are {target.name}'s outputs: {', '.join(by_name) or 'none'}")
            return False
        node = _node(target.name, model.max_batch_size > 0, tensor.data_type, list(tensor.dims))
        if not _merge(entry, sink, (*_STEP, index, "output_map", key), tensors, value, node):
            return False
        tensors[value].sibling = sibling
        tensors[value].decoupled = target.decoupled
    for value in step.output_map.values():
        for source in step.input_map.values():
            tensors[value].prev.append(tensors[source])
            tensors[source].next.append(tensors[value])
    return True


def _unknown(model: str) -> _Node:
    """A tensor of a model whose config leaves it to auto_complete_config: type and shape unknown."""
    return _Node(model, 0, [], [])


def _warn_auto_complete(entry: ModelEntry, sink: Sink, where: tuple[Any, ...], kind: str, name: str,
                        target: ModelEntry) -> None:
    sink.warning(entry, where, f"{kind} '{name}' is not in {target.name}'s config.pbtxt; its model.py's "
                               "auto_complete_config may add it when the model loads",
                 hint=f"list {kind} '{name}' in {target.config_path} so that the ensemble can be checked")


def _merge(entry: ModelEntry, sink: Sink, where: tuple[Any, ...], tensors: dict[str, _Node], name: str,
           node: _Node) -> bool:
    known = tensors.get(name)
    if known is None or known.dtype == 0:  # 0: not declared yet (auto_complete_config fills it at load)
        if known is not None:
            node.prev, node.next, node.sibling, node.decoupled = known.prev, known.next, known.sibling, known.decoupled
        tensors[name] = node
        return True
    from tritonclient.grpc import model_config_pb2

    if known.dtype != node.dtype:
        names = model_config_pb2.DataType.Name
        sink.error(entry, where, f"in ensemble {entry.name}, ensemble tensor {name}: inconsistent data type: "
                                 f"{names(known.dtype)} is inferred from model {known.model} while "
                                 f"{names(node.dtype)} is inferred from model {node.model}",
                   hint="make both sides use the same data_type")
        return False
    if not _same_dims(known.dims, node.dims) and not _same_dims(known.full_dims, node.full_dims):
        sink.error(entry, where, f"in ensemble {entry.name}, ensemble tensor {name}: inconsistent shape: "
                                 f"{_show(known.full_dims)} is inferred from model {known.model} while "
                                 f"{_show(node.full_dims)} is inferred from model {node.model}",
                   hint="make the dims agree (-1 matches any size); the batch dimension is not in dims")
        return False
    return True


def _same_dims(left: list[int], right: list[int]) -> bool:
    return len(left) == len(right) and all(a == b or a == -1 or b == -1 for a, b in zip(left, right))


def _show(dims: list[int]) -> str:
    return "[" + ",".join(map(str, dims)) + "]"


def _outputs_node(entry: ModelEntry, config: Any, tensors: dict[str, _Node]) -> _Node:
    """The sink node core makes: the ensemble's own, fed by every ensemble output."""
    outputs = _Node(entry.name, 0, [], [])
    for tensor in config.output:
        node = tensors.get(tensor.name)
        if node is not None:
            node.next.append(outputs)
            outputs.prev.append(node)
    return outputs


def _mixed_decoupled(entry: ModelEntry, sink: Sink, node: _Node, at_outputs: bool) -> None:
    hint = ("the ensemble's outputs come from different decoupled steps (or from a decoupled and a "
            "non-decoupled one), whose responses Triton cannot pair up: take every output from one decoupled "
            "step, or split the ensemble") if at_outputs else \
        "a step may read the outputs of one decoupled model only, and not mix them with tensors that did not " \
        "pass through it"
    sink.error(entry, ("output",) if at_outputs else ("ensemble_scheduling",),
               f"in ensemble {entry.name}, step of model '{node.model}' receives inputs originated from "
               "different decoupled models", hint=hint)


def _check_decoupled(entry: ModelEntry, sink: Sink, config: Any, tensors: dict[str, _Node]) -> None:
    """Label each tensor with the decoupled step it descends from, as ensemble_utils.cc does.

    Core joins every ensemble output to one sink node of the ensemble itself, so outputs that come from
    two decoupled steps (or from a decoupled and a plain one) are refused like a step's mixed inputs,
    in the ensemble's own name.
    """
    labels = 0
    outputs = _outputs_node(entry, config, tensors)
    queue = [tensors[t.name] for t in config.input if t.name in tensors]
    for node in queue:
        node.visited = True
    while queue:
        for following in queue.pop(0).next:
            if following.visited or not all(p.visited for p in following.prev):
                continue
            first = following.prev[0].label
            if any(p.label != first for p in following.prev):
                _mixed_decoupled(entry, sink, following, following is outputs)
                return
            if following.sibling is not None and following.sibling[0]:
                following.label = following.sibling[1]
            else:
                if following.decoupled:
                    labels += 1
                following.label = labels if following.decoupled else first
                if following.sibling is not None:
                    following.sibling[:] = [True, following.label]
            following.visited = True
            queue.append(following)
    if labels:
        entry.decoupled = True  # core marks the ensemble decoupled; an outer ensemble sees it so
        sink.warning(entry, ("name",), f"ensemble '{entry.name}' contains a decoupled model, so Triton "
                                       "makes the ensemble decoupled",
                     hint="call it with gRPC streaming or HTTP generate_stream, not HTTP infer")
