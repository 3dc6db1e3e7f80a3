"""The spec, its models and their ``Deployment`` to a ``KubernetesPlan``: what ``k8s/`` needs, decided and checked.

The compose stack's ``Deployment`` is reused whole (image, server command, restricted APIs); this module
adds what a cluster needs besides: GPUs per pod against the node types, ``/dev/shm`` against the
Python-backend instances, the startup allowance, and the autoscaling triggers with their models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Optional

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import Problem, SpecError
from tritonkit.k8s_conventions import SIGNAL_DEFAULTS
from tritonkit.model.deploy import Deployment, admin_key_reference
from tritonkit.model.llm import model_names
from tritonkit.model.types import ModelUnit
from tritonkit.spec.kubernetes import ENGINE_GAUGES, TRITON_COUNTERS, KubernetesSpec, parse_size_mib
from tritonkit.spec.llm import LLMSpec
from tritonkit.spec.load import LoadedSpec

__all__ = ["SHM_PER_PYTHON_INSTANCE_MIB", "KubernetesPlan", "ScalingTrigger",
           "averaged_per_pod", "build_kubernetes_plan", "counter_or_gauge"]

#: /dev/shm each Python-backend instance is given: its stub maps its own region (1 MiB default, growing
#: in 1 MiB steps, server issues #5701, #5681, #6195), and batched tensors cross it both ways.
SHM_PER_PYTHON_INSTANCE_MIB = 64
_SHM_FLOOR_MIB = 1024
_LOC = ("deploy", "kubernetes")
#: What the other engine kinds export instead of tritonkit's vLLM-named gauges (their own docs and code).
_OTHER_ENGINES = {
    "tensorrt_llm": "TensorRT-LLM's backend exports nv_trt_llm_request_metrics (request_type=\"waiting\") and "
                    "nv_trt_llm_kv_cache_block_metrics (kv_cache_block_type=\"fraction\") instead",
    "tensorrt_llm_api": "NVIDIA's LLM-API model exports no engine metric to Triton",
    "vllm": "Triton's vLLM backend exports vLLM's token counters and latency histograms, but no queue or "
            "KV-cache gauge",
}


@dataclass(frozen=True)
class ScalingTrigger:
    """One KEDA Prometheus trigger: a signal over some models' metrics, and the value that adds a replica.

    Attributes:
        signal: a tritonkit signal (``queue_compute_ratio``, ...) or a Triton metric name.
        group: the recording rules' ``signal_group`` label (``classic``, ``llm`` or ``custom``).
        models: the Triton models whose metrics count.
        threshold: scale up above this value.
        metric_type: KEDA's ``Value`` or ``AverageValue``.

    """

    signal: str
    group: str
    models: tuple[str, ...]
    threshold: float
    metric_type: str


@dataclass(frozen=True)
class KubernetesPlan:
    """Everything ``k8s/`` needs beyond the compose stack's ``Deployment``."""

    name: str
    spec: KubernetesSpec
    deployment: Deployment
    server_command: tuple[str, ...]
    gpus_per_pod: int
    python_instances: int
    shm_mib: int
    startup_timeout_s: int
    triggers: tuple[ScalingTrigger, ...]

    @property
    def uses_llm(self) -> bool:
        """True when LLM pipelines are served (HF cache, longer startup)."""
        return self.deployment.uses_llm


def _name(loaded: LoadedSpec, spec: KubernetesSpec) -> str:
    if spec.name:
        return spec.name
    stem = PurePosixPath(loaded.document.display_path).stem.lower()
    return re.sub(r"[^a-z0-9]+", "-", stem).strip("-")[:63] or "triton"


def _engine_gpus(loaded: LoadedSpec) -> int:
    sizes = [m.engine.tensor_parallel_size * m.engine.pipeline_parallel_size for m in loaded.spec.llms
             if m.engine.kind in ("tensorrt_llm", "tensorrt_llm_api")]
    return max(sizes, default=1)


def _gpus_per_pod(loaded: LoadedSpec, spec: KubernetesSpec, deployment: Deployment) -> int:
    if spec.gpus_per_pod is not None:
        return spec.gpus_per_pod
    gpus = deployment.gpus
    if gpus is None:
        return 0
    if gpus.device_ids:
        return max(gpus.device_ids) + 1
    if gpus.count == "all":
        # On a cluster a pod is the unit of scale: "every GPU" becomes what one engine needs.
        return _engine_gpus(loaded)
    return int(gpus.count or 0)


def _instances(group: pb.ModelInstanceGroup, gpus: int) -> int:
    if group.kind == pb.ModelInstanceGroup.KIND_GPU or (group.kind == pb.ModelInstanceGroup.KIND_AUTO and gpus):
        return int(group.count) * (len(group.gpus) or max(gpus, 1))
    return int(group.count)


