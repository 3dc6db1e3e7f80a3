"""NGC Triton releases and the versions of Triton, TensorRT-LLM, vLLM and TensorRT in their images, as data.

The table and the key lists live in ``ngc_releases.json`` beside this module, each row with its
source and the public pages it was read from; a value the sources do not document is None, never a
guess. The same file holds what TensorRT 11 changed in how an engine's precision is chosen. Everything
here is a pure lookup: callers turn a ``KeyError`` for an unknown release into a located error of their own.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

__all__ = [
    "BUILDER_FLAGS",
    "KV_CACHE_KEYS",
    "LLMAPI_TENSOR_SINCE",
    "LLM_ARG_KEYS",
    "NEWER_LLM_KEYS",
    "PRECISION_FLAGS",
    "VLLM_ENGINE_KEYS",
    "Release",
    "check_llm_key",
    "check_vllm_key",
    "closest_key",
    "has_engine_backend",
    "has_llmapi_model",
    "known_releases",
    "last_engine_release",
    "llmapi_tensor_available",
    "newest_release",
    "precision_fix",
    "precision_removal",
    "release",
    "takes_precision_flags",
    "trtllm_image_gap",
    "version_at_least",
]

_VERSION = re.compile(r"^v?(?P<release>\d+(?:\.\d+)*)(?:\.?(?P<pre>a|b|rc)(?P<pre_n>\d*))?"
                      r"(?:\.?post(?P<post>\d*))?(?:\.?dev\d*)?(?:\+.*)?$")
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}
_KV = "kv_cache_config"


@dataclass(frozen=True)
class Release:
    """One NGC Triton release (``"26.04"``) and the versions its images ship; None where not documented.

    ``tensorrt`` is the TensorRT of the ``-trtllm-python-py3`` image, the only image NVIDIA's matrix gives
    it for; ``urls`` are the public pages the row was read from.
    """

    ngc: str
    triton: Optional[str]
    trtllm: Optional[str]
    vllm: Optional[str]
    source: str
    tensorrt: Optional[str] = None
    urls: tuple[str, ...] = ()


def _version_key(version: str) -> tuple[tuple[int, ...], tuple[int, int], int]:
    """Order versions the PEP 440 way for the forms NVIDIA uses: 1.0.3.2510, 0.17.0.post1, 0.9.0rc1."""
    match = _VERSION.match(version.strip())
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    numbers = tuple(int(part) for part in match.group("release").split("."))
    numbers = numbers + (0,) * (6 - len(numbers))
    pre = match.group("pre")
    pre_key = (0, _PRE_RANK[pre] * 1000 + int(match.group("pre_n") or 0)) if pre else (1, 0)
    post = match.group("post")
    return numbers, pre_key, int(post or 0) + 1 if post is not None else 0


def version_at_least(version: str, minimum: str) -> bool:
    """True when ``version`` is ``minimum`` or newer (``"0.9.0rc1"`` is older than ``"0.9.0"``).

    Raises:
        ValueError: either string is not a version.

    """
    return _version_key(version) >= _version_key(minimum)


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    text = resources.files("tritonkit.triton").joinpath("ngc_releases.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def _table() -> dict[str, Release]:
    rows = _data()["releases"]
    return {row["ngc"]: Release(row["ngc"], row["triton"], row["trtllm"], row["vllm"], row["source"],
                                row.get("tensorrt"), tuple(row.get("urls", ())))
            for row in rows}


def release(ngc: str) -> Release:
    """Return the release named ``ngc`` (``"26.04"``).

    Raises:
        KeyError: tritonkit does not know that release; :func:`known_releases` lists those it does.

    """
    found = _table().get(ngc)
    if found is None:
        raise KeyError(ngc)
    return found


def known_releases() -> tuple[str, ...]:
    """Return every NGC release in the table, oldest first."""
    return tuple(sorted(_table(), key=lambda ngc: tuple(int(p) for p in ngc.split("."))))


def newest_release(*, with_trtllm: bool = False) -> Release:
    """Return the newest known release, or the newest whose TensorRT-LLM version is known."""
    for ngc in reversed(known_releases()):
        rel = _table()[ngc]
        if rel.trtllm is not None or not with_trtllm:
            return rel
    raise LookupError("no release with a TensorRT-LLM version")  # the shipped table always has one


def has_engine_backend(rel: Release) -> bool:
    """True when the release's trtllm image ships the C++ ``tensorrtllm`` backend (TRT-LLM before 1.3)."""
    removed = str(_data()["engine_backend"]["removed_in_trtllm"])
    return rel.trtllm is not None and not version_at_least(rel.trtllm, removed)


