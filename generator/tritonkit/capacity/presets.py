"""Built-in architectures of common model families, from their published Hugging Face config.json."""

from __future__ import annotations

import re
from typing import Optional

from tritonkit.capacity.architecture import Architecture

__all__ = ["PRESETS", "find_preset"]


def _arch(name: str, layers: int, hidden: int, heads: int, kv_heads: int, vocab: int, inter: int,
          ctx: int, *, tied: bool = False, bias: bool = False) -> Architecture:
    return Architecture(name=name, layers=layers, hidden_size=hidden, heads=heads, kv_heads=kv_heads,
                        head_dim=hidden // heads, vocab_size=vocab, intermediate_size=inter,
                        tied_embeddings=tied, attention_bias=bias, max_context=ctx, source=f"preset:{name}")


#: Keyed by a normalised name (lower case, no punctuation). Figures are those of each model's config.json.
PRESETS: dict[str, Architecture] = {
    "llama38b": _arch("Llama-3-8B", 32, 4096, 32, 8, 128256, 14336, 8192),
    "llama370b": _arch("Llama-3-70B", 80, 8192, 64, 8, 128256, 28672, 8192),
    "llama318b": _arch("Llama-3.1-8B", 32, 4096, 32, 8, 128256, 14336, 131072),
    "llama3170b": _arch("Llama-3.1-70B", 80, 8192, 64, 8, 128256, 28672, 131072),
    "mistral7b": _arch("Mistral-7B-v0.3", 32, 4096, 32, 8, 32768, 14336, 32768),
    "qwen257b": _arch("Qwen2.5-7B", 28, 3584, 28, 4, 152064, 18944, 32768, bias=True),
    "qwen2572b": _arch("Qwen2.5-72B", 80, 8192, 64, 8, 152064, 29568, 32768, bias=True),
    "smollm2135m": _arch("SmolLM2-135M", 30, 576, 9, 3, 49152, 1536, 8192, tied=True),
    "smollm2360m": _arch("SmolLM2-360M", 32, 960, 15, 5, 49152, 2560, 8192, tied=True),
    "smollm217b": _arch("SmolLM2-1.7B", 24, 2048, 32, 32, 49152, 8192, 8192, tied=True),
}


def _normalise(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    for suffix in ("instruct", "chat", "it"):
        if key.endswith(suffix) and key[: -len(suffix)] in PRESETS:
            return key[: -len(suffix)]
    return key


def find_preset(name: str) -> Optional[Architecture]:
    """Return the preset named ``name`` (case and punctuation ignored: ``llama-3-8b``, ``Qwen2.5-7B``)."""
    return PRESETS.get(_normalise(name))