def _python_instances(units: Sequence[ModelUnit], gpus: int) -> int:
    total = 0
    for unit in units:
        if unit.config.backend != "python":
            continue
        groups = list(unit.config.instance_group)
        total += sum(_instances(g, gpus) for g in groups) if groups else max(gpus, 1)
    return total


def _worker_models(loaded: LoadedSpec, units: Sequence[ModelUnit]) -> tuple[list[str], list[str]]:
    """(classic models that do the work, LLM models that do the work): ensembles double-count, so not them."""
    names = {unit.name for unit in units}
    classic = [u.name for u in units if u.origin == "models" and u.config.platform != "ensemble"]
    llms = [f"{m.name}_engine" if f"{m.name}_engine" in names else m.name for m in loaded.spec.llms]
    return classic, llms


def _threshold(loaded: LoadedSpec, signal: str, given: Optional[float]) -> tuple[str, float]:
    metric_type, default = SIGNAL_DEFAULTS.get(signal, ("AverageValue", None))
    if given is not None:
        return metric_type, given
    if signal == "inflight_requests":
        # Three quarters of what one replica batches at once.
        return metric_type, max(1.0, 0.75 * max((m.max_batch_size for m in loaded.spec.llms), default=8))
    if default is None:
        raise SpecError(loaded.problem((*_LOC, "autoscaling", "metric"), f"is the Triton metric {signal!r}, "
                                       "which has no default threshold", "set autoscaling.threshold"))
    return metric_type, default


def _triggers(loaded: LoadedSpec, spec: KubernetesSpec, units: Sequence[ModelUnit]) -> tuple[ScalingTrigger, ...]:
    scaling = spec.autoscaling
    classic, llms = _worker_models(loaded, units)
    if scaling.models:
        unknown = sorted(set(scaling.models) - {u.name for u in units})
        if unknown:
            raise SpecError(loaded.problem((*_LOC, "autoscaling", "models"), f"names {unknown}, which the spec "
                                           "does not generate", f"use some of {', '.join(classic + llms)}"))
    if scaling.metric in ENGINE_GAUGES:
        return (_engine_trigger(loaded, scaling.metric, scaling.models, scaling.threshold),)
    if scaling.metric is not None:
        group = "custom" if scaling.metric.startswith("nv_") else ("llm" if llms and not classic else "classic")
        models = tuple(scaling.models or classic + llms)
        metric_type, threshold = _threshold(loaded, scaling.metric, scaling.threshold)
        return (ScalingTrigger(scaling.metric, group, models, threshold, metric_type),)
    found = []
    if classic:
        metric_type, threshold = _threshold(loaded, "queue_compute_ratio", scaling.threshold)
        found.append(ScalingTrigger("queue_compute_ratio", "classic", tuple(scaling.models or classic), threshold,
                                    metric_type))
    if llms:
        metric_type, threshold = _threshold(loaded, "inflight_requests", None if classic else scaling.threshold)
        found.append(ScalingTrigger("inflight_requests", "llm", tuple(llms), threshold, metric_type))
    return tuple(found)


def _engine_trigger(loaded: LoadedSpec, metric: str, models: Sequence[str], given: Optional[float]) -> ScalingTrigger:
    """A trigger on a vLLM gauge of tritonkit's PyTorch engine: only the LLMs that engine serves export it."""
    engines = {_engine_model(llm): llm.engine.kind for llm in loaded.spec.llms}
    pytorch = [name for name, kind in engines.items() if kind == "pytorch"]
    others = sorted({f"{name} ({_OTHER_ENGINES.get(kind, kind)})" for name, kind in engines.items()
                     if kind != "pytorch" and (not models or name in models)})
    if not pytorch or (models and not set(models) <= set(pytorch)):
        exporters = f"the LLMs on it here: {', '.join(pytorch)}" if pytorch else "no llms entry here uses it"
        raise SpecError(loaded.problem(
            (*_LOC, "autoscaling", "metric"), f"is {metric}, which only tritonkit's PyTorch engine (engine.kind: "
            f"pytorch) exports, and {exporters}" + (f"; {'; '.join(others)}" if others else ""),
            "scale on inflight_requests, or on the metric the engine exports (a Triton metric, with a threshold)"
            if not pytorch else f"list only {', '.join(pytorch)} in autoscaling.models, or leave it out"))
    metric_type, threshold = _threshold(loaded, metric, given)
    return ScalingTrigger(metric, "custom", tuple(models or pytorch), threshold, metric_type)


def _engine_model(llm: LLMSpec) -> str:
    """The Triton model that runs an LLM's engine: ``<name>`` (LLM-API layout) or the ensemble's engine model."""
    return model_names(llm)["engine"] if llm.resolved_layout == "ensemble" else llm.name


