"""Rules for NVIDIA's LLM-API layout: a Python-backend model whose version folder holds ``model.yaml``.

NVIDIA's ``triton_backend/all_models/llmapi/tensorrt_llm/1/model.py`` reads ``triton_config`` from
``model.yaml`` in ``auto_complete_config`` and passes every other key to ``tensorrt_llm.LLM()``; the
messages quoted here are that file's own. Only the newest version folder holding ``model.yaml`` is
checked: it is the one a request without a version reaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Optional

import yaml

from tritonkit.errors import Problem, RepositoryError, SpecError
from tritonkit.locations import Loc, LocationMap, parse_yaml
from tritonkit.triton import releases
from tritonkit.triton.releases import Release
from tritonkit.validate._report import ModelEntry, Sink
from tritonkit.validate._view import RepositoryView

__all__ = ["LlmTarget", "check_llmapi", "llm_target"]

_MODEL_YAML = "model.yaml"
_TRITON_CONFIG = "triton_config"
_KV = "kv_cache_config"
_DEVICES = "gpu_device_ids"
#: Compute capability by GPU name prefix (CUDA GPUs list, developer.nvidia.com/cuda-gpus). Longest prefix wins.
_COMPUTE = {
    "GB300": 10.3, "B300": 10.3, "GB200": 10.0, "B200": 10.0, "B100": 10.0, "RTXPRO6000": 12.0, "RTX5090": 12.0,
    "GH200": 9.0, "H200": 9.0, "H100": 9.0, "H800": 9.0, "H20": 9.0,
    "L40S": 8.9, "L40": 8.9, "L20": 8.9, "L4": 8.9, "RTX4090": 8.9, "RTX6000ADA": 8.9,
    "A100": 8.0, "A800": 8.0, "A30": 8.0, "A40": 8.6, "A10G": 8.6, "A10": 8.6, "RTX3090": 8.6,
    "T4": 7.5, "V100": 7.0,
}
_FP8_CC, _FP4_CC = 8.9, 10.0
_HINTS = {
    _FP8_CC: "use a BF16 checkpoint and kv_cache_config.dtype: auto, or a GPU with FP8 (L4, L40S, H100, H200, B200)",
    _FP4_CC: "use an FP8 or BF16 checkpoint, or a Blackwell GPU (B200, GB200)",
}


@dataclass(frozen=True)
class LlmTarget:
    """The image and GPU the repository is checked for: ``explicit`` is False when the release is assumed."""

    release: Release
    explicit: bool
    gpu: Optional[str] = None
    compute: Optional[float] = None


def llm_target(triton_version: Optional[str] = None, gpu: Optional[str] = None) -> LlmTarget:
    """Resolve the NGC release (``"26.04"``, or a Triton version ``"2.68.0"``) and the GPU name.

    Without a release, the newest release with a known TensorRT-LLM is assumed.

    Raises:
        RepositoryError: the release or the GPU is not one tritonkit knows.

    """
    rel = releases.newest_release(with_trtllm=True)
    if triton_version is not None:
        rel = _find_release(triton_version)
    compute = None
    if gpu is not None:
        compute = _compute_capability(gpu)
        if compute is None:
            hint = "use a name such as H100, H200, A100, L40S, L4, B200 (suffixes like -80GB are fine)"
            raise RepositoryError(Problem(f"unknown GPU '{gpu}'", hint=hint))
    return LlmTarget(rel, triton_version is not None, gpu, compute)


def _find_release(name: str) -> Release:
    try:
        return releases.release(name)
    except KeyError:
        pass
    for ngc in releases.known_releases():
        if releases.release(ngc).triton == name:
            return releases.release(ngc)
    known = releases.known_releases()
    raise RepositoryError(Problem(f"unknown Triton release '{name}'",
                                  hint=f"use an NGC release from {known[0]} to {known[-1]}, e.g. '{known[-4]}'"))


def _compute_capability(gpu: str) -> Optional[float]:
    name = re.sub(r"[^A-Z0-9]", "", gpu.upper()).removeprefix("NVIDIA")
    for prefix in sorted(_COMPUTE, key=len, reverse=True):
        if name.startswith(prefix):
            return _COMPUTE[prefix]
    return None


@dataclass
class _Yaml:
    data: dict[str, Any]
    where: LocationMap
    model: str

    def problem(self, loc: Loc, message: str, hint: str, severity: str = "error") -> Problem:
        found = self.where.problem(loc, message, hint, at_key=True, model=self.model)
        return replace(found, severity=severity)


def check_llmapi(view: RepositoryView, entry: ModelEntry, sink: Sink, target: LlmTarget,
                 gpus: Optional[int]) -> None:
    """Check a model in the llmapi layout: model.yaml, triton_config, GPU assignment, precision, LLM() keys."""
    config = entry.config
    if config is None or config.backend != "python":
        return
    version = next((v for v in reversed(entry.available_versions()) if _MODEL_YAML in entry.versions[v]), None)
    if version is None:
        return
    doc = _read(view, entry, version, sink)
    if doc is None:
        return
    _check_triton_config(doc, entry, sink)
    _check_devices(doc, entry, sink, gpus)
    _check_precision(doc, sink, target)
    _check_keys(doc, sink, target.release)
    _check_release(doc, entry, sink, target)


def _read(view: RepositoryView, entry: ModelEntry, version: int, sink: Sink) -> Optional[_Yaml]:
    path = f"{entry.folder}/{version}/{_MODEL_YAML}"
    raw = view.version_file(entry.name, str(version), _MODEL_YAML)
    if raw is None:
        return None
    doc = _Yaml({}, LocationMap(path), entry.name)
    try:
        data, doc.where = parse_yaml(raw.decode("utf-8"), path)
    except UnicodeDecodeError as exc:
        sink.add(doc.problem((), f"model.yaml is not UTF-8 text ({exc.reason} at byte {exc.start})",
                             "save the file as UTF-8"))
        return None
    except SpecError as exc:
        if not _only_repeated_keys(exc, doc, sink):
            return None
        data = yaml.safe_load(raw)
    if not isinstance(data, dict):
        got = "empty" if data is None else f"a {type(data).__name__}"
        sink.add(doc.problem((), f"model.yaml must be a mapping of LLM() arguments with a triton_config section "
                                 f"(it is {got}); NVIDIA's model.py stops with \"'model.yaml' containing TRT-LLM "
                                 "engine args not found\"", "start from NVIDIA's llmapi model.yaml"))
        return None
    doc.data = data
    return doc


def _only_repeated_keys(exc: SpecError, doc: _Yaml, sink: Sink) -> bool:
    """Report parse_yaml's problems; True when all are repeated keys, which PyYAML loads (the last one wins)."""
    syntax = False
    for problem in exc.problems:
        if problem.message.startswith("duplicate key"):
            sink.add(replace(problem, message=f"{problem.message} in model.yaml: PyYAML keeps the last one",
                             model=doc.model, severity="warning"))
        else:
            syntax = True
            sink.add(replace(problem, message=f"model.yaml is {problem.message}", model=doc.model,
                             hint=f"{problem.hint}; NVIDIA's model.py stops with \"Failed to parse YAML engine "
                                  "config\""))
    return not syntax


