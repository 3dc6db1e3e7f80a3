"""A trivial Python-backend model for the validate corpus: it echoes each input to the output of the same position."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Copies input i to output i; only loading matters in the corpus."""

    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4]})
        auto_complete_model_config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [4]})
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
