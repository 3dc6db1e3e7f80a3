"""``ModelConfig`` messages of the LLM layouts' models: tensors, instances, parameters and ensemble steps.

The tensors and the ensemble's wiring are NVIDIA's, from ``tritonkit.triton.inflight_batcher``; what this
module adds is what the spec decides (instances, the engines' parameters, sampling defaults).
See https://github.com/triton-inference-server/common/blob/main/protobuf/model_config.proto.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Union

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.model.classic import fill_parameters
from tritonkit.spec.llm import LLMSpec
from tritonkit.triton.inflight_batcher import (
    ENGINE_INPUTS,
    PYTORCH_UNSUPPORTED,
    TENSORS,
    Tensor,
    declared,
    ensemble_steps,
)

__all__ = [
    "add_instances",
    "add_pytorch_instances",
    "add_tensors",
    "fill_ensemble",
    "fill_trtllm_engine",
    "pytorch_parameters",
    "set_parameters",
    "spec_sampling_defaults",
]


def _add(fields: object, tensor: Tensor, is_input: bool) -> None:
    item = fields.add()  # type: ignore[attr-defined]
    item.name = tensor.name
    item.data_type = pb.DataType.Value(f"TYPE_{tensor.dtype}")
    item.dims.extend(tensor.dims)
    if is_input:
        item.optional = tensor.optional
        item.allow_ragged_batch = tensor.ragged
        if tensor.reshape:
            item.reshape.SetInParent()


def add_tensors(config: pb.ModelConfig, role: str) -> None:
    """Declare the inputs and outputs of one model of the pipeline."""
    inputs, outputs = TENSORS[role]
    for tensor in declared(inputs):
        _add(config.input, tensor, True)
    for tensor in declared(outputs):
        _add(config.output, tensor, False)


def set_parameters(config: pb.ModelConfig, params: Mapping[str, Union[str, int, float, bool]]) -> None:
    """Write backend parameters, every one as a ``string_value`` as the backends expect."""
    fill_parameters(config, params)


def add_instances(config: pb.ModelConfig, kind: str, count: int, gpus: tuple[int, ...] = ()) -> None:
    """Append one instance group with an explicit kind."""
    group = config.instance_group.add()
    group.kind = pb.ModelInstanceGroup.Kind.Value(kind)
    group.count = count
    group.gpus.extend(gpus)


#: The PyTorch engine's instance kind for each ``engine.device`` when a group leaves the kind to it.
_ENGINE_KINDS = {"cuda": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}


def add_pytorch_instances(config: pb.ModelConfig, llm: LLMSpec) -> None:
    """The PyTorch engine: one instance by default, or the spec's groups (GPU ones by id).

    ``device: auto`` renders ``KIND_AUTO``: Triton makes it one ``KIND_GPU`` instance per visible GPU
    on a GPU host and ``KIND_CPU`` elsewhere, and the engine follows the kind it is given, so one
    repository serves on a laptop and on a GPU host unchanged.
    """
    if not llm.instance_group:
        add_instances(config, _ENGINE_KINDS[llm.engine.device], 1)
        return
    for group in llm.instance_group:
        if group.kind == "gpu" or group.gpus:
            kind = "KIND_GPU"
        elif group.kind == "auto":
            kind = _ENGINE_KINDS[llm.engine.device]
        else:
            kind = "KIND_CPU"
        add_instances(config, kind, group.count, tuple(group.gpus or ()))


def pytorch_parameters(llm: LLMSpec, source: str) -> dict[str, Union[str, int, float, bool]]:
    """Parameters of tritonkit's PyTorch engine: the model, where it runs, and sampling defaults."""
    sampling = llm.sampling
    params: dict[str, Union[str, int, float, bool]] = {
        "model": source, "device": llm.engine.device, "dtype": llm.engine.dtype,
        "temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
        "repetition_penalty": sampling.repetition_penalty, "trust_remote_code": llm.trust_remote_code,
        "enable_reuse": llm.kv_cache.enable_reuse, "kv_cache_tokens": llm.kv_cache.max_tokens or 0,
        # On CUDA: the most of the free GPU memory the static KV slots may take (llm_slots.py).
        "kv_cache_free_gpu_mem_fraction": llm.kv_cache.free_gpu_memory_fraction,
        # NVIDIA's parameter and default: a whole answer repeats the prompt (its ids, as the engine saw them)
        # unless the request's exclude_input_in_output says otherwise, as NVIDIA's clients expect.
        "exclude_input_in_output": False,
        "unsupported_inputs": json.dumps({t.name: PYTORCH_UNSUPPORTED[t.name] for t in declared(ENGINE_INPUTS)
                                          if t.name in PYTORCH_UNSUPPORTED}, sort_keys=True),
    }
    if sampling.seed is not None:
        params["seed"] = sampling.seed
    params["spec_sampling_defaults"] = spec_sampling_defaults(llm)
    params.update(llm.engine.parameters)
    return params


