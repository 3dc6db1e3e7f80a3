"""The server candidates are loaded into: a running Triton with explicit model control, over gRPC.

Each candidate is one call to Triton's model-repository API, ``load`` with the candidate's config
(no restart, no file written on the server); the config the model had before the run is read first and
loaded back at the end, whatever ends the run. A server without model control, one that asks for an
admin key not given, or one serving models that are not the spec's is refused before anything loads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from tritonkit.errors import Problem, TuneError
from tritonkit.runtime.server import ADMIN_HEADER, ADMIN_KEY_ENV

__all__ = ["TritonTarget"]

#: What Triton answers a load request under ``--model-control-mode none`` or ``poll``.
_NO_CONTROL = "not allowed if polling is enabled"
_SERVE_HINT = ("restart it with --model-control-mode explicit (tritonkit serve REPO --model-control-mode explicit "
               "--load-model '*'), or leave out --url and let tune start its own local server")


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None)
    text = text() if callable(text) else text
    return str(text or exc).strip()


class TritonTarget:
    """One model on a Triton server at ``url`` (gRPC ``host:port``), loaded with one config after another.

    ``server_log`` (a local server's output lines so far) lets a refused load carry the server's own
    error line when the API's answer is terse.
    """

    def __init__(self, url: str, model: str, admin_key: Optional[str] = None,
                 server_log: Optional[Callable[[], list[str]]] = None) -> None:
        import tritonclient.grpc as grpcclient

        self.url, self.model, self._server_log = url, model, server_log
        self._headers = {f"triton-grpc-protocol-{ADMIN_HEADER}": admin_key} if admin_key else None
        self._client = grpcclient.InferenceServerClient(url)
        self.original: Optional[str] = None

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def _repository_call(self, call: Callable[[], Any], what: str) -> Any:
        try:
            return call()
        except Exception as exc:
            text = _message(exc)
            lowered = text.lower()
            if "restricted" in lowered or "permission" in lowered:
                raise TuneError(Problem(f"the server at {self.url} asks for an admin key to {what}", path=self.url,
                                        hint=f"pass --admin-key KEY (or set ${ADMIN_KEY_ENV}); `tritonkit serve` "
                                             "prints the key it made up")) from None
            if _NO_CONTROL in lowered:
                raise TuneError(Problem(f"the server at {self.url} does not allow model control (it runs with "
                                        "--model-control-mode none or poll), so tune cannot load candidates",
                                        path=self.url, hint=_SERVE_HINT)) from None
            if "unavailable" in lowered or "connect" in lowered:
                raise TuneError(Problem(f"no Triton server answers at {self.url} (gRPC)", path=self.url,
                                        hint="pass the gRPC address with --url, or leave --url out to let tune "
                                             "start a local server")) from None
            raise

    def check(self, spec_models: Sequence[str], allow_others: bool) -> None:
        """Refuse a server that cannot be tuned on: no model control, a missing key, other tenants' models.

        Raises:
            TuneError: what is wrong, with the flag that fixes it.

        """
        index = self._repository_call(lambda: self._client.get_model_repository_index(
            headers=self._headers, as_json=True), "list its models").get("models", [])
        # The index lists the repository's folders; a model loaded with files of its own is only in the statistics.
        loaded = self._client.get_inference_statistics("", as_json=True).get("model_stats", [])
        ready = sorted({m["name"] for m in index if m.get("state") == "READY"} | {m["name"] for m in loaded})
        others = [name for name in ready if name not in spec_models]
        if others and not allow_others:
            raise TuneError(Problem(f"the server at {self.url} also serves models the spec does not have: "
                                    f"{', '.join(others)}; tune reloads {self.model} and loads the server, which "
                                    "disturbs them, and their traffic disturbs the measurements", path=self.url,
                                    hint="tune on a server of the spec's repository alone, or pass "
                                         "--allow-other-models to go ahead anyway"))
        if self.model not in ready:
            shown = ", ".join(ready) or "none"
            raise TuneError(Problem(f"model {self.model} is not loaded at {self.url} (ready: {shown})",
                                    path=self.url, model=self.model,
                                    hint="serve the repository `tritonkit generate SPEC` wrote, with the model loaded"))
        # A load of the model as it is: a no-op under explicit control, refused without it.
        self._repository_call(lambda: self._client.load_model(self.model, headers=self._headers), "load models")
        config = self._client.get_model_config(self.model, as_json=True)
        self.original = json.dumps(config.get("config", config))

    def _unload(self, timeout_s: float = 120.0) -> None:
        """Unload the model and wait until the server has let go of it."""
        self._client.unload_model(self.model, headers=self._headers)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            index = self._client.get_model_repository_index(headers=self._headers, as_json=True).get("models", [])
            if not any(m.get("name") == self.model and m.get("state") in ("READY", "UNLOADING") for m in index):
                return
            time.sleep(0.1)

    def _load(self, config: str) -> None:
        # A decoupled Python model reloaded in place, after it had streamed, took Triton 2.51 (the
        # nvidia-pytriton 0.7.0 wheel's server) down on the next stream: "malloc(): unsorted double linked
        # list corrupted", SIGABRT. Unloading it first, then loading, ran cycle after cycle.
        if json.loads(config).get("model_transaction_policy", {}).get("decoupled"):
            self._unload()
        self._client.load_model(self.model, headers=self._headers, config=config)

    def load(self, config: str) -> Optional[str]:
        """Load the model with ``config`` (JSON); None when it loaded, else the server's message.

        A model reloaded in place keeps serving its old config when the new one fails; a decoupled one is
        unloaded first (see ``_load``) and stays unloaded until the next candidate loads.
        """
        before = len(self._server_log()) if self._server_log else 0
        try:
            self._repository_call(lambda: self._load(config), "load models")
        except TuneError:
            raise
        except Exception as exc:  # the server refused this config: its message is the candidate's record
            return self._explain(_message(exc), before)
        return None

    def _explain(self, message: str, before: int) -> str:
        """The API's message, with the server's own error line about the model when it says more."""
        if self._server_log is None:
            return message
        lines = [line for line in self._server_log()[before:] if self.model in line or "error" in line.lower()]
        detail = next((line.strip() for line in reversed(lines) if line[:1] in "EW" or "error" in line.lower()), None)
        return f"{message}; server log: {detail}" if detail and detail not in message else message

    def restore(self) -> None:
        """Load the config the model had when the run began (nothing to do if it was never read)."""
        if self.original is not None:
            self._load(self.original)
