"""The runtime layer: a local tritonserver process (``Server``) and client helpers over gRPC and HTTP."""

from tritonkit.runtime.aio import AsyncClient
from tritonkit.runtime.client import Client
from tritonkit.runtime.server import Server

__all__ = ["AsyncClient", "Client", "Server"]
