"""``Server``: run a model repository on a real local tritonserver, wait until it is ready, stop it cleanly."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal as signals
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from tritonkit.errors import Problem, ServerError
from tritonkit.runtime.diagnosis import exit_problems, hung_problem, not_ready_problems, repository_index
from tritonkit.runtime.healing import Healer
from tritonkit.runtime.locate import Installation, check_stub_numpy, find_tritonserver, prepare_environment
from tritonkit.runtime.logs import LogPump
from tritonkit.runtime.process import GroupProcess, free_ports
from tritonkit.runtime.progress import LoadEvent, LoadProgress
from tritonkit.runtime.repository import plan_loads, repository_path_problem
from tritonkit.runtime.stubs import Stub, StubWatch, remove_regions

if TYPE_CHECKING:
    from tritonkit.runtime.client import Client

__all__ = ["ADMIN_HEADER", "ADMIN_KEY_ENV", "CONTROL_MODES", "Server"]

CONTROL_MODES = ("none", "explicit", "poll")
#: Environment variable with the key of the model-repository API (load, unload, index) under model control.
ADMIN_KEY_ENV = "TRITONKIT_ADMIN_KEY"
#: The header that carries it (gRPC metadata: ``triton-grpc-protocol-`` + this name), as in the compose stack.
ADMIN_HEADER = "triton-admin-key"
_PORT_RETRIES = 3


class Server:
    """A tritonserver serving ``repo``; use as ``with Server(repo) as server:``.

    Ports given as 0 are picked free; the endpoints listen on ``host`` (loopback unless told otherwise).
    ``skip_unsupported`` serves only the models whose backend the server has (the wheel's server has only
    the Python backend); otherwise such models raise before start. ``startup_timeout_s`` counts from the
    server's last sign of progress (any output), so a slow first load succeeds and a hung one ends;
    ``progress`` is told each model's load steps as they come.

    A watcher (``runtime.healing``) notices a Python backend stub process that died (the backend neither
    restarts it nor fails the streams it was serving, and the model stays READY) and says so through
    ``notify``; with ``heal`` on, it restarts the server on the same ports, which fails every request in
    flight at once, removes the dead stub's shared memory and loads the models again. Under model control
    (explicit or poll) the model-repository API needs ``admin_key`` in the ``triton-admin-key`` header (from
    ``$TRITONKIT_ADMIN_KEY`` when not given, else generated for this server); :meth:`client` sends it.
    """

    def __init__(self, repo: Union[str, Path], *, tritonserver: Optional[str] = None, http_port: int = 0,
                 grpc_port: int = 0, metrics_port: int = 0, model_control_mode: str = "none",
                 load_models: Sequence[str] = (), log_verbose: int = 0, gpus: Optional[str] = None,
                 skip_unsupported: bool = False, exit_timeout_s: float = 30.0, startup_timeout_s: float = 120.0,
                 extra_args: Sequence[str] = (), echo: Optional[Callable[[str], None]] = None,
                 host: str = "127.0.0.1", progress: Optional[Callable[[LoadEvent], None]] = None,
                 heal: bool = True, admin_key: Optional[str] = None,
                 notify: Optional[Callable[[str], None]] = None) -> None:
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
        self.admin_key = admin_key or os.environ.get(ADMIN_KEY_ENV) or secrets.token_urlsafe(24)
        self._stubs = StubWatch()
        self._lock = threading.RLock()
        self._restarting = threading.Event()
        self._stop_requested = threading.Event()
        self._healer = Healer(self._stubs, self._running_pid, self._relaunch, self._stop_requested,
                              enabled=heal, notify=notify)
        self._launch_args: tuple[list[str], dict[str, str]] = ([], {})
        self._abandoned = False  # stopped while a restart had killed the old server and not started the new

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

    @property
    def heal(self) -> bool:
        """True when a dead backend process gets the server restarted."""
        return self._healer.enabled

    @property
    def heals(self) -> list[tuple[list[Stub], Optional[float]]]:
        """Each restart after a dead stub: (the stubs that died, seconds until ready again, or None if it failed)."""
        return self._healer.heals

    @property
    def restricted(self) -> bool:
        """True when the model-repository API needs the admin key (the server runs under model control)."""
        return self.control_mode != "none"

    def admin_headers(self, protocol: str = "http") -> dict[str, str]:
        """The header (HTTP) or metadata (gRPC) that opens the model-repository API; empty when it is open."""
        if not self.restricted:
            return {}
        name = ADMIN_HEADER if protocol == "http" else f"triton-grpc-protocol-{ADMIN_HEADER}"
        return {name: self.admin_key}

    def client(self, protocol: str = "grpc") -> Client:
        """A :class:`tritonkit.client.Client` for this server over ``protocol`` (grpc or http), with the admin key."""
        from tritonkit.runtime.client import Client

        return Client(self.grpc_url if protocol == "grpc" else self.http_url, protocol=protocol,
                      headers=self.admin_headers(protocol))

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
            check_stub_numpy(self.installation, environment.env)
            self._launch_args = (environment.args, environment.env)
            for attempt in range(_PORT_RETRIES):
                self._pick_ports()
                self._launch(environment.args, environment.env)
                try:
                    self._wait_ready()
                    self._healer.start()
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
        self._stop_requested.set()
        self._healer.join()
        with self._lock:
            code = self._shutdown()
        if self._workspace is not None:
            shutil.rmtree(self._workspace, ignore_errors=True)
            self._workspace = None
        return code

    def signal(self, signum: int) -> None:
        """Forward a signal to the server (SIGINT/SIGTERM start its graceful stop, and end any healing)."""
        if signum in (signals.SIGINT, signals.SIGTERM):
            self._stop_requested.set()
        with self._lock:
            if self._process:
                self._process.signal(signum)

    def kill(self) -> None:
        """Kill the server and its children at once (SIGKILL to the process group)."""
        if self._process:
            self._process.kill_group()

    def wait(self, timeout_s: Optional[float] = None) -> Optional[int]:
        """Wait for the server to exit on its own; return its exit code, or None on timeout.

        A restart to heal a dead backend process is not an exit: the wait goes on through it.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            process = self._process
            if process is None:
                return None
            code = process.poll()
            if code is not None and not self._restarting.is_set() and process is self._process:
                return 0 if self._abandoned else code
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def is_running(self) -> bool:
        """True while the server process lives."""
        return self._process is not None and self._process.poll() is None

    def _running_pid(self) -> Optional[int]:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

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
            plan = plan_loads(self.repo, self.installation.backends(), self.control_mode, self.load_models,
                              self.skip_unsupported)
            self.control_mode, self.load_models, self.skipped = plan.control_mode, plan.load_models, plan.skipped
            self._planned = True
        return dict(self.skipped)

    # -------------------------------------------------------------- helpers
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
        if self.restricted:
            # Model control loads and unloads whatever the repository holds: only the key holder may.
            rule = f"model-repository:{ADMIN_HEADER}={self.admin_key}"
            command += [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
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
            if self._restarting.is_set() and self._stop_requested.is_set():
                raise ServerError(Problem("stopped while restarting", path=str(self.repo)))
            if self._process.poll() is not None:
                self._pump.join(5.0)
                raise ServerError(self._exit_problems(f"tritonserver exited with code {self._process.poll()}"))
            time.sleep(0.05)
        hung = hung_problem(self._progress, self.startup_timeout_s, self.repo)
        raise ServerError([hung, *(not_ready_problems(self._repository_index(), self.repo) or self._exit_problems(""))])

    def _exit_problems(self, summary: str) -> list[Problem]:
        return exit_problems(self.log_lines(), self.repo, summary, (self.http_port, self.grpc_port, self.metrics_port))

    def _repository_index(self) -> Optional[list[dict[str, Any]]]:
        return repository_index(f"http://{self._client_host}:{self.http_port}", self.admin_headers("http"))

    def _shutdown(self) -> Optional[int]:
        if self._process is None:
            return None
        code = self._process.stop(grace_s=self.exit_timeout_s + 15.0)
        if self._pump is not None:
            self._pump.join(5.0)
        self._process = None
        if self._abandoned:
            code = 0
        # A stub that died, or a server killed after its grace, leaves its shared memory behind.
        remove_regions(self._stubs.forget())
        return code

    # -------------------------------------------------------------- healing
    def _loaded_models(self) -> Optional[list[str]]:
        """Under explicit control, the models loaded now (so the restart loads the same); else None."""
        if self.control_mode != "explicit":
            return None
        index = self._repository_index()
        return None if index is None else sorted({m["name"] for m in index if m.get("state") == "READY"})

    def _relaunch(self) -> bool:
        """Kill the server (its stuck requests fail at once), remove its shared memory, start it again.

        Returns False, having started nothing, when the server is being stopped meanwhile.

        Raises:
            ServerError: the new server did not come up.

        """
        with self._lock:
            if self._stop_requested.is_set() or self._process is None:
                return False
            self._restarting.set()
            try:
                loaded = self._loaded_models()
                if loaded is not None:
                    self.load_models = loaded
                self._process.kill_group()
                self._process.stop(grace_s=5.0)
                if self._pump is not None:
                    self._pump.join(5.0)
                remove_regions(self._stubs.forget())
                if self._stop_requested.is_set():
                    self._abandoned = True
                    return False
                self._launch(*self._launch_args)
                self._wait_ready()
                self._stubs.poll(self._process.pid)
                return True
            finally:
                self._restarting.clear()
