"""Run the gateway with uvicorn: in the foreground (``tritonkit openai``) or in a thread beside ``serve``."""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any, Optional

from tritonkit.errors import ClientError, Problem
from tritonkit.gateway.app import GatewaySettings, create_app
from tritonkit.gateway.guard import guarded_protocol

__all__ = ["GatewayThread", "check_exposure", "run_gateway"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: Optional[str]) -> None:
    """Refuse to listen beyond loopback without an API key.

    Raises:
        ClientError: ``host`` is not a loopback address and no key is set.

    """
    if api_key is None and not _is_loopback(host):
        raise ClientError(Problem(
            f"the OpenAI gateway would listen on {host}, beyond this machine, without an API key",
            hint="pass --api-key KEY (clients send 'Authorization: Bearer KEY'), or listen on 127.0.0.1"))


def _config(settings: GatewaySettings, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    check_exposure(host, settings.api_key)
    # No proxy-header middleware: nothing here reads the client's address. The protocol is httptools' with
    # a deadline and a size cap on each request's headers, and the body limit counted as the body arrives.
    return uvicorn.Config(create_app(settings), host=host, port=port, log_level=log_level, access_log=False,
                          proxy_headers=False, lifespan="on", timeout_graceful_shutdown=5,
                          http=guarded_protocol(settings.header_timeout_s, settings.max_body_bytes))


def run_gateway(settings: GatewaySettings, host: str = "127.0.0.1", port: int = 9000,
                log_level: str = "info") -> None:
    """Serve the gateway until Ctrl-C (uvicorn handles the signals)."""
    import uvicorn

    uvicorn.Server(_config(settings, host, port, log_level)).run()


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        return probe.connect_ex((host, port)) == 0


class GatewayThread:
    """The gateway in a background thread, for ``serve --openai-port``: ``start()``, then ``stop()``."""

    def __init__(self, settings: GatewaySettings, host: str = "127.0.0.1", port: int = 9000,
                 log_level: str = "warning") -> None:
        import uvicorn

        self.host, self.port = host, port
        self._server = uvicorn.Server(_config(settings, host, port, log_level))
        self._thread = threading.Thread(target=self._server.run, name="tritonkit-openai", daemon=True)

    @property
    def url(self) -> str:
        """The gateway's base URL (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> GatewayThread:
        """Start serving; returns once the gateway accepts connections.

        Raises:
            ClientError: the port is taken, or the gateway did not start within ``timeout_s``.

        """
        if _port_in_use(self.host, self.port):
            raise ClientError(Problem(f"port {self.port} on {self.host} is already in use",
                                      hint="pick another --openai-port"))
        self._thread.start()
        ticks = int(timeout_s / 0.05)
        for _ in range(ticks):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            threading.Event().wait(0.05)
        raise ClientError(Problem(f"the OpenAI gateway did not start on {self.host}:{self.port}",
                                  hint="see the messages above"))

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
