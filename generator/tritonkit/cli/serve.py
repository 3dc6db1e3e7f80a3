"""``tritonkit serve``: run a model repository on a real local tritonserver until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Callable, Optional

import typer

from tritonkit.cli._app import app, err_console, out_console
from tritonkit.cli.openai import body_size
from tritonkit.errors import Problem, ServerError
from tritonkit.runtime import Server
from tritonkit.runtime.progress import LoadEvent
from tritonkit.runtime.repository import empty_repository_warning, repository_path_problem, scan_repository
from tritonkit.runtime.server import ADMIN_HEADER, ADMIN_KEY_ENV, CONTROL_MODES

_PORTS = "Ports"
_MODELS = "Models"
_PROCESS = "Process"
_OPENAI = "OpenAI gateway"


def _echo_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _describe(event: LoadEvent) -> str:
    words = {"loading": "loading", "ready": "READY", "failed": "failed (the server's error follows)"}
    what = event.detail if event.state in ("step", "progress") else words[event.state]
    return f"{event.model}: {what} ({event.elapsed_s:.0f} s)"


def _show_progress(event: LoadEvent) -> None:
    """One line per step of a model's load on stderr (progress bars every 10%), so a slow start shows why."""
    err_console.print(_describe(event), markup=False, highlight=False)


def _start(server: Server) -> None:
    skipped = server.plan()
    for name, why in sorted(skipped.items()):
        err_console.print(f"skipping model '{name}': {why}", markup=False)
    empty = empty_repository_warning(server.repo, scan_repository(server.repo))
    if empty is not None:
        err_console.print(empty, markup=False)
    err_console.print(f"starting tritonserver for {server.repo} ...", markup=False)
    server.start()


def _say(message: str) -> None:
    err_console.print(message, markup=False, highlight=False)


def _print_endpoints(server: Server, key_given: bool) -> None:
    out_console.print(f"http: {server.http_url}", markup=False)
    out_console.print(f"grpc: {server.grpc_url}", markup=False)
    out_console.print(f"metrics: {server.metrics_url}", markup=False)
    sys.stdout.flush()
    if server.restricted:
        key = f"${ADMIN_KEY_ENV}" if key_given else server.admin_key
        err_console.print(f"model control (load, unload, index) needs the header '{ADMIN_HEADER}: {key}' (gRPC "
                          f"metadata 'triton-grpc-protocol-{ADMIN_HEADER}')", markup=False, highlight=False)
    err_console.print(f"ready ({server.installation.source}); Ctrl-C stops it", markup=False)


def _forward_signals(server: Server, stopping: threading.Event) -> Callable[[], None]:
    """Forward SIGINT/SIGTERM to the server for a graceful stop; a second one kills it. Returns an undo."""

    def forward(signum: int, frame: Optional[FrameType]) -> None:
        if stopping.is_set():
            err_console.print("second signal: killing tritonserver", markup=False)
            server.kill()
            return
        stopping.set()
        err_console.print(f"stopping (in-flight requests get {server.exit_timeout_s:g} s) ...", markup=False)
        server.signal(signum)

    previous: dict[int, Any] = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def _gateway() -> Any:
    """The gateway package, imported on use: its web stack is the optional ``gateway`` extra."""
    try:
        import tritonkit.gateway as gateway
    except ModuleNotFoundError as exc:
        raise ServerError(Problem(f"--openai-port needs the OpenAI gateway's web stack ({exc.name} is missing)",
                                  hint="pip install 'tritonkit[gateway]'")) from None
    return gateway


def _start_gateway(server: Server, port: Optional[int], host: str, api_key: Optional[str],
                   limits: dict[str, int]) -> Any:
    if port is None:
        return None
    gateway_module = _gateway()
    settings = gateway_module.GatewaySettings(url=server.grpc_url, api_key=api_key, repository=server.repo.resolve(),
                                              triton_headers=tuple(server.admin_headers("grpc").items()), **limits)
    gateway = gateway_module.GatewayThread(settings, host=host, port=port).start()
    out_console.print(f"openai: {gateway.url}", markup=False)
    return gateway


def _run_until_stopped(server: Server, key_given: bool) -> int:
    stopping = threading.Event()
    restore = _forward_signals(server, stopping)
    try:
        _print_endpoints(server, key_given)  # after the handlers: a Ctrl-C as soon as the endpoints show stops cleanly
        while server.wait(timeout_s=0.5) is None:
            pass
    finally:
        restore()
    lines = server.log_lines()
    code = server.stop()
    if stopping.is_set() and code == 0:
        err_console.print("stopped", markup=False)
        return 0
    last = next((line for line in reversed(lines) if line.strip()), "no output")
    raise ServerError(Problem(f"tritonserver exited with code {code}: {last}", path=str(server.repo)))


