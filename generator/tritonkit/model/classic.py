"""A ``models:`` entry of the spec to a ``ModelConfig`` message and the files of its version folder.

Mirrors ``model_config.proto`` (triton-inference-server/common, protobuf/model_config.proto).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import Loc
from tritonkit.model.artifacts import collect_files, read_onnx_io, resolve_path
from tritonkit.model.deploy import apply_tensorrt_target, tensorrt_build
from tritonkit.model.proto import check_block, merge_raw_config
from tritonkit.model.types import FileSource, ModelUnit
from tritonkit.spec.load import LoadedSpec
from tritonkit.spec.schema import (
    DynamicBatching,
    InstanceGroup,
    ModelSpec,
    ParameterValue,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
)
from tritonkit.triton import BACKEND_FILES, BACKEND_PLATFORMS, default_model_file

__all__ = ["DEFAULT_VERSION_POLICY", "build_classic_unit", "fill_instance_groups", "fill_parameters"]

#: Keep the last two versions loaded, so a rollback is one edit of the version policy.
DEFAULT_VERSION_POLICY = VersionPolicy.model_validate({"latest": {"num_versions": 2}})

_KINDS = {"gpu": pb.ModelInstanceGroup.KIND_GPU, "cpu": pb.ModelInstanceGroup.KIND_CPU,
          "model": pb.ModelInstanceGroup.KIND_MODEL, "auto": pb.ModelInstanceGroup.KIND_AUTO}


def _fill_tensor(target: pb.ModelInput | pb.ModelOutput, tensor: TensorSpec) -> None:
    target.name = tensor.name
    target.data_type = pb.DataType.Value(tensor.data_type)
    target.dims.extend(tensor.dims)
    if tensor.reshape is not None:
        target.reshape.SetInParent()
        target.reshape.shape.extend(tensor.reshape)
    if isinstance(target, pb.ModelInput):
        target.optional = tensor.optional
        target.allow_ragged_batch = tensor.allow_ragged_batch
    elif tensor.label_filename:
        target.label_filename = tensor.label_filename


def _fill_queue_policy(target: pb.ModelQueuePolicy, policy: QueuePolicy) -> None:
    target.timeout_action = pb.ModelQueuePolicy.TimeoutAction.Value(policy.timeout_action)
    target.default_timeout_microseconds = policy.default_timeout_microseconds
    target.allow_timeout_override = policy.allow_timeout_override
    target.max_queue_size = policy.max_queue_size


def _fill_dynamic_batching(target: pb.ModelDynamicBatching, batching: DynamicBatching) -> None:
    target.SetInParent()
    target.preferred_batch_size.extend(batching.preferred_batch_size)
    target.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
    target.preserve_ordering = batching.preserve_ordering
    target.priority_levels = batching.priority_levels
    target.default_priority_level = batching.default_priority_level
    if batching.default_queue_policy is not None:
        _fill_queue_policy(target.default_queue_policy, batching.default_queue_policy)
    for level, policy in batching.priority_queue_policy.items():
        _fill_queue_policy(target.priority_queue_policy[level], policy)


def fill_instance_groups(config: pb.ModelConfig, groups: list[InstanceGroup]) -> None:
    """Append the spec's instance groups; with none given, one ``KIND_AUTO`` instance, written explicitly."""
    for group in groups or [InstanceGroup()]:
        target = config.instance_group.add()
        if group.name:
            target.name = group.name
        target.kind = _KINDS[group.kind]
        target.count = group.count
        target.gpus.extend(group.gpus or [])


def fill_version_policy(config: pb.ModelConfig, policy: Optional[VersionPolicy],
                        default: VersionPolicy = DEFAULT_VERSION_POLICY) -> None:
    """Set the version policy: the spec's, else ``default`` (the last two versions loaded)."""
    chosen = policy or default
    if chosen.latest is not None:
        config.version_policy.latest.num_versions = chosen.latest.num_versions
    elif chosen.all is not None:
        config.version_policy.all.SetInParent()
    elif chosen.specific is not None:
        config.version_policy.specific.versions.extend(chosen.specific.versions)