def spec_sampling_defaults(llm: LLMSpec) -> str:
    """The sampling defaults the spec sets itself, as JSON: the OpenAI gateway uses OpenAI's defaults for the rest.

    Direct Triton clients get the engine's defaults (greedy unless the spec says otherwise); an OpenAI
    client that leaves ``temperature`` out expects OpenAI's 1.0, unless the deployment chose another.
    """
    sampling = llm.sampling
    return json.dumps({name: getattr(sampling, name) for name in sorted(sampling.model_fields_set)})


def _trtllm_parameters(llm: LLMSpec) -> dict[str, Union[str, int, float, bool]]:
    engine, kv = llm.engine, llm.kv_cache
    params: dict[str, Union[str, int, float, bool]] = {
        "gpt_model_type": engine.batching_strategy, "gpt_model_path": engine.path or "",
        "max_beam_width": 1, "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        "kv_cache_free_gpu_mem_fraction": kv.free_gpu_memory_fraction, "enable_kv_cache_reuse": kv.enable_reuse,
        "exclude_input_in_output": False, "batch_scheduler_policy": "guaranteed_no_evict",
        "decoding_mode": "top_k_top_p", "enable_chunked_context": False, "normalize_log_probs": True,
        "cancellation_check_period_ms": 100, "stats_check_period_ms": 100,
        "executor_worker_path": "/opt/tritonserver/backends/tensorrtllm/trtllmExecutorWorker",
    }
    if kv.max_tokens is not None:
        params["max_tokens_in_paged_kv_cache"] = kv.max_tokens
    instances = [g for g in llm.instance_group for _ in range(g.count) if g.gpus]
    if instances:
        params["gpu_device_ids"] = ";".join(",".join(str(i) for i in g.gpus or ()) for g in instances)
    params.update(llm.engine.parameters)
    return params


def fill_trtllm_engine(config: pb.ModelConfig, llm: LLMSpec) -> None:
    """The ``tensorrtllm`` C++ backend: KIND_CPU instances placed by ``gpu_device_ids``, decoupled to stream."""
    add_tensors(config, "engine")
    config.dynamic_batching.SetInParent()
    if llm.max_queue_delay_microseconds:
        config.dynamic_batching.preferred_batch_size.append(llm.max_batch_size)
    config.dynamic_batching.max_queue_delay_microseconds = llm.max_queue_delay_microseconds
    config.model_transaction_policy.decoupled = llm.streaming
    count = sum(g.count for g in llm.instance_group) or 1
    add_instances(config, "KIND_CPU", count)
    set_parameters(config, _trtllm_parameters(llm))


def _step(config: pb.ModelConfig, model: str, inputs: dict[str, str], outputs: dict[str, str]) -> None:
    step = config.ensemble_scheduling.step.add()
    step.model_name = model
    step.model_version = -1
    for key in sorted(inputs):
        step.input_map[key] = inputs[key]
    for key in sorted(outputs):
        step.output_map[key] = outputs[key]


def fill_ensemble(config: pb.ModelConfig, preprocessing: str, engine: str, postprocessing: str) -> None:
    """Preprocessing -> engine -> postprocessing (the models so named), text in and text out, as NVIDIA's ensemble."""
    add_tensors(config, "ensemble")
    for model, inputs, outputs in ensemble_steps(preprocessing, engine, postprocessing):
        _step(config, model, inputs, outputs)
