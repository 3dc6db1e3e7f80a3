"""The OpenAI gateway beside Triton (``deploy.openai``): its command line, its package, and its checks.

The same command runs as the ``openai`` compose service (Triton reached as ``triton:8001``) and as the second
container of the k8s pod (``localhost:8001``); only the admin key's reference differs, as in the server command.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from tritonkit.errors import Problem
from tritonkit.spec.deploy import DeploySpec, OpenAISpec
from tritonkit.spec.load import LoadedSpec

__all__ = ["GATEWAY_KEY_ENV", "GATEWAY_REQUIREMENT", "GatewayService", "check_gateway", "gateway_packages",
           "gateway_service"]

#: The pip requirement for tritonkit's gateway at this version (a test keeps it equal to ``tritonkit.__version__``).
GATEWAY_REQUIREMENT = "tritonkit[gateway]==0.1.0"
#: The variable ``tritonkit openai`` reads its API key from when ``--api-key`` is not given.
GATEWAY_KEY_ENV = "TRITONKIT_API_KEY"
_NAME_RE = re.compile(r"[=<>!~\[; @]")


@dataclass(frozen=True)
class GatewayService:
    """The gateway's container: its command (admin key as ``key_reference``), port and key variable."""

    spec: OpenAISpec
    #: ``tritonkit openai ...``, with ``{triton}`` for Triton's host and ``{admin_key}`` for the key's reference.
    command: tuple[str, ...]

    @property
    def port(self) -> int:
        """The port the gateway listens on inside its container."""
        return self.spec.port

    def command_for(self, triton_host: str, admin_key: str) -> list[str]:
        """The command line with Triton's host and the admin key's reference filled in."""
        return [arg.replace("{triton}", triton_host).replace("{admin_key}", admin_key) for arg in self.command]


def gateway_service(deploy: DeploySpec, grpc_port: int, models_dir: str) -> Optional[GatewayService]:
    """The gateway's container for ``deploy.openai``, or None when the spec does not ask for it.

    Args:
        deploy: the spec's ``deploy:`` block.
        grpc_port: Triton's gRPC port inside its container.
        models_dir: where the repository is mounted (tokenizer paths are relative to a model's folder).

    """
    spec = deploy.openai
    if spec is None:
        return None
    command = ["tritonkit", "openai", "--url", f"{{triton}}:{grpc_port}", "--host", "0.0.0.0",
               "--port", str(spec.port), "--model-repository", models_dir, "--timeout", f"{spec.timeout_s:g}"]
    if deploy.restricted_apis:
        # The gateway reads the repository index (model-repository API); Triton expects the key as gRPC
        # metadata named triton-grpc-protocol-<header> (server docs/customization_guide/inference_protocols.md).
        command += ["--triton-header", f"triton-grpc-protocol-{deploy.admin_key_header}={{admin_key}}"]
    return GatewayService(spec, tuple(command))


def gateway_packages(deploy: DeploySpec) -> tuple[str, ...]:
    """The pip requirement that installs the gateway in the image, unless the user pins tritonkit already."""
    if deploy.openai is None:
        return ()
    own = {_NAME_RE.split(p, maxsplit=1)[0].lower() for p in deploy.python_packages}
    if "tritonkit" in own:
        return ()
    return (deploy.openai.package or GATEWAY_REQUIREMENT,)


def check_gateway(loaded: LoadedSpec, container_ports: Sequence[int]) -> list[Problem]:
    """``deploy.openai`` needs an LLM to serve and a port of its own (on the host and in the pod)."""
    deploy = loaded.spec.deploy
    if deploy.openai is None:
        return []
    problems = []
    if not loaded.spec.llms:
        problems.append(loaded.problem(("deploy", "openai"), "asks for the OpenAI gateway, but the spec serves no "
                                       "LLM (the gateway lists models with a text_input)",
                                       "add an llms: entry, or remove deploy.openai"))
    taken = {deploy.ports.http: "http", deploy.ports.grpc: "grpc", deploy.ports.metrics: "metrics",
             deploy.monitoring.prometheus_port: "monitoring.prometheus_port",
             deploy.monitoring.grafana_port: "monitoring.grafana_port"}
    if deploy.openai.port in taken or deploy.openai.port in container_ports:
        other = taken.get(deploy.openai.port, "Triton's own port in the pod")
        problems.append(loaded.problem(("deploy", "openai", "port"), f"is {deploy.openai.port}, which "
                                       f"{other} uses already", "pick another port, e.g. 9000"))
    if deploy.openai.api_key_env == deploy.admin_key_env:
        problems.append(loaded.problem(("deploy", "openai", "api_key_env"), f"is {deploy.admin_key_env}, the admin "
                                       "key of Triton's restricted APIs; clients of the gateway would hold it",
                                       "give the gateway a variable of its own, e.g. TRITONKIT_API_KEY"))
    return problems