def _parameter_text(value: ParameterValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fill_parameters(config: pb.ModelConfig, parameters: Mapping[str, ParameterValue]) -> None:
    """Backend parameters are always string values in Triton; booleans become ``true``/``false``."""
    for key, value in parameters.items():
        config.parameters[key].string_value = _parameter_text(value)


def _fill_io(loaded: LoadedSpec, config: pb.ModelConfig, model: ModelSpec, loc: Loc,
             artifact: Optional[Path]) -> None:
    inputs, outputs = list(model.input), list(model.output)
    reads_onnx = model.backend == "onnxruntime" or tensorrt_build(model) is not None
    if reads_onnx and not inputs and not outputs and artifact is not None:
        inputs, outputs = read_onnx_io(loaded, artifact, model.max_batch_size, (*loc, "artifact"))
    for tensor in inputs:
        _fill_tensor(config.input.add(), tensor)
    for tensor in outputs:
        _fill_tensor(config.output.add(), tensor)


def _fill_blocks(loaded: LoadedSpec, config: pb.ModelConfig, model: ModelSpec, loc: Loc) -> list[Problem]:
    problems: list[Problem] = []
    if model.sequence_batching is not None:
        problems += check_block(loaded, config.sequence_batching, model.sequence_batching,
                                (*loc, "sequence_batching"))
    for i, warmup in enumerate(model.model_warmup):
        problems += check_block(loaded, config.model_warmup.add(), warmup, (*loc, "model_warmup", i))
    if model.optimization is not None:
        problems += check_block(loaded, config.optimization, model.optimization, (*loc, "optimization"))
    return problems


def _fill_ensemble(config: pb.ModelConfig, model: ModelSpec) -> None:
    config.platform = "ensemble"
    config.ensemble_scheduling.SetInParent()
    for step in model.steps:
        target = config.ensemble_scheduling.step.add()
        target.model_name = step.model_name
        target.model_version = step.model_version
        for key, value in step.input_map.items():
            target.input_map[key] = value
        for key, value in step.output_map.items():
            target.output_map[key] = value
    if model.instance_group:  # Triton refuses it on an ensemble; validate says so, at this spec key
        fill_instance_groups(config, model.instance_group)


def _version_files(loaded: LoadedSpec, model: ModelSpec, loc: Loc) -> tuple[dict[str, FileSource], Optional[Path]]:
    files: dict[str, FileSource] = {}
    artifact: Optional[Path] = None
    if model.artifact is not None:
        artifact = resolve_path(loaded, model.artifact, (*loc, "artifact"), kind="file or folder")
        name = default_model_file(model.backend, configured=model.default_model_filename or "") or ""
        if tensorrt_build(model) is None:  # an engine is built into the folder on the GPU host instead
            files.update(collect_files(artifact, name))
    for name, value in model.files.items():
        files.update(collect_files(resolve_path(loaded, value, (*loc, "files", name)), name))
    return files, artifact


def build_classic_unit(loaded: LoadedSpec, index: int) -> ModelUnit:
    """Build the config message and version files of ``spec.models[index]``.

    Raises:
        SpecError: a file is missing, a Triton-shaped block has unknown fields, or raw_config is invalid.

    """
    model = loaded.spec.models[index]
    loc: Loc = ("models", index)
    config = pb.ModelConfig(name=model.name, max_batch_size=model.max_batch_size)
    files, artifact = _version_files(loaded, model, loc) if model.backend != "ensemble" else ({}, None)
    if model.backend == "ensemble":
        _fill_ensemble(config, model)
    else:
        config.backend = model.backend
        if model.backend in BACKEND_PLATFORMS:
            config.platform = BACKEND_PLATFORMS[model.backend]
        fill_instance_groups(config, model.instance_group)
    if model.default_model_filename:
        config.default_model_filename = model.default_model_filename
    _fill_io(loaded, config, model, loc, artifact)
    if model.dynamic_batching is not None:
        _fill_dynamic_batching(config.dynamic_batching, model.dynamic_batching)
    fill_version_policy(config, model.version_policy)
    if model.model_transaction_policy is not None:
        config.model_transaction_policy.decoupled = model.model_transaction_policy.decoupled
    if model.response_cache is not None:
        config.response_cache.enable = model.response_cache.enable
    fill_parameters(config, model.parameters)
    problems = _fill_blocks(loaded, config, model, loc)
    if model.raw_config:
        problems += merge_raw_config(loaded, config, model.raw_config, (*loc, "raw_config"))
    if problems:
        raise SpecError(problems)
    build_sources: dict[str, FileSource] = {}
    if tensorrt_build(model) is not None and artifact is not None:
        apply_tensorrt_target(config)
        build_sources = collect_files(artifact, BACKEND_FILES["onnxruntime"])
    return ModelUnit(name=model.name, config=config, version_files=files, spec_loc=loc, build_sources=build_sources)
