"""The ``deploy.kubernetes`` block of the spec: replicas, autoscaling signal, nodes and repository delivery.

Only what is checkable from this block alone lives here (min <= max replicas, a metric Triton exports,
a size that parses); checks that need the models (GPUs per pod against the nodes, shared memory against
the Python-backend instances) are in ``tritonkit.model.k8s``.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ENGINE_GAUGES",
    "SIGNALS",
    "TRITON_COUNTERS",
    "TRITON_GAUGES",
    "AutoscalingSpec",
    "KubernetesSpec",
    "RepositoryDelivery",
    "parse_size_mib",
]

#: tritonkit's named scaling signals (recording rules of the generated PrometheusRule).
SIGNALS = ("queue_compute_ratio", "replicas_needed", "queue_time_us", "pending_requests", "inflight_requests")

#: Per-model counters Triton exports at ``:8002/metrics`` (server docs/user_guide/metrics.md); a custom
#: signal over one of them is ``sum(rate(...))``.
TRITON_COUNTERS = (
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us", "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model",
)
#: Gauges Triton exports; a custom signal over one of them is ``sum(...)``.
TRITON_GAUGES = (
    "nv_inference_pending_request_count", "nv_gpu_utilization", "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage", "nv_cpu_utilization", "nv_cpu_memory_used_bytes", "nv_pinned_memory_pool_used_bytes",
    "nv_trt_llm_request_metrics", "nv_trt_llm_kv_cache_block_metrics",
)
#: Gauges tritonkit's PyTorch engine exports under vLLM's names (``python_backends/llm_metrics.py``), the ones
#: vLLM autoscalers key on: requests queued for a free batch slot, and the fraction of KV-cache blocks held.
ENGINE_GAUGES = ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")

_SIZE_RE = re.compile(r"^(\d+)([kmgt]i?)?$")
_UNIT_MIB = {None: 1 / (1024 * 1024), "k": 1000 / 1024 ** 2, "ki": 1 / 1024, "m": 1000 ** 2 / 1024 ** 2, "mi": 1,
             "g": 1000 ** 3 / 1024 ** 2, "gi": 1024, "t": 1000 ** 4 / 1024 ** 2, "ti": 1024 ** 2}
_K8S_VERSION_RE = re.compile(r"^1\.\d{2}$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class _StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def parse_size_mib(value: str) -> float:
    """A size as Docker (``2g``) or Kubernetes (``2Gi``) writes it, in MiB.

    Raises:
        ValueError: the text is not a size.

    """
    match = _SIZE_RE.match(value.strip().lower())
    if not match:
        raise ValueError(f"{value!r} is not a size; write a number with a unit, e.g. 2Gi or 512Mi")
    return int(match.group(1)) * _UNIT_MIB[match.group(2)]


def _check_size(value: str) -> str:
    parse_size_mib(value)
    return value


def _check_metric(value: str) -> str:
    known = (*SIGNALS, *ENGINE_GAUGES, *TRITON_COUNTERS, *TRITON_GAUGES)
    if value in known:
        return value
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    advice = (f"did you mean {close[0]!r}?" if close else
              f"use one of {', '.join(SIGNALS + ENGINE_GAUGES)} or a Triton metric")
    raise ValueError(f"{value!r} is neither a tritonkit signal nor a metric Triton exports; {advice}")


def _check_version(value: str) -> str:
    if not _K8S_VERSION_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes minor version; write it as \"1.31\" (quoted)")
    return value


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes name; use lower case letters, digits and '-' (63 at most)")
    return value


K8sName = Annotated[str, AfterValidator(_check_name)]


class AutoscalingSpec(_StrictModel):
    """The KEDA ScaledObject: which signal, its threshold, and how fast to react."""

    #: A tritonkit signal, a vLLM gauge of tritonkit's PyTorch engine (``vllm:num_requests_waiting``,
    #: ``vllm:kv_cache_usage_perc``) or a Triton metric; default: queue_compute_ratio (classic),
    #: inflight_requests (LLMs).
    metric: Annotated[Optional[str], AfterValidator(lambda v: v if v is None else _check_metric(v))] = None
    #: Scale up above this value; default: the signal's own (1.0 ratio, 1.5 replicas needed, 50 us, ...).
    threshold: Optional[Annotated[float, Field(gt=0)]] = None
    #: Models whose metrics count; default: the models that do the work (not ensembles).
    models: list[str] = []
    #: The rate window of the recording rules.
    window_s: Annotated[int, Field(ge=10, le=3600)] = 60
    polling_interval_s: Annotated[int, Field(ge=1)] = 15
    #: Seconds the load must stay low before KEDA scales down (HPA stabilization window).
    scale_down_window_s: Annotated[int, Field(ge=0)] = 300
    #: Where KEDA reaches Prometheus.
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    #: A query from outside the pods that wakes a Deployment scaled to zero (Triton's metrics vanish with it).
    wake_query: Optional[str] = None


class RepositoryDelivery(_StrictModel):
    """How the model repository reaches the pod: an image copied by an init container, or a volume claim."""

    kind: Literal["image", "pvc"] = "image"
    #: The repository image (``k8s/repository.Dockerfile`` builds it); the tag is the repository's digest.
    image: Optional[str] = None
    #: The PersistentVolumeClaim that holds ``model_repository/`` (kind: pvc).
    claim_name: Optional[K8sName] = None

    @model_validator(mode="after")
    def _claim_for_pvc(self) -> RepositoryDelivery:
        if self.kind == "pvc" and self.claim_name is None:
            raise ValueError("kind: pvc needs claim_name: the PersistentVolumeClaim holding model_repository/")
        if self.kind == "image" and self.claim_name is not None:
            raise ValueError("claim_name is for kind: pvc; remove it or set kind: pvc")
        return self


class KubernetesSpec(_StrictModel):
    """``generate`` writes ``k8s/`` (kustomize) when this block is present.

    Replica range and scale-to-zero are checked in ``tritonkit.model.k8s``, where errors point at the key.
    """

    #: Name of the Deployment, Service and the rest; default: the spec file's name.
    name: Optional[K8sName] = None
    namespace: K8sName = "default"
    min_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 4
    #: Let KEDA scale to zero replicas when idle (needs ``autoscaling.wake_query``).
    scale_to_zero: bool = False
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    #: Kubernetes minor versions the manifests are validated against.
    versions: Annotated[list[Annotated[str, AfterValidator(_check_version)]], Field(min_length=1)] = ["1.31"]
    repository: RepositoryDelivery = RepositoryDelivery()
    #: GPUs per node of each node type in the cluster; a pod asking for more fits nowhere.
    node_gpus: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [1, 2, 4, 8]
    #: GPUs per pod; default: from the instance groups (1 when a model takes every GPU) and tp x pp.
    gpus_per_pod: Optional[Annotated[int, Field(ge=0)]] = None
    #: /dev/shm (emptyDir, medium Memory); default: sized from the Python-backend instances.
    shm_size: Annotated[Optional[str], AfterValidator(lambda v: v if v is None else _check_size(v))] = None
    #: The longest the models may take to load before the pod is restarted; default 120 s, 900 s with LLMs.
    startup_timeout_s: Optional[Annotated[int, Field(ge=10)]] = None
    #: Kubernetes Secret holding the admin key (key ``deploy.admin_key_env``) and ``HF_TOKEN``.
    secret_name: K8sName = "tritonkit-secrets"
