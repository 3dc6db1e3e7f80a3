"""Ensembles inside ensembles: the order Triton loads them in, and the cycles it refuses.

Triton's repository manager loads a model after every model it depends on, and refuses each
ensemble of a dependency cycle (``model_repository_manager.cc``, ``CircularDependencyCheck``).
"""

from __future__ import annotations

from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["ensemble_order"]

_STEP = ("ensemble_scheduling", "step")


def _is_ensemble(entry: ModelEntry) -> bool:
    return entry.config is not None and entry.config.HasField("ensemble_scheduling")


def _cycle(start: str, models: dict[str, ModelEntry]) -> list[str]:
    """Return the ensembles of a path start -> ... -> X that comes back to ``start``, or []."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> bool:
        entry = models.get(name)
        if entry is None or not _is_ensemble(entry) or name in seen:
            return False
        seen.add(name)
        path.append(name)
        assert entry.config is not None
        for step in entry.config.ensemble_scheduling.step:
            if step.model_name == start or visit(step.model_name):
                return True
        path.pop()
        return False

    return path if visit(start) else []


def ensemble_order(models: dict[str, ModelEntry], broken: set[str], sink: Sink) -> list[ModelEntry]:
    """Return the ensembles to check, inner ones first; report and leave out those in a cycle."""
    ensembles = {name: e for name, e in models.items() if _is_ensemble(e) and name not in broken}
    in_cycle: set[str] = set()
    for name, entry in sorted(ensembles.items()):
        path = _cycle(name, models)
        if not path:
            continue
        in_cycle.add(name)
        assert entry.config is not None
        index = next(i for i, s in enumerate(entry.config.ensemble_scheduling.step)
                     if s.model_name == (path[1] if len(path) > 1 else name))
        sink.error(entry, (*_STEP, index, "model_name"),
                   f"circular dependency between ensembles: {name} -> ... -> {path[-1]} -> {name}",
                   hint="an ensemble cannot contain itself, directly or through another ensemble")
    order: list[ModelEntry] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed or name not in ensembles or name in in_cycle:
            return
        placed.add(name)
        config = ensembles[name].config
        assert config is not None
        for step in config.ensemble_scheduling.step:
            place(step.model_name)
        order.append(ensembles[name])

    for name in sorted(ensembles):
        place(name)
    broken.update(in_cycle)
    return order
