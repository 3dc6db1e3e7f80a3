"""``tritonkit openai``: an OpenAI-compatible gateway in front of any Triton server's LLMs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from tritonkit.cli._app import app, err_console
from tritonkit.errors import ClientError, Problem

_LISTEN = "Listen"
_TRITON = "Triton"


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise typer.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="--triton-header")
    return name.strip().lower(), value


@app.command()
def openai(
    url: Annotated[str, typer.Option(
        "--url", help="Triton's gRPC endpoint, host:port.", rich_help_panel=_TRITON)] = "localhost:8001",
    model_repository: Annotated[Optional[Path], typer.Option(
        "--model-repository", help="The served repository's folder, to find tokenizers named by paths relative "
        "to a model's folder (pkg: and absolute paths need none).", rich_help_panel=_TRITON)] = None,
    triton_header: Annotated[Optional[list[str]], typer.Option(
        "--triton-header", help="NAME=VALUE sent as gRPC metadata with every call to Triton (repeatable), e.g. "
        "triton-grpc-protocol-triton-admin-key=KEY where Triton restricts the model-repository API.",
        rich_help_panel=_TRITON, show_default=False)] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for each response from Triton.", rich_help_panel=_TRITON)] = 300.0,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; beyond loopback an API key is required.",
        rich_help_panel=_LISTEN)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", rich_help_panel=_LISTEN)] = 9000,
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", help="Key clients must send as 'Authorization: Bearer KEY' (default: $TRITONKIT_API_KEY).",
        rich_help_panel=_LISTEN, show_default=False)] = None,
) -> int:
    """Serve OpenAI's /v1/models, /v1/chat/completions and /v1/completions for every LLM a Triton server serves.

    Example: tritonkit openai --url localhost:8001 --port 9000, then point any OpenAI client at
    http://localhost:9000/v1 (model: smollm2 in the default example).
    """
    try:  # the web stack is the optional `gateway` extra: import it on use
        from tritonkit.gateway import GatewaySettings, check_exposure, run_gateway
    except ModuleNotFoundError as exc:
        raise ClientError(Problem(f"the OpenAI gateway needs its web stack ({exc.name} is missing)",
                                  hint="pip install 'tritonkit[gateway]'")) from None
    key = api_key or os.environ.get("TRITONKIT_API_KEY") or None
    check_exposure(host, key)
    headers = tuple(_header(text) for text in triton_header or [])
    err_console.print(f"OpenAI gateway on http://{host}:{port}/v1 for Triton at {url}; Ctrl-C stops it",
                      markup=False)
    run_gateway(GatewaySettings(url=url, api_key=key, repository=model_repository, timeout_s=timeout,
                                triton_headers=headers),
                host=host, port=port)
    return 0