def _check_triton_config(doc: _Yaml, entry: ModelEntry, sink: Sink) -> None:
    triton_config = doc.data.get(_TRITON_CONFIG)
    hint = "add triton_config: {max_batch_size: 0, decoupled: false} (decoupled: true to stream)"
    if triton_config is None:
        sink.add(doc.problem((), "model.yaml has no triton_config: NVIDIA's model.py reads "
                                 "triton_config.max_batch_size and triton_config.decoupled when it loads "
                                 "(KeyError: 'triton_config')", hint))
        return
    if not isinstance(triton_config, dict):
        sink.add(doc.problem((_TRITON_CONFIG,), "triton_config must be a mapping", hint))
        return
    for key in ("max_batch_size", "decoupled"):
        if key not in triton_config:
            sink.add(doc.problem((_TRITON_CONFIG,), f"triton_config has no {key}: NVIDIA's model.py indexes "
                                                    f"triton_config[\"{key}\"] when it loads (KeyError)", hint))
    decoupled = triton_config.get("decoupled")
    if isinstance(decoupled, str):
        sink.add(doc.problem((_TRITON_CONFIG, "decoupled"), f"triton_config.decoupled is the string "
                                                            f"'{decoupled}', which model.py's bool() reads as true",
                             "write true or false without quotes", severity="warning"))
    elif "decoupled" in triton_config and not decoupled and _declares_input(entry, "streaming"):
        sink.add(doc.problem((_TRITON_CONFIG, "decoupled"), "config.pbtxt declares input 'streaming' but "
                                                            "triton_config.decoupled is false: streaming requests "
                                                            "fail with \"Streaming is only supported in decoupled "
                                                            "mode.\"", "set triton_config.decoupled: true to stream",
                             severity="warning"))


