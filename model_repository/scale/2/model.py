"""A batched Python-backend model: OUTPUT = INPUT * factor, where factor is a config parameter."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Multiplies its input by the `factor` parameter of config.pbtxt."""

    def initialize(self, args):
        """Read the factor from the model's parameters."""
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.factor = float(parameters.get("factor", {}).get("string_value", "1"))

    def execute(self, requests):
        """Scale each request's input."""
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            out = pb_utils.Tensor("OUTPUT", (x * self.factor).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
