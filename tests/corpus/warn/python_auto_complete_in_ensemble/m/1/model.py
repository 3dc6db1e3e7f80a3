"""A trivial Python-backend model for the validate corpus: it echoes each input to the output of the same position."""

import triton_python_backend_utils as pb_utils


def _tensors():
    return [(kind, {"name": name, "data_type": "TYPE_FP32", "dims": [4]}) for kind, name in (("input", "IN"),
                                                                                           ("output", "OUT"))]


class TritonPythonModel:
    """Copies input i to output i; only loading matters in the corpus."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        # Built by a function: what it adds can only be known by running it.
        for kind, spec in _tensors():
            getattr(auto_complete_model_config, f"add_{kind}")(spec)
        auto_complete_model_config.set_max_batch_size(8)
        return auto_complete_model_config

    def initialize(self, args):
        import json

        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config.get("input", [])]
        self.outputs = [t["name"] for t in config.get("output", [])]

    def execute(self, requests):
        responses = []
        for request in requests:
            tensors = []
            for source, target in zip(self.inputs, self.outputs):
                value = pb_utils.get_input_tensor_by_name(request, source)
                if value is not None:
                    tensors.append(pb_utils.Tensor(target, value.as_numpy()))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
