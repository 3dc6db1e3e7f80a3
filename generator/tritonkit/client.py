"""Client helpers over tritonclient: ``Client`` (sync), ``AsyncClient`` (asyncio), and one-shot ``infer``."""

from tritonkit.runtime.aio import AsyncClient
from tritonkit.runtime.client import DEFAULT_URLS, PROTOCOLS, Client, infer
from tritonkit.runtime.tensors import ModelInfo, TensorInfo

__all__ = ["DEFAULT_URLS", "PROTOCOLS", "AsyncClient", "Client", "ModelInfo", "TensorInfo", "infer"]
