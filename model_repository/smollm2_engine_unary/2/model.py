"""A non-decoupled front of a decoupled (streaming) engine, so the ensemble stays callable with plain infer.

Triton marks an ensemble decoupled as soon as one of its steps is, and decoupled models cannot be
called through HTTP ``infer`` or unary gRPC. This model takes the engine's own tensors, forwards
every request of a batch to ``<name>_engine`` at once (so the engine still batches them) with
``streaming`` off, and returns each single answer.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common

_OUTPUTS = ["output_ids", "sequence_length"]


class TritonPythonModel:
    """The ``<name>_engine_unary`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read which engine to call."""
        params = llm_common.read_parameters(json.loads(args["model_config"]))
        self.engine_name = params["engine_model"]
        config = json.loads(args["model_config"])
        # Inputs declared with ``reshape: []`` arrive here as [batch]; the engine wants [batch, 1] back.
        self.scalars = {t["name"] for t in config.get("input", []) if "reshape" in t}
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("max_concurrency") or 8),
                                       thread_name_prefix="tritonkit-unary")

    def finalize(self) -> None:
        """Stop the worker threads."""
        self.pool.shutdown(wait=True)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Send every request to the engine concurrently and wait for all answers."""
        return list(self.pool.map(self._forward, requests))

    def _forward(self, request: Any) -> Any:
        inputs = [pb_utils.Tensor(t.name(), t.as_numpy().reshape(-1, 1)) if t.name() in self.scalars else t
                  for t in request.inputs() if t.name() != "streaming"]
        inputs.append(pb_utils.Tensor("streaming", np.zeros((1, 1), dtype=np.bool_)))
        engine_request = pb_utils.InferenceRequest(model_name=self.engine_name, inputs=inputs,
                                                   requested_output_names=_OUTPUTS)
        tokens: list[np.ndarray[Any, Any]] = []
        for response in engine_request.exec(decoupled=True):
            if response.has_error():
                return pb_utils.InferenceResponse(error=pb_utils.TritonError(response.error().message()))
            ids = pb_utils.get_output_tensor_by_name(response, "output_ids")
            lengths = pb_utils.get_output_tensor_by_name(response, "sequence_length")
            if ids is not None and lengths is not None:
                count = int(lengths.as_numpy().reshape(-1)[0])
                tokens.append(ids.as_numpy().reshape(-1)[:count])
        merged = np.concatenate(tokens).astype(np.int32) if tokens else np.zeros(0, dtype=np.int32)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("output_ids", merged.reshape(1, 1, -1)),
            pb_utils.Tensor("sequence_length", np.array([[merged.size]], dtype=np.int32)),
        ])
