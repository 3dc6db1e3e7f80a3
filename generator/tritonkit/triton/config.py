"""The one reader of config.pbtxt: text to Triton's ``ModelConfig`` message, errors with line and column."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

__all__ = ["parse_config"]


def parse_config(text: str) -> ModelConfig:
    """Parse config.pbtxt text against ``model_config.proto``.

    Raises:
        google.protobuf.text_format.ParseError: the text does not parse; it carries ``GetLine()`` and
            ``GetColumn()``.

    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    return config
