"""TensorRT-LLM's C++ engine layout (``backend: "tensorrtllm"``) against the NGC release the repository targets.

The backend lives in the ``-trtllm-python-py3`` image of releases whose TensorRT-LLM predates its
removal; from 26.08 NVIDIA documents no such image at all. Only an explicit target is judged: the
default is the newest release with a documented TensorRT-LLM image, which ships the backend.
"""

from __future__ import annotations

from tritonkit.triton import releases
from tritonkit.validate._llmapi import LlmTarget
from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["check_engine_layout"]

_ENGINE_BACKEND = "tensorrtllm"


def check_engine_layout(entry: ModelEntry, sink: Sink, target: LlmTarget) -> None:
    """Warn when the targeted release ships no ``tensorrtllm`` backend, naming the last release that did."""
    if entry.config is None or entry.config.backend != _ENGINE_BACKEND or not target.explicit:
        return
    rel = target.release
    if releases.has_engine_backend(rel):
        return
    last = releases.last_engine_release()
    why = releases.trtllm_image_gap(rel) or f"its TensorRT-LLM {rel.trtllm} no longer has the C++ backend"
    sink.warning(entry, ("backend",),
                 f"backend '{_ENGINE_BACKEND}' is TensorRT-LLM's C++ engine layout, which NGC {rel.ngc}'s images do "
                 f"not ship: {why}; the last release with the backend is {last.ngc} (TensorRT-LLM {last.trtllm})",
                 hint=f"serve it with NGC {last.ngc}'s -trtllm-python-py3 image, or move to the LLM-API layout "
                      "(all_models/llmapi) on a release that ships TensorRT-LLM")
