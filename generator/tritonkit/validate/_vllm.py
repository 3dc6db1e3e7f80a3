"""Rules for Triton's vLLM backend: ``backend: "vllm"`` models and their ``model.json``.

triton-inference-server/vllm_backend reads ``<version>/model.json`` and passes it to vLLM's
``AsyncEngineArgs(**config)``: a missing file, bad JSON or an unknown key fails the load. Every
version the policy loads is checked.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import Problem
from tritonkit.triton import releases
from tritonkit.validate._report import ModelEntry, Sink
from tritonkit.validate._view import RepositoryView

__all__ = ["check_vllm"]

_MODEL_JSON = "model.json"


def check_vllm(view: RepositoryView, entry: ModelEntry, sink: Sink, release: Optional[releases.Release]) -> None:
    """Check a vLLM-backend model: its instance kind and each loaded version's ``model.json``."""
    config = entry.config
    if config is None or config.backend != "vllm":
        return
    for version in entry.available_versions():
        path = f"{entry.folder}/{version}/{_MODEL_JSON}"
        raw = view.version_file(entry.name, str(version), _MODEL_JSON)
        if raw is None:
            sink.add(Problem(f"version {version} of vLLM model {entry.name} has no {_MODEL_JSON}; the vLLM "
                             "backend fails to load without it", path=path, model=entry.name,
                             hint="write the vLLM engine arguments there, e.g. {\"model\": \"<HF id>\"}"))
            continue
        args = _parse(raw, path, entry.name, sink)
        if args is not None:
            _check_args(args, path, entry, sink, release)


def _parse(raw: bytes, path: str, model: str, sink: Sink) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        sink.add(Problem(f"{_MODEL_JSON} is not UTF-8 ({exc.reason})", path=path, model=model,
                         hint="save the file as UTF-8"))
        return None
    except json.JSONDecodeError as exc:
        sink.add(Problem(f"{_MODEL_JSON} is not valid JSON: {exc.msg}", path=path, line=exc.lineno, col=exc.colno,
                         model=model, hint="fix the JSON syntax at that place"))
        return None
    if not isinstance(data, dict):
        sink.add(Problem(f"{_MODEL_JSON} must be a JSON object of vLLM engine arguments", path=path, model=model,
                         hint='write {"model": "<HF id or path>", ...}'))
        return None
    return data


def _check_args(args: dict[str, Any], path: str, entry: ModelEntry, sink: Sink,
                release: Optional[releases.Release]) -> None:
    if "model" not in args:
        sink.add(Problem(f"{_MODEL_JSON} names no model", path=path, model=entry.name,
                         hint='add "model": "<Hugging Face id or path inside the container>"'))
    ranks = int(args.get("tensor_parallel_size", 1) or 1) * int(args.get("pipeline_parallel_size", 1) or 1)
    kinds = {g.kind for g in entry.config.instance_group} if entry.config is not None else set()
    if ranks > 1 and pb.ModelInstanceGroup.KIND_GPU in kinds:
        sink.add(Problem(f"model {entry.name} spans {ranks} GPUs but has a KIND_GPU instance group; the vLLM "
                         "backend says \"KIND_GPU is currently for single-GPU models, please specify KIND_MODEL\"",
                         path=f"{entry.folder}/config.pbtxt", model=entry.name,
                         hint="use instance_group [{kind: KIND_MODEL, count: 1}]"))
    for key in args:
        reason = releases.check_vllm_key(key, release) if release is not None else None
        if reason is None:
            continue
        close = releases.closest_key(key, vllm=True)
        hint = f"did you mean {close!r}?" if close and close != key else "remove it, or check the image's vLLM"
        sink.add(Problem(f"\"{key}\" in {_MODEL_JSON} is {reason}", path=path, model=entry.name, severity="warning",
                         hint=hint))