def _declares_input(entry: ModelEntry, name: str) -> bool:
    return entry.config is not None and any(tensor.name == name for tensor in entry.config.input)


def _ranks(doc: _Yaml) -> Optional[int]:
    sizes = [doc.data.get(key, 1) for key in ("tensor_parallel_size", "pipeline_parallel_size")]
    if not all(isinstance(size, int) and not isinstance(size, bool) for size in sizes):
        return None
    return int(sizes[0]) * int(sizes[1])


def _check_devices(doc: _Yaml, entry: ModelEntry, sink: Sink, gpus: Optional[int]) -> None:
    config = entry.config
    assert config is not None
    count = max(config.instance_group[0].count, 1) if config.instance_group else 1
    if _DEVICES not in config.parameters:
        if count > 1:
            sink.error(entry, ("instance_group", 0, "count"),
                       f"instance count is {count} but parameters has no {_DEVICES}: NVIDIA's model.py stops "
                       "with \"gpu_device_ids parameter required when instance count > 1\"",
                       hint=f'add parameters {{ key: "{_DEVICES}" value {{ string_value: "0;1" }} }}, one '
                            ";-separated group of GPU ids per instance, and launch with --no-mpi")
        return
    where = ("parameters", _DEVICES)
    groups = config.parameters[_DEVICES].string_value.split(";")
    if len(groups) != count:
        sink.error(entry, where, f"{_DEVICES} has {len(groups)} ;-separated group(s) but the instance count is "
                                 f"{count}", hint="give one group of GPU ids per instance, e.g. \"0,1;2,3\" for 2")
        return
    _check_groups(doc, entry, sink, groups, gpus)


def _check_groups(doc: _Yaml, entry: ModelEntry, sink: Sink, groups: list[str], gpus: Optional[int]) -> None:
    where = ("parameters", _DEVICES)
    ranks = _ranks(doc)
    for index, group in enumerate(groups):
        ids = [part.strip() for part in group.split(",")]
        if not all(part.isdigit() for part in ids):
            sink.error(entry, where, f"{_DEVICES} group {index} ('{group}') is not a comma-separated list of "
                                     "GPU ids", hint="write GPU ids as numbers, e.g. \"0,1;2,3\"")
            return
        if ranks is not None and len(ids) != ranks:
            sink.error(entry, where, f"{_DEVICES} gives instance {index} {len(ids)} GPU(s) ('{group}') but "
                                     f"tensor_parallel_size * pipeline_parallel_size in {doc.where.path} is "
                                     f"{ranks}", hint=f"give each group exactly {ranks} comma-separated GPU ids")
            return
        beyond = [int(part) for part in ids if gpus is not None and int(part) >= gpus]
        if beyond:
            sink.error(entry, where, f"{_DEVICES} names GPU {beyond[0]} but the host has {gpus} GPU(s)",
                       hint=f"use GPU ids 0..{gpus - 1}" if gpus else "this host has no GPU")
            return


