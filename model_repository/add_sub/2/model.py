"""A batched Python-backend model: SUM = INPUT0 + INPUT1 and DIFF = INPUT0 - INPUT1, per row."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Element-wise sum and difference of two FP32 vectors; every request of a batch in one call."""

    def execute(self, requests):
        """Compute both outputs for each request."""
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            # Return only what the caller asked for: seen with Triton 2.51, an ensemble step whose
            # model also returns an output the step does not map hands the next step an empty tensor.
            wanted = request.requested_output_names()
            outputs = [
                pb_utils.Tensor(name, value.astype(np.float32))
                for name, value in (("SUM", a + b), ("DIFF", a - b))
                if not wanted or name in wanted
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
