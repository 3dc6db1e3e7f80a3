"""A non-decoupled front of a decoupled (streaming) engine, so the ensemble stays callable with plain infer.

Triton marks an ensemble decoupled as soon as one of its steps is, and decoupled models cannot be
called through HTTP ``infer`` or unary gRPC. This model takes the engine's own tensors, forwards
every request of a batch to ``<name>_engine`` at once (so the engine still batches them) with
``streaming`` off, and returns the engine's answer as it is (several sequences merged into one).
When ``OUTPUT`` is asked for, it also decodes the text exactly as postprocessing does, so the
ensemble needs no postprocessing step (this hop replaces that one).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common


class TritonPythonModel:
    """The ``<name>_engine_unary`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read which engine to call and which outputs to ask it for; load the tokenizer for ``OUTPUT``."""
        config = json.loads(args["model_config"])
        params = llm_common.read_parameters(config)
        self.engine_name = params["engine_model"]
        # Inputs declared with ``reshape: []`` arrive here as [batch]; the engine wants [batch, 1] back.
        self.scalars = {t["name"] for t in config.get("input", []) if "reshape" in t}
        self.outputs = [t["name"] for t in config.get("output", []) if t["name"] != "OUTPUT"]
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrency") or 8),
                                       thread_name_prefix="tritonkit-unary")

    def finalize(self) -> None:
        """Stop the worker threads."""
        self.pool.shutdown(wait=True)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Send every request to the engine concurrently and wait for all answers."""
        if len(requests) == 1:
            return [self._forward(requests[0])]
        return list(self.pool.map(self._forward, requests))

    def _forward(self, request: Any) -> Any:
        inputs = [pb_utils.Tensor(t.name(), t.as_numpy().reshape(-1, 1)) if t.name() in self.scalars else t
                  for t in request.inputs() if t.name() != "streaming"]
        inputs.append(pb_utils.Tensor("streaming", np.zeros((1, 1), dtype=np.bool_)))
        wanted = set(request.requested_output_names()) or {*self.outputs, "OUTPUT"}
        asked = [n for n in self.outputs if n in wanted]
        if "OUTPUT" in wanted:
            asked += [n for n in ("output_ids", "sequence_length") if n not in asked]
        engine_request = pb_utils.InferenceRequest(model_name=self.engine_name, inputs=inputs,
                                                   request_id=request.request_id(), requested_output_names=asked)
        parts: list[dict[str, Any]] = []
        for response in engine_request.exec(decoupled=True):
            if response.has_error():
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(response.error().message()))
            tensors = {t.name(): t.as_numpy() for t in response.output_tensors()}
            if tensors:
                parts.append(tensors)
        merged = llm_common.merge_sequences(parts, 0) if parts else {}
        if "OUTPUT" in wanted and "output_ids" in merged:
            try:
                sequences = llm_common.engine_sequences(merged["output_ids"], merged.get("sequence_length"))
            except llm_common.RequestError as exc:
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
            texts = llm_common.decode_batch(self.tokenizer, sequences)
            merged["OUTPUT"] = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(k, v) for k, v in merged.items() if k in wanted])