def _precision_need(value: object) -> Optional[float]:
    text = str(value).upper() if isinstance(value, str) else ""
    if "FP4" in text:
        return _FP4_CC
    return _FP8_CC if "FP8" in text else None


def _check_precision(doc: _Yaml, sink: Sink, target: LlmTarget) -> None:
    if target.compute is None:
        return
    kv_cache, quant = doc.data.get(_KV), doc.data.get("quant_config")
    spots: list[tuple[Loc, str, object]] = [(("model",), "the checkpoint", doc.data.get("model"))]
    if isinstance(kv_cache, dict):
        spots.append(((_KV, "dtype"), f"{_KV}.dtype", kv_cache.get("dtype")))
    if isinstance(quant, dict):
        spots.append((("quant_config", "quant_algo"), "quant_config.quant_algo", quant.get("quant_algo")))
    for loc, what, value in spots:
        need = _precision_need(value)
        if need is not None and target.compute < need:
            sink.add(doc.problem(loc, f"{what} '{value}' needs a GPU of compute capability {need} or newer; "
                                      f"{target.gpu} has {target.compute}", _HINTS[need]))


def _check_keys(doc: _Yaml, sink: Sink, rel: Release) -> None:
    for key in doc.data:
        if key == _TRITON_CONFIG or str(key).startswith("_"):
            continue
        _check_key(doc, sink, rel, str(key), (key,))
    kv_cache = doc.data.get(_KV)
    if isinstance(kv_cache, dict):
        for key in kv_cache:
            _check_key(doc, sink, rel, f"{_KV}.{key}", (_KV, key))


def _check_key(doc: _Yaml, sink: Sink, rel: Release, key: str, loc: Loc) -> None:
    reason = releases.check_llm_key(key, rel)
    if reason is None:
        return
    if reason.startswith("needs"):
        hint = "use an image with a newer TensorRT-LLM, or remove the key"
    else:
        close = releases.closest_key(key)
        hint = f"did you mean '{close}'?" if close else "remove it; LLM() refuses arguments it does not know"
    sink.add(doc.problem(loc, f"'{key}' in model.yaml: {reason}", hint, severity="warning"))


def _check_release(doc: _Yaml, entry: ModelEntry, sink: Sink, target: LlmTarget) -> None:
    rel = target.release
    gap = releases.trtllm_image_gap(rel)
    if gap is not None:
        if target.explicit:
            last = releases.newest_release(with_trtllm=True)
            sink.add(doc.problem((), f"NVIDIA's llmapi model runs in a -trtllm-python-py3 image, but {gap}",
                                 f"serve it with NGC {last.ngc}'s image (TensorRT-LLM {last.trtllm}), or with a "
                                 "TensorRT-LLM image you build", severity="warning"))
        return
    if target.explicit and not releases.has_llmapi_model(rel):
        sink.add(doc.problem((), f"NGC {rel.ngc} ships TRT-LLM {rel.trtllm}, older than NVIDIA's llmapi model",
                             "use a -trtllm-python-py3 image of 25.06 or newer", severity="warning"))
    assert entry.config is not None
    for index, tensor in enumerate(entry.config.input):
        if not releases.llmapi_tensor_available(tensor.name, rel):
            since = releases.LLMAPI_TENSOR_SINCE[tensor.name]
            sink.warning(entry, ("input", index),
                         f"input '{tensor.name}' is read only by the llmapi model of TRT-LLM {since} or newer; "
                         f"the image of NGC {rel.ngc} has {rel.trtllm}, whose model.py ignores it",
                         hint="remove the input, or use an image with a newer TensorRT-LLM")
