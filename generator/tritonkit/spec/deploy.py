"""The ``deploy:`` block of the spec and a model's ``build:`` block: how the stack runs on a GPU host.

Everything here is optional; the defaults give a stack that serves the repository on the host's
loopback address, with the model-repository API behind a key read from the environment.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tritonkit.spec.kubernetes import KubernetesSpec

__all__ = [
    "RESTRICTABLE_APIS",
    "TEMPLATE_NAMES",
    "BuildSpec",
    "DeploySpec",
    "MonitoringSpec",
    "OpenAISpec",
    "PortsSpec",
    "RestrictableApi",
    "ShapeRange",
    "TensorRTBuild",
]

#: The API groups tritonserver can put behind a header key (``--http-restricted-api``).
RestrictableApi = Literal["health", "metadata", "inference", "shared-memory", "model-config", "model-repository",
                          "statistics", "trace", "logging"]
RESTRICTABLE_APIS: tuple[str, ...] = get_args(RestrictableApi)


class _StrictModel(BaseModel):
    """Same rules as ``tritonkit.spec.schema.StrictModel``; not imported from there, so schema can import this."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


NonNegative = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]

#: The files of ``docker/`` made from templates; ``deploy.templates`` may replace any of them.
TEMPLATE_NAMES = (".env.example", "Dockerfile", "README.md", "engine-build.sh", "prometheus.yml",
                  "grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning/dashboards/tritonkit.yml",
                  "grafana/dashboards/triton.json")

_SIZE_RE = re.compile(r"^\d+[bkmg]?$")
_ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_HEADER_RE = re.compile(r"^[a-z0-9][a-z0-9\-]*$")
_Port = Annotated[int, Field(ge=1, le=65535)]


def _check_size(value: str) -> str:
    if not _SIZE_RE.match(value.lower()):
        raise ValueError(f"{value!r} is not a size; write a number with an optional unit, e.g. 2g or 512m")
    return value.lower()


def _check_env(value: str) -> str:
    if not _ENV_RE.match(value):
        raise ValueError(f"{value!r} is not an environment variable name; use upper case, digits and '_'")
    return value


def _check_header(value: str) -> str:
    if not _HEADER_RE.match(value):
        raise ValueError(f"{value!r} is not a usable header name; use lower case letters, digits and '-'")
    return value


class ShapeRange(_StrictModel):
    """The smallest, typical and largest shape of one input, without the batch dimension."""

    min: list[Positive]
    opt: list[Positive]
    max: list[Positive]

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ValueError("min, opt and max must have the same number of dims")
        for low, mid, high in zip(self.min, self.opt, self.max):
            if not low <= mid <= high:
                raise ValueError(f"each dim needs min <= opt <= max (got {low}, {mid}, {high})")
        return self


class TensorRTBuild(_StrictModel):
    """Build a TensorRT engine (``model.plan``) from the model's ONNX file on the GPU host.

    ``precision``: ``fp16``, ``bf16`` and ``int8`` are TensorRT 10's builder flags (``--fp16``, ...), which
    TensorRT 11 removed; ``strongly_typed`` builds the network with the types the ONNX graph carries (a
    model converted by ModelOpt AutoCast, or quantized with Q/DQ nodes), which is what TensorRT 11 always
    does; ``fp32`` asks for nothing.
    """

    precision: Literal["fp32", "fp16", "bf16", "int8", "strongly_typed"] = "fp16"
    workspace_mb: Positive = 4096
    #: Ranges for the variable (-1) dims of each input, without the batch dimension.
    shapes: dict[str, ShapeRange] = {}
    #: The batch size the engine is tuned for; default: the largest preferred batch size, else max_batch_size.
    opt_batch_size: Optional[Positive] = None


class BuildSpec(_StrictModel):
    """How a model's served artifact is built from its source on the GPU host."""

    tensorrt: Optional[TensorRTBuild] = None


class PortsSpec(_StrictModel):
    """Host ports of Triton's three endpoints."""

    http: _Port = 8000
    grpc: _Port = 8001
    metrics: _Port = 8002