def _check_ranges(loaded: LoadedSpec, spec: KubernetesSpec, deployment: Deployment) -> list[Problem]:
    problems = []
    if spec.min_replicas > spec.max_replicas:
        problems.append(loaded.problem((*_LOC, "min_replicas"), f"is {spec.min_replicas}, above max_replicas "
                                       f"({spec.max_replicas})", "raise max_replicas or lower min_replicas"))
    if spec.scale_to_zero and not spec.autoscaling.wake_query:
        problems.append(loaded.problem((*_LOC, "scale_to_zero"), "needs autoscaling.wake_query: with no pod left, "
                                       "Triton exports no metric to wake on", "give a query on a front door "
                                       "(ingress or gateway request rate), or remove scale_to_zero"))
    if "health" in deployment.deploy.restricted_apis:
        problems.append(loaded.problem(("deploy", "restricted_apis"), "restricts health, but Kubernetes probes "
                                       "cannot send the admin key header", "remove health from restricted_apis"))
    if deployment.needs_engine_build:
        problems.append(loaded.problem(_LOC, "cannot build engines: k8s/ has no engine-build step",
                                       "build the engines with docker/ on a GPU host and deliver them with "
                                       "the repository (repository.kind: pvc)"))
    return problems


def _check_gpus(loaded: LoadedSpec, spec: KubernetesSpec, gpus: int) -> list[Problem]:
    if gpus <= max(spec.node_gpus):
        return []
    key = "gpus_per_pod" if spec.gpus_per_pod is not None else "node_gpus"
    return [loaded.problem((*_LOC, key), f"leaves a pod needing {gpus} GPUs, which no node type offers "
                           f"(node_gpus: {list(spec.node_gpus)})",
                           "add a node type with enough GPUs to node_gpus, or lower the instance groups' GPUs "
                           "or tensor_parallel_size")]


def _shm_mib(loaded: LoadedSpec, spec: KubernetesSpec, instances: int) -> tuple[int, list[Problem]]:
    need = instances * SHM_PER_PYTHON_INSTANCE_MIB
    if spec.shm_size is None:
        return max(_SHM_FLOOR_MIB, need), []
    given = math.floor(parse_size_mib(spec.shm_size))
    if given >= need:
        return given, []
    return given, [loaded.problem((*_LOC, "shm_size"), f"is {spec.shm_size} ({given} MiB), less than the "
                                  f"{need} MiB that {instances} Python-backend instance(s) need "
                                  f"({SHM_PER_PYTHON_INSTANCE_MIB} MiB each)",
                                  f"set it to {need}Mi or more, or remove it to size it from the instances")]


def _server_command(deployment: Deployment) -> tuple[str, ...]:
    """The compose command line, with the admin key read from the container's environment ($(VAR))."""
    env = deployment.deploy.admin_key_env
    compose_key = admin_key_reference(env)
    return tuple(arg.replace(compose_key, f"$({env})") for arg in deployment.server_command)


def build_kubernetes_plan(loaded: LoadedSpec, units: Sequence[ModelUnit],
                          deployment: Deployment) -> Optional[KubernetesPlan]:
    """Decide ``k8s/`` for a spec with ``deploy.kubernetes``; None without that block.

    Raises:
        SpecError: min > max replicas, a pod needing more GPUs than any node type has, ``shm_size`` below what
            the Python-backend instances need, scale-to-zero without a wake query, a Triton metric without
            a threshold, autoscaling models the spec does not make, or engines to build.

    """
    spec = loaded.spec.deploy.kubernetes
    if spec is None:
        return None
    gpus = _gpus_per_pod(loaded, spec, deployment)
    instances = _python_instances(units, gpus)
    shm, problems = _shm_mib(loaded, spec, instances)
    problems = _check_ranges(loaded, spec, deployment) + _check_gpus(loaded, spec, gpus) + problems
    try:
        triggers = _triggers(loaded, spec, units)
    except SpecError as exc:
        problems += exc.problems
    if problems:
        raise SpecError(problems)
    startup = spec.startup_timeout_s or (900 if loaded.spec.llms else 120)
    return KubernetesPlan(name=_name(loaded, spec), spec=spec, deployment=deployment,
                          server_command=_server_command(deployment), gpus_per_pod=gpus,
                          python_instances=instances, shm_mib=shm, startup_timeout_s=startup, triggers=triggers)


def averaged_per_pod(metric: str) -> bool:
    """True for a gauge that is a fraction per engine (KV-cache usage): a pod counts its engines' average."""
    return metric == "vllm:kv_cache_usage_perc"


def counter_or_gauge(metric: str) -> str:
    """``counter`` for Triton's cumulative metrics (rated in rules), ``gauge`` for the rest."""
    return "counter" if metric in TRITON_COUNTERS else "gauge"
