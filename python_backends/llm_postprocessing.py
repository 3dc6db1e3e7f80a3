"""Postprocessing of an LLM pipeline: token ids to text for the whole request batch in one call.

``TOKENS_BATCH`` and ``SEQUENCE_LENGTH`` are ragged, so requests whose answers differ in length still
batch. ``OUTPUT`` holds one string per sequence (``[beams]``, ``[1]`` for a plain request), as NVIDIA's
postprocessing returns it. The finish reason comes from the engine, not from here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

import llm_common
import llm_triton


def _read(inputs: dict[str, np.ndarray[Any, Any]]) -> list[list[int]]:
    tokens, lengths = inputs.get("TOKENS_BATCH"), inputs.get("SEQUENCE_LENGTH")
    if tokens is None or lengths is None:
        raise llm_common.RequestError("inputs 'TOKENS_BATCH' and 'SEQUENCE_LENGTH' are required")
    return llm_common.engine_sequences(tokens, lengths)


class TritonPythonModel:
    """The ``<name>_postprocessing`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the tokenizer named in config.pbtxt."""
        params = llm_common.read_parameters(json.loads(args["model_config"]))
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])

    def execute(self, requests: list[Any]) -> list[Any]:
        """Decode every sequence of every request in one batched call."""
        parsed: list[Any] = []
        sequences: list[list[int]] = []
        for request in requests:
            try:
                found = _read(llm_triton.inputs(request))
            except llm_common.RequestError as exc:
                parsed.append(exc)
                continue
            parsed.append((len(sequences), len(found)))
            sequences.extend(found)
        texts = llm_common.decode_batch(self.tokenizer, sequences)
        responses = []
        for item in parsed:
            if isinstance(item, Exception):
                responses.append(llm_triton.error(item))
                continue
            start, count = item
            words = np.array([t.encode("utf-8") for t in texts[start:start + count]], dtype=np.object_)
            responses.append(llm_triton.response({"OUTPUT": words}))
        return responses
