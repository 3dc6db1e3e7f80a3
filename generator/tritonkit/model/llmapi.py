"""``llms:`` entries in the LLM-API layout: one text-in, text-out Python model per LLM.

``engine.kind: pytorch`` serves the interface locally with tritonkit's PyTorch engine (settings in
``parameters``); ``engine.kind: tensorrt_llm_api`` writes TensorRT-LLM's layout as NVIDIA documents it
(``1/model.yaml`` holding the ``LLM()`` arguments and ``triton_config``; no ``max_batch_size`` or
transaction policy in config.pbtxt, which the model's ``auto_complete_config`` sets from the file).
Both run tritonkit's own ``model.py`` (``python_backends/llm_api.py``); docs/llm.md says why.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml
from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.model import llm_config
from tritonkit.model.types import FileSource, ModelUnit, python_backend_files
from tritonkit.spec.schema import ParameterValue
from tritonkit.triton import releases
from tritonkit.triton.llmapi import declared_inputs, declared_outputs

if TYPE_CHECKING:
    from tritonkit.model.llm import _Builder

__all__ = ["LLMAPI_FILES", "RESERVED_LLM_ARGS", "TRTLLM_VERSION_LOCAL", "build_llmapi_unit", "check_llmapi"]

#: tritonkit's model and the helpers copied beside it, by engine kind.
LLMAPI_FILES = {
    "pytorch": ("llm_api.py", ("llm_api_local.py", "llm_common.py", "llm_generate.py", "llm_grammar.py",
                               "llm_kv.py", "llm_metrics.py", "llm_request.py", "llm_scheduler.py",
                               "llm_sequence.py", "llm_slots.py", "llm_steps.py", "llm_triton.py")),
    "tensorrt_llm_api": ("llm_api.py", ("llm_api_trtllm.py", "llm_common.py", "llm_request.py", "llm_triton.py")),
}
#: The interface the local engine declares: TensorRT-LLM 1.2.1's, the release of NGC's images up to 26.07.
TRTLLM_VERSION_LOCAL = "1.2.1"
#: model.yaml keys tritonkit writes from dedicated spec keys; llm_args may not set them again.
RESERVED_LLM_ARGS = {
    "model": "engine.model", "backend": "(always pytorch)", "tensor_parallel_size": "engine.tensor_parallel_size",
    "pipeline_parallel_size": "engine.pipeline_parallel_size",
    "moe_expert_parallel_size": "engine.moe_expert_parallel_size", "max_batch_size": "max_batch_size",
    "max_num_tokens": "engine.max_num_tokens", "max_seq_len": "max_input_len + max_output_len",
    "kv_cache_config": "kv_cache", "triton_config": "streaming",
}
#: The summed KV-cache fraction of the instances that share one GPU may not pass this.
_GPU_SHARE_LIMIT = 0.95


def _add_llmapi_tensors(config: pb.ModelConfig, trtllm_version: str, local: bool = False) -> None:
    """Declare the LLM-API interface's inputs and outputs as TensorRT-LLM ``trtllm_version`` has them.

    ``local``: the model is served by tritonkit's PyTorch engine, which also takes ``LOCAL_INPUTS``.
    """
    for tensor in declared_inputs(trtllm_version, local):
        item = config.input.add(name=tensor.name, data_type=pb.DataType.Value(f"TYPE_{tensor.dtype}"))
        item.dims.extend(tensor.dims)
        item.optional = tensor.optional
    for tensor in declared_outputs():
        out = config.output.add(name=tensor.name, data_type=pb.DataType.Value(f"TYPE_{tensor.dtype}"))
        out.dims.extend(tensor.dims)


def _files(kind: str) -> dict[str, FileSource]:
    return python_backend_files(*LLMAPI_FILES[kind])


def check_llmapi(builder: _Builder) -> None:
    """Problems of an LLM-API entry: layout vs engine, GPU groups, KV-cache shares, LLM() arguments."""
    llm, engine = builder.llm, builder.llm.engine
    if engine.kind == "tensorrt_llm":
        builder.problem(("layout",), "is llmapi, but engine kind tensorrt_llm (the C++ engine) serves only the "
                        "ensemble layout", "set layout: ensemble, or use engine kind tensorrt_llm_api")
        return
    if engine.kind != "tensorrt_llm_api":
        return
    ranks = engine.tensor_parallel_size * engine.pipeline_parallel_size
    for i, group in enumerate(llm.instance_group):
        if group.gpus is not None and len(group.gpus) % ranks:
            builder.problem(("instance_group", i, "gpus"), f"lists {len(group.gpus)} GPU(s), which "
                            f"tensor_parallel_size x pipeline_parallel_size = {ranks} does not divide",
                            f"list a multiple of {ranks} GPU ids (count x {ranks})")
        elif group.gpus is not None and len(group.gpus) != group.count * ranks:
            sharing = group.count * ranks / len(group.gpus)
            if sharing * llm.kv_cache.free_gpu_memory_fraction > _GPU_SHARE_LIMIT:
                fraction = round(_GPU_SHARE_LIMIT / sharing, 2)
                builder.problem(("kv_cache", "free_gpu_memory_fraction"),
                                f"is {llm.kv_cache.free_gpu_memory_fraction} for each of {sharing:g} instances on "
                                f"one GPU ({sharing * llm.kv_cache.free_gpu_memory_fraction:.2f} in all)",
                                f"lower it to {fraction} or less, or give each instance its own GPUs")
    for key in engine.llm_args:
        if key in RESERVED_LLM_ARGS:
            builder.problem(("engine", "llm_args", key), "is written by tritonkit from another key",
                            f"set {RESERVED_LLM_ARGS[key]} instead")
    _check_release(builder)


def _check_release(builder: _Builder) -> None:
    """The targeted NGC release must ship the LLM-API model and know every LLM() argument given."""
    version = builder.loaded.spec.triton.version
    try:
        rel = releases.release(version)
    except KeyError:
        return  # an NGC release the matrix does not know yet: nothing to check against
    gap = releases.trtllm_image_gap(rel)
    if gap is not None and not builder.loaded.spec.deploy.image:
        last = releases.newest_release(with_trtllm=True)
        builder.problem(("engine", "kind"), f"is tensorrt_llm_api, which runs in NGC's -trtllm-python-py3 image, "
                        f"but {gap}",
                        f"set triton.version to \"{last.ngc}\" (TensorRT-LLM {last.trtllm}), or set deploy.image to "
                        "a TensorRT-LLM image you build")
    if rel.trtllm is not None and not releases.has_llmapi_model(rel):
        builder.problem(("engine", "kind"), f"is tensorrt_llm_api, but NGC {version} ships TensorRT-LLM "
                        f"{rel.trtllm}, which has no LLM-API Triton model",
                        "set triton.version to a newer release (26.04 ships TensorRT-LLM 1.2.1)")
    kv = builder.llm.kv_cache
    keys = [*builder.llm.engine.llm_args, *(["kv_cache_config.host_cache_size"] if kv.host_cache_size else [])]
    for key in keys:
        reason = releases.check_llm_key(key, rel)
        if reason is not None:
            close = releases.closest_key(key)
            builder.problem(("engine", "llm_args", key) if "." not in key else ("kv_cache", "host_cache_size"),
                            f"is {reason}", f"did you mean {close!r}?" if close else
                            "remove it, or target a release whose TensorRT-LLM has it")


def _gpu_device_ids(builder: _Builder) -> str:
    """``0,1;2,3``: each instance's GPUs, one ``;`` group per instance (NVIDIA's multi-instance layout)."""
    ranks = builder.llm.engine.tensor_parallel_size * builder.llm.engine.pipeline_parallel_size
    groups: list[str] = []
    for group in builder.llm.instance_group:
        gpus = list(group.gpus) if group.gpus else list(range(ranks))
        for i in range(group.count):
            start = (i * ranks) % len(gpus)
            groups.append(",".join(str(g) for g in (gpus + gpus)[start:start + ranks]))
    return ";".join(groups)


def model_yaml_settings(builder: _Builder) -> dict[str, Any]:
    """The ``LLM()`` arguments and ``triton_config`` of ``1/model.yaml``."""
    llm, engine, kv = builder.llm, builder.llm.engine, builder.llm.kv_cache
    settings: dict[str, Any] = {
        "model": engine.model, "backend": "pytorch", "tensor_parallel_size": engine.tensor_parallel_size,
        "pipeline_parallel_size": engine.pipeline_parallel_size}
    if engine.moe_expert_parallel_size:
        settings["moe_expert_parallel_size"] = engine.moe_expert_parallel_size
    settings.update({"max_batch_size": llm.max_batch_size, "max_num_tokens": engine.max_num_tokens or 8192,
                     "max_seq_len": llm.max_input_len + llm.max_output_len})
    cache: dict[str, Any] = {"enable_block_reuse": kv.enable_reuse,
                             "free_gpu_memory_fraction": kv.free_gpu_memory_fraction}
    optional = {"max_tokens": kv.max_tokens, "host_cache_size": kv.host_cache_size,
                "dtype": None if kv.dtype == "auto" else kv.dtype}
    cache.update({k: v for k, v in optional.items() if v is not None})
    settings["kv_cache_config"] = cache
    # The model passes a request's guided_decoding_param_* inputs on as GuidedDecodingParams; TensorRT-LLM
    # compiles them with this backend (xgrammar, its default; llm_args may choose llguidance).
    settings["guided_decoding_backend"] = "xgrammar"
    settings.update(engine.llm_args)
    settings["triton_config"] = {"max_batch_size": 0, "decoupled": llm.streaming}
    return settings


def _render_yaml(builder: _Builder, settings: dict[str, Any]) -> bytes:
    header = (f"# Generated by tritonkit from {builder.loaded.document.path.name}: the arguments of "
              "tensorrt_llm.LLM(...),\n# plus triton_config (read by the model, not passed to LLM). Edit the spec "
              "and run `tritonkit generate`, not this file.\n")
    return (header + yaml.safe_dump(settings, sort_keys=False)).encode()


def _local_parameters(builder: _Builder) -> dict[str, ParameterValue]:
    llm = builder.llm
    source = builder.local_path(llm.engine.model or "", ("engine", "model"), llm.name, True)
    params: dict[str, ParameterValue] = dict(llm_config.pytorch_parameters(llm, source))
    tokenizer = builder.local_path(llm.tokenizer, ("tokenizer",), llm.name, True) if llm.tokenizer else source
    params.update({"tokenizer": tokenizer, "chat_template": llm.chat_template, "system_prompt": llm.system_prompt or "",
                   "max_batch_size": llm.max_batch_size, "max_input_len": llm.max_input_len,
                   "max_output_len": llm.max_output_len, "stop_words": json.dumps(llm.stop_words)})
    if llm.tool_parser:  # read by the OpenAI gateway
        params["tool_parser"] = llm.tool_parser
    return params


def build_llmapi_unit(builder: _Builder) -> ModelUnit:
    """The one model of an LLM-API entry, named after the entry."""
    llm = builder.llm
    config = pb.ModelConfig(name=llm.name, backend="python")
    _add_llmapi_tensors(config, TRTLLM_VERSION_LOCAL, local=llm.engine.kind == "pytorch")
    files = _files(llm.engine.kind)
    if llm.engine.kind == "pytorch":
        config.model_transaction_policy.decoupled = llm.streaming
        llm_config.add_pytorch_instances(config, llm)
        llm_config.set_parameters(config, _local_parameters(builder))
    else:
        count = sum(g.count for g in llm.instance_group) or 1
        llm_config.add_instances(config, "KIND_CPU", count)
        params: dict[str, ParameterValue] = {"tool_parser": llm.tool_parser} if llm.tool_parser else {}
        if count > 1:
            params["gpu_device_ids"] = _gpu_device_ids(builder)
        if params:
            llm_config.set_parameters(config, params)
        files["model.yaml"] = FileSource(data=_render_yaml(builder, model_yaml_settings(builder)))
    return builder.unit(config, files)
