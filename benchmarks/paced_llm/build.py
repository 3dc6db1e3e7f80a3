"""Turn a generated repository's LLM into the paced model (``model.py`` beside this file)."""

from __future__ import annotations

import shutil
from pathlib import Path

MODEL = Path(__file__).resolve().parent / "model.py"


def pace_repository(repository: Path, name: str, ttft_ms: float, itl_ms: float) -> None:
    """Keep only model ``name``, with its generated config, answering at the given pace.

    The config (the LLM-API interface, the tokenizer and chat-template parameters the gateway reads)
    stays as ``generate`` wrote it; its versions are replaced by one version holding the paced model.
    """
    for other in [p for p in repository.iterdir() if p.is_dir() and p.name != name]:
        shutil.rmtree(other)
    model = repository / name
    for version in [p for p in model.iterdir() if p.is_dir()]:
        shutil.rmtree(version)
    (model / "1").mkdir()
    shutil.copy(MODEL, model / "1" / "model.py")
    with (model / "config.pbtxt").open("a") as config:
        for key, value in (("paced_ttft_ms", ttft_ms), ("paced_itl_ms", itl_ms)):
            config.write(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}\n')


def parse_pace(text: str) -> tuple[float, float]:
    """``"TTFT_MS,ITL_MS"`` as two floats."""
    ttft_ms, itl_ms = (float(v) for v in text.split(","))
    return ttft_ms, itl_ms
