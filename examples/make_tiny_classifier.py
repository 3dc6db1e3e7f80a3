"""Write ``models/tiny_classifier.onnx``, the small ONNX model of ``onnx_tensorrt.yaml``.

A batch of images of any height and width (``INPUT``, FP32 [N, 3, H, W]) is averaged per channel
and mapped to 4 class probabilities (``PROBS``, FP32 [N, 4]). Built with ``onnx.helper`` only, so no
deep-learning framework is needed: ``python examples/make_tiny_classifier.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).parent / "models" / "tiny_classifier.onnx"


def build() -> onnx.ModelProto:
    """The model: GlobalAveragePool -> Flatten -> Gemm -> Softmax, opset 17."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(4, dtype=np.float32), "B")
    nodes = [
        helper.make_node("GlobalAveragePool", ["INPUT"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["PROBS"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("PROBS", TensorProto.FLOAT, ["N", 4])],
        initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tritonkit-example")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build(), str(OUT))
    print(OUT)
