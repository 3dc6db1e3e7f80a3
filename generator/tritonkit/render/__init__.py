"""Triton objects to bytes: config.pbtxt through protobuf text format, templates for the rest."""

from tritonkit.render.pbtxt import parse_config, render_config
from tritonkit.render.repository import KEEP_FILE, Rendered, model_digest, render_tree

__all__ = ["KEEP_FILE", "Rendered", "model_digest", "parse_config", "render_config", "render_tree"]
