"""``Server``: run a model repository on a real local tritonserver, wait until it is ready, stop it cleanly."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from tritonkit.errors import Problem, ServerError
from tritonkit.runtime.locate import Installation, find_tritonserver, prepare_environment, stub_numpy_version
from tritonkit.runtime.logs import LogPump, last_error_line, load_failures
from tritonkit.runtime.process import GroupProcess, free_ports
from tritonkit.runtime.progress import LoadEvent, LoadProgress
from tritonkit.runtime.repository import (
    repository_path_problem,
    scan_repository,
    unsupported_models,
    unsupported_problems,
)

if TYPE_CHECKING:
    from tritonkit.runtime.client import Client

__all__ = ["CONTROL_MODES", "Server"]

CONTROL_MODES = ("none", "explicit", "poll")
_PORT_RETRIES = 3


class Server:
    """A tritonserver serving ``repo``; use as ``with Server(repo) as server:``.

    Ports given as 0 are picked free; the endpoints listen on ``host`` (loopback unless told otherwise).
    ``skip_unsupported`` serves only the models whose backend the server has (the wheel's server has only
    the Python backend); otherwise such models raise before start. ``startup_timeout_s`` counts from the
    server's last sign of progress (any output), so a slow first load succeeds and a hung one ends;
    ``progress`` is told each model's load steps as they come.
    """

    def __init__(self, repo: Union[str, Path], *, tritonserver: Optional[str] = None, http_port: int = 0,
                 grpc_port: int = 0, metrics_port: int = 0, model_control_mode: str = "none",
                 load_models: Sequence[str] = (), log_verbose: int = 0, gpus: Optional[str] = None,
                 skip_unsupported: bool = False, exit_timeout_s: float = 30.0, startup_timeout_s: float = 120.0,
                 extra_args: Sequence[str] = (), echo: Optional[Callable[[str], None]] = None,
                 host: str = "127.0.0.1", progress: Optional[Callable[[LoadEvent], None]] = None) -> None:
        if model_control_mode not in CONTROL_MODES:
            raise ServerError(Problem(f"unknown model control mode '{model_control_mode}'",
                                      hint=f"use one of {', '.join(CONTROL_MODES)}"))
        self.repo = Path(repo).expanduser().resolve()
        self.installation: Installation = find_tritonserver(tritonserver)
        self._ports = (http_port, grpc_port, metrics_port)
        self.http_port, self.grpc_port, self.metrics_port = self._ports
        self.control_mode, self.load_models = model_control_mode, list(load_models)
        self.log_verbose, self.gpus = log_verbose, gpus
        self.skip_unsupported, self.exit_timeout_s = skip_unsupported, exit_timeout_s
        self.startup_timeout_s, self.extra_args, self._echo = startup_timeout_s, list(extra_args), echo
        self.host, self._on_progress = host, progress
        self._progress: Optional[LoadProgress] = None
        self.skipped: dict[str, str] = {}
        self.command: list[str] = []
        self.environment: dict[str, str] = {}
        self._process: Optional[GroupProcess] = None
        self._pump: Optional[LogPump] = None
        self._workspace: Optional[Path] = None
        self._planned = False

    # ----------------------------------------------------------------- urls
    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint (the form tritonclient takes)."""
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics endpoint."""
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def _client_host(self) -> str:
        """The address clients on this machine reach the endpoints at."""
        if self.host in ("0.0.0.0", "::", ""):
            return "localhost"
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def pid(self) -> Optional[int]:
        """The server's process id while it runs."""
        return self._process.pid if self._process else None

    def client(self, protocol: str = "grpc") -> Client:
        """A :class:`tritonkit.client.Client` for this server over ``protocol`` (grpc or http)."""
        from tritonkit.runtime.client import Client

        return Client(self.grpc_url if protocol == "grpc" else self.http_url, protocol=protocol)

    def log_lines(self) -> list[str]:
        """The server's output so far (the last 20000 lines)."""
        return self._pump.lines() if self._pump else []

    def set_echo(self, echo: Optional[Callable[[str], None]]) -> None:
        """Echo the server's output lines from now on (None: stop)."""
        self._echo = echo
        if self._pump:
            self._pump.set_echo(echo)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.stop()

    def start(self) -> Server:
        """Check the repository, start the server, and wait until ``/v2/health/ready`` answers 200.

        Raises:
            ServerError: the repository is missing, a model cannot run here, numpy is 2.x for the stub,
                the server exited, or it was not ready within ``startup_timeout_s``; each failed model is
                named with the server's own error line and its folder.

        """
        self.plan()
        self._workspace = Path(tempfile.mkdtemp(prefix="tritonkit-serve-"))
        try:
            environment = prepare_environment(self.installation, self._workspace)
            self._check_numpy(environment.env)
            for attempt in range(_PORT_RETRIES):
                self._pick_ports()
                self._launch(environment.args, environment.env)
                try:
                    self._wait_ready()
                    return self
                except ServerError:
                    if attempt + 1 < _PORT_RETRIES and self._lost_port_race():
                        self._shutdown()
                        continue
                    raise
        except BaseException:
            self.stop()
            raise
        return self  # pragma: no cover - the loop returns or raises

    def stop(self) -> Optional[int]:
        """Stop gracefully (in-flight requests get ``exit_timeout_s``), then kill the group; idempotent."""
        code = self._shutdown()
        if self._workspace is not None:
            shutil.rmtree(self._workspace, ignore_errors=True)
            self._workspace = None
        return code

    def signal(self, signum: int) -> None:
        """Forward a signal to the server (SIGINT/SIGTERM start its graceful stop)."""
        if self._process:
            self._process.signal(signum)

    def kill(self) -> None:
        """Kill the server and its children at once (SIGKILL to the process group)."""
        if self._process:
            self._process.kill_group()

    def wait(self, timeout_s: Optional[float] = None) -> Optional[int]:
        """Wait for the server to exit on its own; return its exit code, or None on timeout."""
        if self._process is None:
            return None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._process.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.1)
        return self._process.poll()

    def is_running(self) -> bool:
        """True while the server process lives."""
        return self._process is not None and self._process.poll() is None

    def plan(self) -> dict[str, str]:
        """Check the repository before start; return the models skipped (name -> why), if any.

        Raises:
            ServerError: the repository is missing, or models this server cannot run are to be loaded
                and ``skip_unsupported`` is off (each named, with the Docker command that runs them).

        """
        if not self._planned:
            problem = repository_path_problem(self.repo)
            if problem is not None:
                raise ServerError(problem)
            self._plan_models()
            self._planned = True
        return dict(self.skipped)

    # -------------------------------------------------------------- helpers
    def _plan_models(self) -> None:
        models = scan_repository(self.repo)
        backends = self.installation.backends()
        if backends is None:
            return
        wanted = {m.name for m in models} if self.control_mode != "explicit" else set(self.load_models)
        reasons = {n: r for n, r in unsupported_models(models, backends).items() if n in wanted or "*" in wanted}
        if not reasons:
            return
        if not self.skip_unsupported:
            raise ServerError(unsupported_problems(self.repo, reasons))
        if self.control_mode == "poll":
            raise ServerError(Problem("--skip-unsupported cannot be used with --model-control-mode poll",
                                      hint="use none or explicit"))
        self.skipped = reasons
        names = [m.name for m in models] if self.control_mode == "none" or "*" in wanted else self.load_models
        self.control_mode = "explicit"
        self.load_models = [n for n in names if n not in reasons]

    def _check_numpy(self, env: dict[str, str]) -> None:
        if not self.installation.is_wheel:
            return
        version = stub_numpy_version(env)
        if version is not None and int(version.split(".")[0]) >= 2:
            raise ServerError(Problem(
                f"numpy {version} is installed where the Python backend stub imports it; with numpy 2 the "
                "wheel's Python backend passes empty tensors", hint="install numpy<2 (`pip install 'numpy<2'`)"))

    def _pick_ports(self) -> None:
        picked = iter(free_ports(3))
        self.http_port, self.grpc_port, self.metrics_port = (p or next(picked) for p in self._ports)

    def _lost_port_race(self) -> bool:
        return 0 in self._ports and self._pump is not None and self._pump.contains("already in use")

    def _build_command(self, args: Sequence[str]) -> list[str]:
        command = [str(self.installation.binary), f"--model-repository={self.repo}",
                   f"--http-address={self.host}", f"--http-port={self.http_port}",
                   f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
                   f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
                   f"--model-control-mode={self.control_mode}",
                   f"--log-verbose={self.log_verbose}", f"--exit-timeout-secs={max(1, round(self.exit_timeout_s))}",
                   "--exit-on-error=true", *args]
        command += [f"--load-model={name}" for name in self.load_models]
        return command + self.extra_args

    def _launch(self, args: Sequence[str], extra_env: dict[str, str]) -> None:
        self.command = self._build_command(args)
        self.environment = dict(extra_env)
        env = {**os.environ, **extra_env}
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus
        self._process = GroupProcess(self.command, env)
        assert self._process.popen.stdout is not None  # Popen was given stdout=PIPE
        self._progress = LoadProgress(self._on_progress)
        self._pump = LogPump(self._process.popen.stdout, echo=self._echo, watch=self._progress.feed)

    def _ready(self) -> bool:
        # Our own process must have bound the port: a port picked as free can be taken by another
        # server started at the same moment, which would then answer for us.
        if self._pump is None or not self._pump.contains("Started HTTPService"):
            return False
        try:
            with urllib.request.urlopen(f"http://{self._client_host}:{self.http_port}/v2/health/ready",
                                        timeout=2) as reply:
                return int(reply.status) == 200
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            # HTTPException: a port picked as free was taken meanwhile by another server's gRPC
            # endpoint, which answers HTTP/1 with HTTP/2 frames; ours then fails to bind and exits.
            return False

    def _wait_ready(self) -> None:
        assert self._process is not None and self._pump is not None and self._progress is not None
        while self._progress.silent_for_s() < self.startup_timeout_s:
            if self._ready():
                return
            if self._process.poll() is not None:
                self._pump.join(5.0)
                raise ServerError(self._failure_problems(f"tritonserver exited with code {self._process.poll()}"))
            time.sleep(0.05)
        raise ServerError([self._hung_problem(), *(self._not_ready_problems() or self._failure_problems(""))])

    def _hung_problem(self) -> Problem:
        """The models still loading when the server went quiet, each with the step it was in."""
        assert self._progress is not None
        loading = self._progress.unfinished()
        steps = "; ".join(f"'{m}' at: {step}" if step else f"'{m}'" for m, step in sorted(loading.items()))
        what = f", still loading {steps}" if steps else ""
        return Problem(f"tritonserver showed no sign of progress for {self.startup_timeout_s:g} s "
                       f"({self._progress.elapsed_s():.0f} s after start){what}", path=str(self.repo),
                       hint="a load that is slow but silent needs a larger --ready-timeout (seconds without "
                            "any output); rerun with --server-log to see the server's own output")

    def _failure_problems(self, summary: str) -> list[Problem]:
        lines = self.log_lines()
        problems = load_failures(lines, self.repo)
        if problems:
            return problems
        detail = last_error_line(lines) or "no error line in its output"
        hint = _port_hint(detail, self.http_port, self.grpc_port, self.metrics_port) \
            if "already in use" in detail else None
        return [Problem(f"{summary}: {detail}" if summary else detail, path=str(self.repo), hint=hint)]

    def _not_ready_problems(self) -> list[Problem]:
        """Ask the running server which models are not ready, and why (its repository index)."""
        url = f"http://{self._client_host}:{self.http_port}/v2/repository/index"
        request = urllib.request.Request(url, data=b"{}")
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                index: list[dict[str, Any]] = json.loads(reply.read())
        except (urllib.error.URLError, OSError, ValueError):
            return []
        return [Problem(f"model '{m['name']}' is {m.get('state', 'not ready')}: {m.get('reason') or 'loading'}",
                        path=str(self.repo / m["name"]), model=m["name"])
                for m in index if m.get("state") != "READY"]

    def _shutdown(self) -> Optional[int]:
        if self._process is None:
            return None
        code = self._process.stop(grace_s=self.exit_timeout_s + 15.0)
        if self._pump is not None:
            self._pump.join(5.0)
        self._process = None
        return code


def _port_hint(detail: str, http: int, grpc: int, metrics: int) -> str:
    """Which flag moves the port another process holds (Triton names the service in its error line)."""
    lowered = detail.lower()
    flags = [(flag, port) for word, flag, port in (("grpc", "--grpc-port", grpc), ("metric", "--metrics-port", metrics),
                                                  ("http", "--http-port", http)) if word in lowered][:1]
    named = flags or [("--http-port", http), ("--grpc-port", grpc), ("--metrics-port", metrics)]
    which = " or ".join(f"{flag} (now {port})" for flag, port in named)
    return f"another process holds the port; pass a free one with {which}, or 0 to pick a free one"
