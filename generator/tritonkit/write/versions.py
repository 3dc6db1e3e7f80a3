"""Choose each model's version: unchanged models keep theirs, changed ones get the next number."""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.model.types import ModelUnit
from tritonkit.render.repository import model_digest
from tritonkit.triton import loaded_versions

__all__ = ["VersionDecision", "decide_versions"]


@dataclass(frozen=True)
class VersionDecision:
    """The version a model is served from now, the versions whose folders stay, and all digests."""

    current: int
    kept: tuple[int, ...]
    digests: dict[int, str]
    missing: tuple[int, ...] = ()


def _kept(policy: pb.ModelVersionPolicy, known: list[int], current: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Version folders to keep on disk: those the policy loads, the current one, and the one before it.

    The one before stays even when the policy does not load it (an LLM's default loads the newest only),
    so that a rollback, ``specific: {versions: [<previous>]}``, always has a folder to point at.
    """
    loaded = set(loaded_versions(policy, known))
    previous = max((v for v in known if v < current), default=None)
    missing = tuple(sorted(set(policy.specific.versions) - set(known)))
    return tuple(v for v in known if v in loaded or v in (current, previous)), missing


def decide_versions(unit: ModelUnit, previous: dict[int, str]) -> VersionDecision:
    """Decide the version folders of ``unit`` given the digests recorded by earlier runs."""
    digest = model_digest(unit)
    digests = dict(previous)
    if not digests:
        current = 1
    else:
        newest = max(digests)
        current = newest if digests[newest] == digest else newest + 1
    digests[current] = digest
    known = sorted(digests)
    kept, missing = _kept(unit.config.version_policy, known, current)
    return VersionDecision(current=current, kept=kept,
                           digests={v: d for v, d in digests.items() if v in kept}, missing=missing)