@app.command()
def serve(
    repo: Annotated[Path, typer.Argument(help="Model repository to serve.", show_default=False)],
    tritonserver: Annotated[Optional[str], typer.Option(
        "--tritonserver", help="tritonserver binary (default: $TRITONSERVER, PATH, then the nvidia-pytriton "
        "wheel's).", rich_help_panel=_PROCESS)] = None,
    http_port: Annotated[int, typer.Option(
        "--http-port", help="HTTP port; 0 picks a free one.", rich_help_panel=_PORTS)] = 8000,
    grpc_port: Annotated[int, typer.Option(
        "--grpc-port", help="gRPC port; 0 picks a free one.", rich_help_panel=_PORTS)] = 8001,
    metrics_port: Annotated[int, typer.Option(
        "--metrics-port", help="Metrics port; 0 picks a free one.",
        rich_help_panel=_PORTS)] = 8002,
    model_control_mode: Annotated[str, typer.Option(
        "--model-control-mode",
        help=f"One of {', '.join(CONTROL_MODES)}.", rich_help_panel=_MODELS)] = "none",
    load_model: Annotated[Optional[list[str]], typer.Option(
        "--load-model", help="Model to load at start (explicit mode); "
        "repeatable, '*' for all.", rich_help_panel=_MODELS)] = None,
    skip_unsupported: Annotated[bool, typer.Option(
        "--skip-unsupported", help="Serve the models this tritonserver "
        "can run and skip the rest.", rich_help_panel=_MODELS)] = False,
    log_verbose: Annotated[int, typer.Option(
        "--log-verbose", help="tritonserver's --log-verbose level.",
        rich_help_panel=_PROCESS)] = 0,
    server_log: Annotated[bool, typer.Option(
        "--server-log", help="Echo tritonserver's own output on stderr.",
        rich_help_panel=_PROCESS)] = False,
    gpus: Annotated[Optional[str], typer.Option(
        "--gpus", help="Comma-separated ids of the GPUs the server may use (sets CUDA_VISIBLE_DEVICES), "
        "e.g. 0,1.", rich_help_panel=_PROCESS)] = None,
    host: Annotated[str, typer.Option(
        "--host", help="Address the HTTP, gRPC and metrics endpoints listen on; 0.0.0.0 opens them to the "
        "network.", rich_help_panel=_PORTS)] = "127.0.0.1",
    ready_timeout: Annotated[float, typer.Option(
        "--ready-timeout", help="Seconds the server may go without any sign of progress (output, a model's "
        "load step) before start-up is given up; a slow first load that keeps reporting is waited for.",
        rich_help_panel=_PROCESS)] = 120.0,
    exit_timeout: Annotated[float, typer.Option(
        "--exit-timeout", help="Seconds in-flight requests get to finish "
        "on stop.", rich_help_panel=_PROCESS)] = 30.0,
    openai_port: Annotated[Optional[int], typer.Option(
        "--openai-port", help="Also serve an OpenAI-compatible gateway for the repository's LLMs on this port "
        "(/v1/chat/completions, /v1/completions, /v1/models).", rich_help_panel=_OPENAI, show_default=False)] = None,
    openai_host: Annotated[str, typer.Option(
        "--openai-host", help="Address the gateway listens on; beyond loopback --api-key is required.",
        rich_help_panel=_OPENAI)] = "127.0.0.1",
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", help="Key gateway clients send as 'Authorization: Bearer KEY' (default: $TRITONKIT_API_KEY).",
        rich_help_panel=_OPENAI, show_default=False)] = None,
    openai_max_body_size: Annotated[str, typer.Option(
        "--openai-max-body-size", help="Largest request body the gateway takes (4Mi, 512Ki, bytes); 413 beyond.",
        rich_help_panel=_OPENAI)] = "4Mi",
    openai_max_concurrency: Annotated[int, typer.Option(
        "--openai-max-concurrency", min=1, help="Completions the gateway answers at once; 429 beyond.",
        rich_help_panel=_OPENAI)] = 256,
    heal: Annotated[bool, typer.Option(
        "--heal/--no-heal", help="When a model's backend process dies, say so and restart the server on the same "
        "ports (requests in flight fail at once; the models load again).", rich_help_panel=_PROCESS)] = True,
    admin_key: Annotated[Optional[str], typer.Option(
        "--admin-key", help=f"Key the model-repository API (load, unload, index) asks for in the '{ADMIN_HEADER}' "
        f"header under explicit or poll model control (default: ${ADMIN_KEY_ENV}, else one made up and shown).",
        rich_help_panel=_MODELS, show_default=False)] = None,
) -> int:
    """Serve REPO on a local tritonserver: wait until ready, print the endpoints, stop cleanly on Ctrl-C.

    REPO is the model repository folder (one folder per model), e.g. the model_repository/ that
    tritonkit generate writes beside the spec.
    """
    problem = repository_path_problem(repo)
    if problem is not None:
        raise ServerError(problem)
    key = api_key or os.environ.get("TRITONKIT_API_KEY") or None
    if openai_port is not None:
        _gateway().check_exposure(openai_host, key)
    limits = {"max_body_bytes": body_size(openai_max_body_size, "--openai-max-body-size"),
              "max_concurrency": openai_max_concurrency}
    echo = _echo_stderr if server_log or log_verbose > 0 else None
    server = Server(repo, tritonserver=tritonserver, http_port=http_port, grpc_port=grpc_port,
                    metrics_port=metrics_port, model_control_mode=model_control_mode, load_models=load_model or [],
                    log_verbose=log_verbose, gpus=gpus, skip_unsupported=skip_unsupported,
                    exit_timeout_s=exit_timeout, startup_timeout_s=ready_timeout, echo=echo, host=host,
                    progress=None if echo is not None else _show_progress, heal=heal, admin_key=admin_key,
                    notify=_say)
    gateway = None
    try:
        _start(server)
        gateway = _start_gateway(server, openai_port, openai_host, key, limits)
        return _run_until_stopped(server, key_given=bool(admin_key or os.environ.get(ADMIN_KEY_ENV)))
    finally:
        if gateway is not None:
            gateway.stop()
        server.stop()
