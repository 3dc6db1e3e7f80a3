"""Engine profiles: what one decode step costs an engine beyond the memory and compute bound, measured."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from tritonkit.capacity.architecture import PlanError
from tritonkit.errors import Problem

__all__ = ["EngineProfile", "engine_names", "engine_profile"]


@dataclass(frozen=True)
class EngineProfile:
    """Per-step costs of one engine kind, with where the figures come from."""

    name: str
    fixed_ms: float
    per_sequence_ms: float
    source: str


def _data() -> dict[str, dict[str, object]]:
    text = resources.files("tritonkit.capacity").joinpath("engines.json").read_text(encoding="utf-8")
    data: dict[str, dict[str, object]] = json.loads(text)
    return data


def engine_names() -> tuple[str, ...]:
    """The engine kinds with a profile."""
    return tuple(_data())


def engine_profile(name: str) -> EngineProfile:
    """Return the profile of engine ``name``.

    Raises:
        PlanError: no profile has that name.

    """
    data = _data()
    if name not in data:
        raise PlanError(Problem(f"no engine profile is named {name!r}", path="--engine",
                                hint=f"use one of: {', '.join(data)}"))
    entry = data[name]
    return EngineProfile(name, float(str(entry["fixed_ms"])), float(str(entry["per_sequence_ms"])),
                         str(entry["source"]))