class MonitoringSpec(_StrictModel):
    """The ``monitoring`` compose profile: Prometheus and Grafana."""

    prometheus_port: _Port = 9090
    grafana_port: _Port = 3000
    scrape_interval_s: Positive = 5
    #: Latency histograms (``--metrics-config=histogram_latencies=true``) for p99 panels.
    histograms: bool = True


class OpenAISpec(_StrictModel):
    """The OpenAI-compatible gateway (``tritonkit openai``): a compose service, and a second container in ``k8s/``."""

    #: Port the gateway listens on in its container, published on ``bind_address`` as the same port.
    port: _Port = 9000
    #: Variable (in ``docker/.env`` or the k8s Secret) holding the key clients send as ``Authorization: Bearer``.
    api_key_env: Annotated[str, AfterValidator(_check_env)] = "TRITONKIT_API_KEY"
    #: Seconds the gateway waits for each response from Triton.
    timeout_s: Annotated[float, Field(gt=0)] = 300.0
    #: The pip requirement that puts tritonkit with its ``gateway`` extra into the image (a wheel URL, a git URL,
    #: ...); default: this tritonkit's version from PyPI.
    package: Optional[str] = None


GpuCount = Union[Literal["all"], Positive]


class DeploySpec(_StrictModel):
    """How ``docker compose up`` runs the repository on a GPU host."""

    #: Image of the ``triton`` service; default: the NGC image of ``triton.version``.
    image: Optional[str] = None
    ports: PortsSpec = PortsSpec()
    #: Host address the ports are published on; 0.0.0.0 opens them to the network.
    bind_address: str = "127.0.0.1"
    model_control_mode: Literal["none", "explicit", "poll"] = "none"
    #: API groups that need the admin key header; empty: nothing restricted.
    restricted_apis: list[RestrictableApi] = ["model-repository"]
    admin_key_env: Annotated[str, AfterValidator(_check_env)] = "TRITON_ADMIN_KEY"
    admin_key_header: Annotated[str, AfterValidator(_check_header)] = "triton-admin-key"
    exit_timeout_secs: NonNegative = 30
    shm_size: Annotated[str, AfterValidator(_check_size)] = "2g"
    restart: Literal["no", "always", "on-failure", "unless-stopped"] = "unless-stopped"
    #: GPUs reserved for the containers; default: what the instance groups and LLM engines name.
    gpus: Optional[Union[GpuCount, list[NonNegative]]] = None
    #: Response cache size when any model enables ``response_cache``.
    response_cache_mb: Positive = 256
    #: Extra pinned pip packages for the image (adds a Dockerfile build).
    python_packages: list[str] = []
    #: Where the engines volume is mounted in the containers; LLM engine paths must lie under it.
    engines_dir: str = "/engines"
    monitoring: MonitoringSpec = MonitoringSpec()
    #: Replace a generated file's template: ``{"Dockerfile": "my/Dockerfile.j2"}``, relative to the spec.
    templates: dict[str, str] = {}
    log_verbose: NonNegative = 0
    #: Write ``k8s/`` (Deployment, Service, PodMonitor, PrometheusRule, KEDA ScaledObject) beside ``docker/``.
    kubernetes: Optional[KubernetesSpec] = None
    #: Run the OpenAI-compatible gateway beside Triton: the ``openai`` compose service, a container in ``k8s/``.
    openai: Optional[OpenAISpec] = None

    @model_validator(mode="after")
    def _engines_dir_absolute(self) -> DeploySpec:
        if not self.engines_dir.startswith("/"):
            raise ValueError(f"engines_dir must be an absolute path inside the container (got {self.engines_dir!r})")
        unknown = sorted(set(self.templates) - set(TEMPLATE_NAMES))
        if unknown:
            raise ValueError(f"templates names {unknown}, which tritonkit does not render; "
                             f"replaceable: {', '.join(TEMPLATE_NAMES)}")
        return self
