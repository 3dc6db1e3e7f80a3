"""Which version folders Triton loads under a model's ``version_policy`` (core ``model_lifecycle.cc``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

__all__ = ["loaded_versions"]


def loaded_versions(policy: Optional[Any], found: Iterable[int]) -> list[int]:
    """Return the versions of ``found`` that ``policy`` (a ``ModelVersionPolicy``, or None) loads, ascending.

    No policy, or an unset one, means ``latest { num_versions: 1 }``; ``num_versions`` below 1 counts as 1.
    """
    versions = sorted(found)
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice == "all":
        return versions
    if choice == "specific":
        wanted = set(policy.specific.versions) if policy is not None else set()
        return [v for v in versions if v in wanted]
    count = policy.latest.num_versions if choice == "latest" and policy is not None else 1
    return versions[-max(count, 1):]
