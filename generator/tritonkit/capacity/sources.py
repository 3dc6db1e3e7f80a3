"""Read a model's architecture from a Hugging Face config.json (a file, or a hub id), a GGUF file, or a preset."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from tritonkit.capacity.architecture import Architecture, PlanError
from tritonkit.capacity.hub import HF_PREFIX, config_path
from tritonkit.capacity.presets import PRESETS, find_preset
from tritonkit.errors import Problem

__all__ = ["architecture_from_config", "architecture_from_gguf", "load_architecture"]

_REQUIRED_HF_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size",
                     "intermediate_size")
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
_BIAS_MODEL_TYPES = ("qwen2",)


def load_architecture(source: str) -> Architecture:
    """Return the architecture of ``source``: a config.json (or its folder), a .gguf file, a preset, or hf:.

    ``hf:<org>/<name>`` is a Hugging Face model: its config.json is read from the local Hugging Face cache
    or fetched from the hub (``capacity/hub.py``).

    Raises:
        PlanError: the source does not exist, cannot be read, or lacks an architecture field.

    """
    if source.startswith(HF_PREFIX):
        return replace(_read_config(config_path(source)), name=source[len(HF_PREFIX):])
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise PlanError(Problem("folder has no config.json", path=source,
                                    hint="point --model at a model folder, a config.json or a .gguf"))
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return architecture_from_gguf(path)
        return _read_config(path)
    preset = find_preset(source)
    if preset is not None:
        return preset
    names = ", ".join(a.name for a in PRESETS.values())
    raise PlanError(Problem(f"no such file and no preset named {source!r}", path="--model",
                            hint=f"give a config.json, its folder, a .gguf file, hf:<org>/<name> for a Hugging "
                                 f"Face model, or one of: {names}"))


def _read_config(path: Path) -> Architecture:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(Problem(f"cannot read the model config: {exc}", path=str(path))) from None
    except json.JSONDecodeError as exc:
        raise PlanError(Problem(f"not valid JSON: {exc.msg}", path=str(path), line=exc.lineno,
                                col=exc.colno)) from None
    if not isinstance(data, dict):
        raise PlanError(Problem("a model config must be a JSON object", path=str(path)))
    return architecture_from_config(data, source=str(path))


def architecture_from_config(config: dict[str, Any], source: str = "config.json") -> Architecture:
    """Build an architecture from the dict of a Hugging Face ``config.json``.

    Multimodal configs are read through their ``text_config``.

    Raises:
        PlanError: a required field is missing or not a number, or the model is a mixture of experts.

    """
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), dict):
        config = config["text_config"]
    moe = [key for key in _MOE_KEYS if config.get(key)]
    if moe:
        raise PlanError(Problem(f"mixture-of-experts models are not supported (config has {moe[0]})",
                                path=source,
                                hint="plan a dense model, or size by hand from the active parameters"))
    missing = [key for key in _REQUIRED_HF_KEYS if not isinstance(config.get(key), int)]
    if missing:
        raise PlanError(Problem(f"config lacks the architecture field(s) {', '.join(missing)} "
                                f"(model_type {config.get('model_type')!r})", path=source,
                                hint="plan needs a decoder-only transformer config with these integers"))
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return Architecture(
        name=str(config.get("_name_or_path") or config.get("model_type") or Path(source).parent.name),
        layers=config["num_hidden_layers"],
        hidden_size=config["hidden_size"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        vocab_size=config["vocab_size"],
        intermediate_size=config["intermediate_size"],
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        attention_bias=bool(config.get("attention_bias", config.get("model_type") in _BIAS_MODEL_TYPES)),
        max_context=config.get("max_position_embeddings"),
        source=source,
    )


def architecture_from_gguf(path: Path) -> Architecture:
    """Build an architecture from a GGUF file's metadata; its tensors give the stored weight bytes.

    Raises:
        PlanError: the file is not a readable GGUF, or lacks an architecture key.

    """
    from gguf import GGUFReader  # only needed for GGUF sources

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise PlanError(Problem(f"cannot read the GGUF file: {exc}", path=str(path))) from None
    field = _gguf_getter(reader)
    arch = field("general.architecture", str)
    if field(f"{arch}.expert_count", int, required=False):
        raise PlanError(Problem("mixture-of-experts models are not supported", path=str(path)))
    heads = field(f"{arch}.attention.head_count", int)
    hidden = field(f"{arch}.embedding_length", int)
    tokens = field("tokenizer.ggml.tokens", list, required=False)
    vocab = field(f"{arch}.vocab_size", int, required=False) or (len(tokens) if tokens else None)
    tensor_names = {tensor.name for tensor in reader.tensors}
    return Architecture(
        name=str(field("general.name", str, required=False) or path.stem),
        layers=field(f"{arch}.block_count", int),
        hidden_size=hidden,
        heads=heads,
        kv_heads=field(f"{arch}.attention.head_count_kv", int, required=False) or heads,
        head_dim=field(f"{arch}.attention.key_length", int, required=False) or hidden // heads,
        vocab_size=vocab if vocab is not None else _missing(path, "tokenizer.ggml.tokens"),
        intermediate_size=field(f"{arch}.feed_forward_length", int),
        tied_embeddings="output.weight" not in tensor_names,
        attention_bias="blk.0.attn_q.bias" in tensor_names,
        max_context=field(f"{arch}.context_length", int, required=False),
        file_weight_bytes=sum(int(tensor.n_bytes) for tensor in reader.tensors),
        source=str(path),
    )


def _missing(path: Path, key: str) -> Any:
    raise PlanError(Problem(f"GGUF metadata lacks {key}", path=str(path),
                            hint="plan needs the llama-style architecture keys in the GGUF header"))


def _gguf_getter(reader: Any) -> Callable[..., Any]:
    path = Path(str(reader.data.filename)) if hasattr(reader.data, "filename") else Path("<gguf>")

    def get(key: str, kind: type, required: bool = True) -> Optional[Any]:
        found = reader.fields.get(key)
        value = found.contents() if found is not None else None
        if value is None or not isinstance(value, kind) or isinstance(value, bool):
            return _missing(path, key) if required else None
        return value

    return get