def last_engine_release() -> Release:
    """Return the newest release whose trtllm image ships the C++ ``tensorrtllm`` backend (26.07)."""
    for ngc in reversed(known_releases()):
        if has_engine_backend(_table()[ngc]):
            return _table()[ngc]
    raise LookupError("no release with the engine backend")  # the shipped table always has one


def trtllm_image_gap(rel: Release) -> Optional[str]:
    """Why no TensorRT-LLM image of ``rel`` can be targeted, or None when the release documents one.

    From 26.08 NVIDIA's compatibility matrix lists no ``-trtllm-python-py3`` image, and 26.11's release
    notes say there is none; the reason quotes those sources.
    """
    if rel.trtllm is not None:
        return None
    block = _data()["trtllm_image"]
    last = newest_release(with_trtllm=True)
    return (f"NGC {rel.ngc} documents no -trtllm-python-py3 image: NVIDIA's compatibility matrix lists TensorRT-LLM "
            f"images up to {last.ngc} (TensorRT-LLM {last.trtllm}), and the {block['words_release']} release says "
            f"\"{block['words']}\"")


def has_llmapi_model(rel: Release) -> bool:
    """True when NVIDIA's ``all_models/llmapi`` Triton model exists for the release's TensorRT-LLM."""
    since = str(_data()["llmapi_model"]["since_trtllm"])
    return rel.trtllm is not None and version_at_least(rel.trtllm, since)


LLMAPI_TENSOR_SINCE: dict[str, str] = {
    name: str(version) for name, version in _data()["llmapi_tensor_since"].items() if name != "source"}


def llmapi_tensor_available(name: str, rel: Release) -> bool:
    """True when the llmapi model of the release's TensorRT-LLM reads the tensor ``name``.

    Tensors not in :data:`LLMAPI_TENSOR_SINCE` are in every version; a newer one needs a known
    TensorRT-LLM at least as new as the version it came with.
    """
    since = LLMAPI_TENSOR_SINCE.get(name)
    if since is None:
        return True
    return rel.trtllm is not None and version_at_least(rel.trtllm, since)


_PRECISION = _data()["tensorrt_precision"]
#: ``build.tensorrt.precision`` -> the trtexec flag TensorRT 10 takes for it (TensorRT 11 takes none of them).
PRECISION_FLAGS: dict[str, str] = dict(_PRECISION["flags"])
#: ``build.tensorrt.precision`` -> the ``tensorrt.BuilderFlag`` TensorRT 10's Python API takes for it (11 has none).
BUILDER_FLAGS: dict[str, str] = dict(_PRECISION["builder_flags"])


def takes_precision_flags(tensorrt: Optional[str]) -> Optional[bool]:
    """Whether a TensorRT version still takes the precision flags: None when the version is not documented."""
    if tensorrt is None:
        return None
    return not version_at_least(tensorrt, str(_PRECISION["flags_removed_in"]))


def precision_removal(precision: str) -> str:
    """Why TensorRT 11 builds no engine from ``precision``'s flag, in its migration guide's words.

    Raises:
        KeyError: ``precision`` has no flag (fp32, strongly_typed).

    """
    words = _PRECISION["int8_words"] if precision == "int8" else _PRECISION["trtexec_words"]
    return f"TensorRT 11 removed {PRECISION_FLAGS[precision]} (\"{words}\")"


