"""A candidate through the same pipeline as ``generate``: spec -> models -> config.pbtxt -> validate.

What the server is sent is the rendered ``config.pbtxt`` of the tuned model, as JSON (Triton's load API
takes a config that way and reads the model's files from its own repository); a candidate that breaks a
load-time rule never reaches the server: its problems are recorded instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tritonkit.errors import SpecError
from tritonkit.model.repository import build_repository
from tritonkit.pipeline import REPOSITORY_DIR, Built, check_rendered, render_built
from tritonkit.spec.load import LoadedSpec
from tritonkit.triton import parse_config
from tritonkit.tune.entry import Entry, apply_candidate
from tritonkit.tune.space import Candidate

__all__ = ["Rendering", "config_json", "render_candidate"]


@dataclass(frozen=True)
class Rendering:
    """The tuned model's config as the load API takes it, or why the candidate is invalid."""

    config: Optional[str]
    problems: tuple[str, ...] = ()


def config_json(pbtxt: bytes) -> str:
    """A ``config.pbtxt`` as the JSON that Triton's load API takes in its ``config`` parameter."""
    from google.protobuf import json_format

    message = parse_config(pbtxt.decode("utf-8"))
    return str(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None))


def render_candidate(loaded: LoadedSpec, entry: Entry, candidate: Candidate, spec_name: str) -> Rendering:
    """Render and validate the whole spec with ``candidate`` in ``entry``; return the tuned model's config."""
    changed = apply_candidate(loaded, entry, candidate)
    try:
        built = Built(changed, build_repository(changed))
    except SpecError as exc:
        return Rendering(None, tuple(p.format() for p in exc.problems))
    tree = render_built(built, {}, spec_name)
    report = check_rendered(built, tree)
    if report.errors:
        return Rendering(None, tuple(p.format() for p in report.errors))
    rendered = tree[f"{REPOSITORY_DIR}/{entry.name}/config.pbtxt"]
    assert isinstance(rendered, bytes)  # render_built writes every config.pbtxt as bytes
    return Rendering(config_json(rendered))
