"""A batched Python-backend model: Y = X @ W with a fixed 1024x1024 weight, on the instance's device.

Each instance runs where Triton places it (``model_instance_kind``/``model_instance_device_id``), so a
``kind: gpu, count: 2`` group gives two CUDA instances; the whole batch is one matmul.
"""

import json

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One matmul per execute call over every request of the batch."""

    def initialize(self, args):
        """Pick the device Triton gave this instance and build the weight there."""
        gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        self.device = torch.device(f"cuda:{args['model_instance_device_id']}" if gpu else "cpu")
        size = int(json.loads(args["model_config"])["input"][0]["dims"][0])
        generator = torch.Generator().manual_seed(0)
        self.weight = (torch.randn(size, size, generator=generator) / size**0.5).to(self.device)
        pb_utils.Logger.log_info(f"matmul instance {args['model_instance_name']} on {self.device}")

    def execute(self, requests):
        """Stack every request's rows, multiply once, split the result back."""
        arrays = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
        rows = [a.shape[0] for a in arrays]
        batch = torch.from_numpy(np.concatenate(arrays)).to(self.device)
        result = (batch @ self.weight).cpu().numpy()
        responses, start = [], 0
        for count in rows:
            out = pb_utils.Tensor("Y", result[start:start + count].astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += count
        return responses