def precision_fix(precision: str) -> str:
    """What TensorRT 11 takes instead of ``precision``'s flag: a model that carries its own types.

    Raises:
        KeyError: ``precision`` has no flag (fp32, strongly_typed).

    """
    if precision not in PRECISION_FLAGS:
        raise KeyError(precision)
    if precision == "int8":
        return ("quantize the ONNX file offline with ModelOpt (explicit Q/DQ nodes), make it the model's artifact "
                "and set precision: strongly_typed")
    command = str(_PRECISION["autocast_command"]).format(precision=precision)
    return (f"convert the ONNX file with `{command}`, make model_{precision}.onnx the model's artifact and set "
            "precision: strongly_typed")


LLM_ARG_KEYS: frozenset[str] = frozenset(_data()["trtllm_llm_args"]["known_1_2"])
KV_CACHE_KEYS: frozenset[str] = frozenset(_data()["trtllm_llm_args"]["kv_cache_config_1_2"])
#: Keys of ``LLM()`` (dotted for nested ones: ``kv_cache_config.disk_cache_size``) newer than 1.2.x.
NEWER_LLM_KEYS: dict[str, str] = dict(_data()["trtllm_llm_args"]["newer"])
VLLM_ENGINE_KEYS: frozenset[str] = frozenset(_data()["vllm_engine_args"]["known"])
_VLLM_CHANGES: dict[str, dict[str, str]] = dict(_data()["vllm_engine_args"]["changes"])


def _image(rel: Release, version: Optional[str]) -> str:
    return f"the image of NGC {rel.ngc} has {version}"


def check_llm_key(key: str, rel: Release) -> Optional[str]:
    """Return why ``key`` of ``model.yaml`` is not an ``LLM()`` argument for ``rel``, or None when it is.

    ``key`` is a top-level key, or ``kv_cache_config.<field>`` for a KvCacheConfig field. Where the
    release's TensorRT-LLM is unknown, a key of any known version is accepted.
    """
    parent, _, field = key.rpartition(".")
    known = KV_CACHE_KEYS if parent == _KV else LLM_ARG_KEYS
    where = "tensorrt_llm.llmapi.KvCacheConfig" if parent == _KV else "tensorrt_llm.LLM"
    since = NEWER_LLM_KEYS.get(key)
    if field in known:
        return None
    if since is None:
        version = f"TRT-LLM {rel.trtllm}" if rel.trtllm else "any TRT-LLM release tritonkit knows"
        return f"not an argument of {where} in {version}"
    if rel.trtllm is None or version_at_least(rel.trtllm, since):
        return None
    return f"needs TRT-LLM ≥ {since}, {_image(rel, rel.trtllm)}"


def check_vllm_key(key: str, rel: Release) -> Optional[str]:
    """Return why ``key`` of a vLLM ``model.json`` does not fit the release's vLLM, or None.

    Only keys whose fate is known are judged: ``disable_log_requests`` (removed in vLLM 0.10) and
    ``enable_log_requests`` (its replacement); other unknown keys get "not a common" wording.
    """
    change = _VLLM_CHANGES.get(key)
    if change is not None and rel.vllm is not None:
        removed, since = change.get("removed_in"), change.get("since")
        if removed is not None and version_at_least(rel.vllm, removed):
            return f"removed in vLLM {removed}, {_image(rel, rel.vllm)}"
        if since is not None and not version_at_least(rel.vllm, since):
            return f"needs vLLM ≥ {since}, {_image(rel, rel.vllm)}"
    if change is not None or key in VLLM_ENGINE_KEYS:
        return None
    return "not a common vLLM engine argument (AsyncEngineArgs)"


def closest_key(key: str, *, vllm: bool = False) -> Optional[str]:
    """Return the known key nearest to ``key`` (same level: ``kv_cache_config.x`` -> a KvCacheConfig field)."""
    parent, _, field = key.rpartition(".")
    if vllm:
        names = sorted(VLLM_ENGINE_KEYS | set(_VLLM_CHANGES))
    elif parent == _KV:
        names = sorted(KV_CACHE_KEYS | {k.rpartition(".")[2] for k in NEWER_LLM_KEYS if k.startswith(f"{_KV}.")})
    else:
        names = sorted(LLM_ARG_KEYS | {k for k in NEWER_LLM_KEYS if "." not in k})
    close = difflib.get_close_matches(field, names, n=1)
    return close[0] if close else None
