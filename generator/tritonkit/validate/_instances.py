"""Rules for instance groups: kinds, GPU ids against the GPUs the host has, counts, profiles."""

from __future__ import annotations

from typing import Any, Optional

from tritonkit.triton import BACKEND_PLATFORMS
from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["check_instances"]

_TENSORRT_PLATFORM = BACKEND_PLATFORMS["tensorrt"]

_KINDS = {0: "KIND_AUTO", 1: "KIND_GPU", 2: "KIND_CPU", 3: "KIND_MODEL"}


def check_instances(entry: ModelEntry, sink: Sink, gpus: Optional[int]) -> None:
    """Check every instance group; ``gpus`` is how many GPUs the serving host has, if known."""
    config = entry.config
    assert config is not None
    if config.HasField("ensemble_scheduling"):
        return
    for index, group in enumerate(config.instance_group):
        label = group.name or f"{entry.name}_{index}"
        kind = _KINDS.get(group.kind, "KIND_AUTO")
        where = ("instance_group", index)
        if kind in ("KIND_CPU", "KIND_MODEL") and group.gpus:
            sink.error(entry, (*where, "gpus"),
                       f"instance group {label} of model {entry.name} has kind {kind} but specifies one "
                       "or more GPUs", hint="remove gpus, or use kind: KIND_GPU")
        elif kind == "KIND_GPU" or (kind == "KIND_AUTO" and group.gpus):
            _check_gpu_ids(entry, sink, index, group, gpus)
        if group.count < 1 and entry.locator.has(*where, "count"):  # absent count means 1
            sink.warning(entry, (*where, "count"),
                         f"instance group {label} of model {entry.name} has count {group.count}: Triton "
                         "replaces it with its default count (1; 2 for ONNX Runtime on CPU)",
                         hint="set count to the number of instances you want, or leave it out")
        if group.profile and not _is_tensorrt(config):
            sink.error(entry, (*where, "profile"),
                       f"instance group {label} of model {entry.name} specifies profile field which is "
                       "only supported for TensorRT models", hint="remove profile")


def _is_tensorrt(config: Any) -> bool:
    # Triton fills in platform tensorrt_plan for backend tensorrt before it checks profiles.
    return bool(config.platform == _TENSORRT_PLATFORM or (config.backend == "tensorrt" and not config.platform))


def _check_gpu_ids(entry: ModelEntry, sink: Sink, index: int, group: Any, gpus: Optional[int]) -> None:
    label = group.name or f"{entry.name}_{index}"
    where = ("instance_group", index)
    for position, gpu in enumerate(group.gpus):
        if gpu < 0 or (gpus is not None and gpu >= gpus):
            have = f"the host has {gpus} GPU(s): ids 0..{gpus - 1}" if gpus else "GPU ids start at 0"
            sink.error(entry, (*where, "gpus", position),
                       f"instance group {label} of model {entry.name} specifies invalid or unsupported "
                       f"gpu id {gpu}", hint=have)
            return
    if gpus == 0:
        sink.error(entry, (*where, "kind"),
                   f"instance group {label} of model {entry.name} has kind KIND_GPU but no GPUs are "
                   "available", hint="use kind: KIND_CPU on a host without GPUs")
    elif gpus is None:
        sink.warning(entry, (*where, "kind"),
                     f"instance group {label} of model {entry.name} needs a GPU; Triton refuses it on a "
                     "host without one", hint="pass --gpu-count N (the serving host's GPUs) to check it exactly")
