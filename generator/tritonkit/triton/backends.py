"""The one table of Triton's platforms, backends and default model file names (core ``src/constants.h``)."""

from __future__ import annotations

from typing import Optional

__all__ = ["BACKEND_FILES", "BACKEND_PLATFORMS", "ENSEMBLE", "FILE_BACKENDS", "NGC_BACKENDS", "PLATFORM_BACKENDS",
           "PLATFORM_FILES", "default_model_file"]

#: The platform of an ensemble; its backend must stay empty.
ENSEMBLE = "ensemble"

#: platform -> the backend that serves it, as Triton's core pairs them.
PLATFORM_BACKENDS = {
    "tensorrt_plan": "tensorrt",
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "libtorch": "pytorch",
    "torch_aoti": "pytorch",
    "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
}

#: backend -> the platform tritonkit writes beside it (Triton fills the same one in for these backends).
BACKEND_PLATFORMS = {"tensorrt": "tensorrt_plan", "onnxruntime": "onnxruntime_onnx", "pytorch": "pytorch_libtorch"}

#: backend -> the file Triton loads from a version folder when ``default_model_filename`` is unset.
BACKEND_FILES = {
    "tensorrt": "model.plan",
    "onnxruntime": "model.onnx",
    "pytorch": "model.pt",
    "python": "model.py",
    "openvino": "model.xml",
    "dali": "model.dali",
}

#: platform -> default file, where the platform decides it rather than the backend.
PLATFORM_FILES = {"tensorflow_graphdef": "model.graphdef", "tensorflow_savedmodel": "model.savedmodel",
                  "torch_aoti": "model.pt2"}

#: model file -> backend, in the order Triton's auto-complete tries them when a config names neither
#: backend nor platform.
FILE_BACKENDS = {
    "model.plan": "tensorrt",
    "model.onnx": "onnxruntime",
    "model.pt": "pytorch",
    "model.py": "python",
    "model.xml": "openvino",
    "model.savedmodel": "tensorflow",
    "model.graphdef": "tensorflow",
}


#: Backends the NGC tritonserver images ship (``-py3``; ``vllm`` and ``tensorrtllm`` in their own images).
NGC_BACKENDS = frozenset({"python", "onnxruntime", "tensorrt", "pytorch", "openvino", "fil", "dali", "identity",
                          "repeat", "square", "tensorflow", "vllm", "tensorrtllm"})


def default_model_file(backend: str, platform: str = "", configured: str = "") -> Optional[str]:
    """The file name a version folder must hold: ``configured`` if set, else the platform's or backend's default."""
    return configured or PLATFORM_FILES.get(platform) or BACKEND_FILES.get(backend)
