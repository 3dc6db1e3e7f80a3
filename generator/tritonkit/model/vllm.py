"""``llms:`` entries with ``engine.kind: vllm``: one model of Triton's vLLM backend.

The layout of triton-inference-server/vllm_backend: ``config.pbtxt`` with ``backend: "vllm"`` and one
``KIND_MODEL`` instance (the backend's ``auto_complete_config`` declares the tensors and makes the model
decoupled), and ``1/model.json`` whose keys go to vLLM's ``AsyncEngineArgs`` as they are, so an unknown
key fails the load. It runs only in NGC's -vllm-python-py3 images; tritonkit generates and validates it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.model.types import FileSource, ModelUnit
from tritonkit.triton import releases

if TYPE_CHECKING:
    from tritonkit.model.llm import _Builder

__all__ = ["RESERVED_VLLM_ARGS", "build_vllm_unit", "check_vllm", "vllm_engine_args"]

#: model.json keys written from dedicated spec keys; llm_args may not set them again.
RESERVED_VLLM_ARGS = {
    "model": "engine.model", "tensor_parallel_size": "engine.tensor_parallel_size",
    "pipeline_parallel_size": "engine.pipeline_parallel_size", "max_num_seqs": "max_batch_size",
    "max_model_len": "max_input_len + max_output_len", "gpu_memory_utilization": "kv_cache.free_gpu_memory_fraction",
    "enable_prefix_caching": "kv_cache.enable_reuse", "kv_cache_dtype": "kv_cache.dtype",
    "max_num_batched_tokens": "engine.max_num_tokens",
}
_KV_DTYPES = {"auto": None, "fp8": "fp8", "float16": None, "bfloat16": None, "nvfp4": None}


def check_vllm(builder: _Builder) -> None:
    """Problems of a vLLM entry: its layout, instance groups, and engine arguments against the release."""
    llm, engine = builder.llm, builder.llm.engine
    if llm.layout not in (None, "vllm"):
        builder.problem(("layout",), f"is {llm.layout}, but engine kind vllm serves only the vLLM backend's layout",
                        "remove layout, or use engine kind pytorch or tensorrt_llm_api")
    if llm.layout == "vllm" and engine.kind != "vllm":
        builder.problem(("layout",), f"is vllm, but engine kind is {engine.kind}", "set engine.kind: vllm")
    if engine.kind != "vllm":
        return
    if llm.kv_cache.dtype == "nvfp4":
        builder.problem(("kv_cache", "dtype"), "is nvfp4, which vLLM's kv_cache_dtype does not take",
                        "use fp8 or auto")
    if llm.instance_group:
        builder.problem(("instance_group",), "is set, but the vLLM backend runs one KIND_MODEL instance that "
                        "places itself by tensor_parallel_size", "remove instance_group")
    rel = _release(builder)
    for key in engine.llm_args:
        if key in RESERVED_VLLM_ARGS:
            builder.problem(("engine", "llm_args", key), "is written by tritonkit from another key",
                            f"set {RESERVED_VLLM_ARGS[key]} instead")
            continue
        reason = releases.check_vllm_key(key, rel) if rel is not None else None
        close = releases.closest_key(key, vllm=True)
        close = close if close != key else None
        if reason is not None and (close or "removed" in reason or "needs" in reason):
            # Only a likely typo or a known version change is an error: vLLM has hundreds of
            # arguments and tritonkit knows the common ones.
            builder.problem(("engine", "llm_args", key), f"is {reason}",
                            f"did you mean {close!r}?" if close else "remove it, or target another release")


def _release(builder: _Builder) -> releases.Release | None:
    try:
        return releases.release(builder.loaded.spec.triton.version)
    except KeyError:
        return None


def vllm_engine_args(builder: _Builder) -> dict[str, Any]:
    """The ``AsyncEngineArgs`` of ``1/model.json``."""
    llm, engine, kv = builder.llm, builder.llm.engine, builder.llm.kv_cache
    args: dict[str, Any] = {
        "model": engine.model, "tensor_parallel_size": engine.tensor_parallel_size,
        "pipeline_parallel_size": engine.pipeline_parallel_size, "max_num_seqs": llm.max_batch_size,
        "max_model_len": llm.max_input_len + llm.max_output_len,
        "gpu_memory_utilization": kv.free_gpu_memory_fraction, "enable_prefix_caching": kv.enable_reuse}
    if _KV_DTYPES.get(kv.dtype):
        args["kv_cache_dtype"] = _KV_DTYPES[kv.dtype]
    if engine.max_num_tokens:
        args["max_num_batched_tokens"] = engine.max_num_tokens
    args.update(engine.llm_args)
    return args


def build_vllm_unit(builder: _Builder) -> ModelUnit:
    """The one model of a vLLM entry, named after the entry."""
    config = pb.ModelConfig(name=builder.llm.name, backend="vllm")
    group = config.instance_group.add()
    group.kind = pb.ModelInstanceGroup.KIND_MODEL
    group.count = 1
    data = (json.dumps(vllm_engine_args(builder), indent=2) + "\n").encode()
    return builder.unit(config, {"model.json": FileSource(data=data)})
