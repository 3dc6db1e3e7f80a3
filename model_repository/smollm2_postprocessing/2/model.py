"""Postprocessing of an LLM pipeline: token ids to text for the whole request batch in one call.

Honours ``SEQUENCE_LENGTH`` per beam, skips special tokens, and reports a finish reason
("length" when the answer used all of ``REQUEST_OUTPUT_LEN``, otherwise "stop").
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common


def _read(request: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], Any]:
    tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH")
    lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH")
    if tokens is None or lengths is None:
        raise llm_common.RequestError("inputs 'TOKENS_BATCH' and 'SEQUENCE_LENGTH' are required")
    ids = tokens.as_numpy()
    ids = ids.reshape(ids.shape[0], -1, ids.shape[-1]) if ids.ndim != 3 else ids
    seq = lengths.as_numpy().reshape(ids.shape[0], -1)
    if seq.shape[1] != ids.shape[1]:
        raise llm_common.RequestError(f"SEQUENCE_LENGTH has {seq.shape[1]} beams, TOKENS_BATCH {ids.shape[1]}")
    wanted = pb_utils.get_input_tensor_by_name(request, "REQUEST_OUTPUT_LEN")
    return ids, seq, wanted.as_numpy().reshape(-1) if wanted is not None else None


class TritonPythonModel:
    """The ``<name>_postprocessing`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the tokenizer named in config.pbtxt."""
        params = llm_common.read_parameters(json.loads(args["model_config"]))
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])

    def execute(self, requests: list[Any]) -> list[Any]:
        """Decode every sequence of every request in one ``batch_decode`` call."""
        parsed: list[Any] = []
        sequences: list[list[int]] = []
        for request in requests:
            try:
                ids, seq, wanted = _read(request)
            except llm_common.RequestError as exc:
                parsed.append(exc)
                continue
            parsed.append((ids.shape[0], ids.shape[1], seq, wanted, len(sequences)))
            for row in range(ids.shape[0]):
                for beam in range(ids.shape[1]):
                    sequences.append([int(t) for t in ids[row, beam, : max(int(seq[row, beam]), 0)]])
        texts = self.tokenizer.batch_decode(sequences, **llm_common.DECODE_KWARGS) if sequences else []
        return [self._response(item, texts) for item in parsed]

    def _response(self, item: Any, texts: list[str]) -> Any:
        if isinstance(item, Exception):
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(item)))
        rows, beams, seq, wanted, start = item
        words = np.array([t.encode("utf-8") for t in texts[start:start + rows * beams]], dtype=np.object_)
        reasons = []
        for row in range(rows):
            limit = int(wanted[row]) if wanted is not None and row < len(wanted) else None
            reasons.append(b"length" if limit is not None and int(seq[row, 0]) >= limit else b"stop")
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("OUTPUT", words.reshape(rows, beams)),
            pb_utils.Tensor("FINISH_REASON", np.array(reasons, dtype=np.object_).reshape(rows, 1)),
        ])
