"""An OpenAI-compatible HTTP gateway (``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``) over Triton.

Every LLM a Triton server serves, in TensorRT-LLM's LLM-API interface or NVIDIA's ensemble/BLS one, is
reachable by any OpenAI client; requests travel over Triton's gRPC stream. docs/openai.md says why the
stack is Starlette and uvicorn.
"""

from tritonkit.gateway.app import GatewaySettings, create_app
from tritonkit.gateway.errors import APIError
from tritonkit.gateway.run import GatewayThread, check_exposure, run_gateway

__all__ = ["APIError", "GatewaySettings", "GatewayThread", "check_exposure", "create_app", "run_gateway"]
