"""Conventions of the Kubernetes manifests tritonkit generates, shared by the layers that write and read them.

``model/k8s.py`` and ``render/k8s.py`` write the manifests; ``validate/`` checks them and ``capacity/``
replays their autoscaling, so what they agree on lives below all of them.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["SIGNAL_DEFAULTS", "VERSIONS_ANNOTATION"]

#: The kustomization's annotation naming the Kubernetes versions the manifests were validated against.
VERSIONS_ANNOTATION = "tritonkit.io/kubernetes-versions"
#: Per signal: (KEDA metricType, default threshold). ``Value`` compares the query with the threshold and
#: scales replicas in proportion; ``AverageValue`` divides the query by the threshold to get replicas.
SIGNAL_DEFAULTS: dict[str, tuple[str, Optional[float]]] = {
    "queue_compute_ratio": ("Value", 1.0),
    "replicas_needed": ("AverageValue", 1.5),
    "queue_time_us": ("Value", 50.0),
    "pending_requests": ("AverageValue", 4.0),
    "inflight_requests": ("AverageValue", None),
    # tritonkit's PyTorch engine, under vLLM's names: requests queued per replica (every batch full), and the
    # average fraction of KV-cache blocks a replica's requests hold.
    "vllm:num_requests_waiting": ("AverageValue", 4.0),
    "vllm:kv_cache_usage_perc": ("AverageValue", 0.8),
}
