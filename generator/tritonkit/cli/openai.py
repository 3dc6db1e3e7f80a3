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
_LIMITS = "Limits"


def body_size(text: str, flag: str = "--max-body-size") -> int:
    """A body size as ``--max-body-size`` takes it (4Mi, 512Ki, 1000000), in bytes."""
    from tritonkit.spec.kubernetes import parse_size_mib

    try:
        size = int(parse_size_mib(text) * 1024 * 1024)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None
    if size < 1024:
        raise typer.BadParameter(f"{text!r} is under 1 KiB: no request would fit", param_hint=flag)
    return size


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
    max_body_size: Annotated[str, typer.Option(
        "--max-body-size", help="Largest request body taken (4Mi, 512Ki, bytes); a larger one gets 413 unread.",
        rich_help_panel=_LIMITS)] = "4Mi",
    max_concurrency: Annotated[int, typer.Option(
        "--max-concurrency", min=1, help="Completions answered at once (streams included); one more gets 429 "
        "with Retry-After.", rich_help_panel=_LIMITS)] = 256,
    header_timeout: Annotated[float, typer.Option(
        "--header-timeout", min=0.1, help="Seconds a client has to send a request's headers; a stalled one is "
        "disconnected.", rich_help_panel=_LIMITS)] = 10.0,
    body_timeout: Annotated[float, typer.Option(
        "--body-timeout", min=0.1, help="Seconds a client has to send a request's body (408 after).",
        rich_help_panel=_LIMITS)] = 30.0,
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
    body_bytes = body_size(max_body_size)
    err_console.print(f"OpenAI gateway on http://{host}:{port}/v1 for Triton at {url}; Ctrl-C stops it",
                      markup=False)
    run_gateway(GatewaySettings(url=url, api_key=key, repository=model_repository, timeout_s=timeout,
                                triton_headers=headers, max_body_bytes=body_bytes, max_concurrency=max_concurrency,
                                header_timeout_s=header_timeout, body_timeout_s=body_timeout),
                host=host, port=port)
    return 0
