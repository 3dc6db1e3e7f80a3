"""Rules an ensemble obeys on its own: scheduling, forbidden fields, and the data flow of its steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["check_ensemble_config"]

_STEP = ("ensemble_scheduling", "step")


@dataclass
class _Tensor:
    name: str
    produced_by: Optional[int] = None
    ready: bool = False
    prev: list[_Tensor] = field(default_factory=list)
    next: list[_Tensor] = field(default_factory=list)


def check_ensemble_config(entry: ModelEntry, sink: Sink) -> None:
    """Check an ensemble's own config the way Triton does before it looks at any step's model."""
    config = entry.config
    assert config is not None
    is_ensemble = config.platform == "ensemble"
    if config.HasField("ensemble_scheduling") and not is_ensemble:
        sink.error(entry, ("ensemble_scheduling",),
                   f"ensemble scheduling cannot be set for model '{entry.name}' whose platform is not "
                   "ensemble", hint="set platform: \"ensemble\" (and no backend)")
        return
    if not is_ensemble:
        return
    if not config.HasField("ensemble_scheduling"):
        sink.error(entry, ("platform",),
                   f"ensemble scheduling must be set for ensemble {entry.name} whose platform is ensemble",
                   hint="add ensemble_scheduling { step [ ... ] }")
        return
    if not _check_forbidden(entry, sink, config):
        return
    if not config.ensemble_scheduling.step:
        sink.error(entry, ("ensemble_scheduling",), f"must specify 'step' for ensemble '{entry.name}'",
                   hint="add at least one step with model_name, model_version, input_map and output_map")
        return
    tensors = _build_graph(entry, sink, config)
    if tensors is not None:
        _check_flow(entry, sink, config, tensors)


def _check_forbidden(entry: ModelEntry, sink: Sink, config: Any) -> bool:
    for name, what in (("instance_group", "instance group should not be specified"),
                       ("optimization", "optimization should not be specified"),
                       ("model_warmup", "model_warmup can not be specified")):
        present = bool(getattr(config, name)) if name != "optimization" else config.HasField(name)
        if present:
            sink.error(entry, (name,), f"{what} for ensemble '{entry.name}'",
                       hint=f"remove {name}: an ensemble runs no model of its own; set it on the step models")
            return False
    return True


def _build_graph(entry: ModelEntry, sink: Sink, config: Any) -> Optional[dict[str, _Tensor]]:
    tensors: dict[str, _Tensor] = {}
    for index, step in enumerate(config.ensemble_scheduling.step):
        for attr in ("model_name", "input_map", "output_map"):
            if not getattr(step, attr):
                sink.error(entry, (*_STEP, index), f"must specify '{attr}' in step {index} of ensemble "
                                                   f"'{entry.name}'", hint=f"give the step a {attr}")
                return None
        produced: list[_Tensor] = []
        for key, target in sorted(step.output_map.items()):
            tensor = tensors.setdefault(target, _Tensor(target))
            if tensor.produced_by is not None:
                sink.error(entry, (*_STEP, index, "output_map", key),
                           f"ensemble tensor '{target}' can appear in an output map only once for ensemble "
                           f"'{entry.name}' step {index} (step {tensor.produced_by} writes it too)",
                           hint="every ensemble tensor has exactly one producer; rename one of them")
                return None
            tensor.produced_by = index
            produced.append(tensor)
        for target in sorted(step.input_map.values()):
            source = tensors.setdefault(target, _Tensor(target))
            for tensor in produced:
                tensor.prev.append(source)
                source.next.append(tensor)
    return tensors


def _check_flow(entry: ModelEntry, sink: Sink, config: Any, tensors: dict[str, _Tensor]) -> None:
    queue: list[_Tensor] = []
    for index, tensor_config in enumerate(config.input):
        tensor = tensors.get(tensor_config.name)
        if tensor is None:
            sink.error(entry, ("input", index), f"ensemble input '{tensor_config.name}' for ensemble "
                                                f"'{entry.name}' is not used",
                       hint=_unused_input_hint(config, tensor_config.name))
            continue
        tensor.ready = True
        queue.append(tensor)
    while queue:
        for following in queue.pop(0).next:
            if not following.ready and all(t.ready for t in following.prev):
                following.ready = True
                queue.append(following)
    outputs, broken = _check_outputs(entry, sink, config, tensors)
    for name, tensor in sorted(tensors.items()):
        if name in outputs or (broken and not tensor.ready):
            continue  # a tensor upstream of an unwritten output is reported with that output
        if not tensor.ready or not tensor.next:
            cycle = [] if tensor.ready else _cycle_through(tensor)
            sink.error(entry, _producer_where(tensor, name),
                       f"ensemble tensor '{name}' is unused in ensemble '{entry.name}'",
                       hint=f"the steps form a cycle through {' -> '.join(cycle)}, so it is never computed"
                       if cycle else "feed it to a step or list it as an ensemble output; "
                                     "a typo in a map value often causes this")


def _check_outputs(entry: ModelEntry, sink: Sink, config: Any,
                   tensors: dict[str, _Tensor]) -> tuple[set[str], bool]:
    outputs: set[str] = set()
    broken = False
    for index, tensor_config in enumerate(config.output):
        tensor = tensors.get(tensor_config.name)
        if tensor is None:
            sink.error(entry, ("output", index), f"ensemble output '{tensor_config.name}' for ensemble "
                                                 f"'{entry.name}' is not used",
                       hint="map a step output to it in some output_map (value side)")
        elif not tensor.ready:
            source = _unready_source(tensor)
            detail = "" if source is tensor else \
                f": at least one of its depending tensors, '{source.name}', is not connected"
            cycle = _cycle_through(tensor)
            hint = f"the steps form a cycle through {' -> '.join(cycle)}" if cycle else \
                "every tensor a step reads must be an ensemble input or another step's output"
            sink.error(entry, ("output", index),
                       f"output '{tensor_config.name}' for ensemble '{entry.name}' is not written{detail}",
                       hint=hint)
            broken = True
        else:
            outputs.add(tensor_config.name)
    return outputs, broken


def _unused_input_hint(config: Any, name: str) -> str:
    for index, step in enumerate(config.ensemble_scheduling.step):
        if name in step.input_map:
            return (f"step {index} has it as an input_map key: a map is {{ key: <input of "
                    f"'{step.model_name}'> value: <ensemble tensor> }}, so key and value look swapped")
    return "map it in some step's input_map (value side), or remove it"


def _unready_source(tensor: _Tensor) -> _Tensor:
    seen: set[str] = set()
    last, prev = tensor, tensor.prev
    while prev:
        nodes, prev = prev, []
        for node in nodes:
            if not node.ready and node.name not in seen:
                seen.add(node.name)
                last, prev = node, node.prev
                break
    return last


def _cycle_through(start: _Tensor) -> list[str]:
    """Return tensor names of a cycle among not-ready tensors reachable upstream of ``start``."""
    path: list[_Tensor] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: _Tensor) -> list[str]:
        if node.name in on_path:
            names = [t.name for t in path[[t.name for t in path].index(node.name):]]
            return list(reversed([*names, node.name]))
        if node.name in done or node.ready:
            return []
        path.append(node)
        on_path.add(node.name)
        for prev in node.prev:
            found = visit(prev)
            if found:
                return found
        path.pop()
        on_path.discard(node.name)
        done.add(node.name)
        return []

    return visit(start)


def _producer_where(tensor: _Tensor, name: str) -> tuple[Any, ...]:
    if tensor.produced_by is None:
        return ("ensemble_scheduling",)
    return (*_STEP, tensor.produced_by, "output_map")
