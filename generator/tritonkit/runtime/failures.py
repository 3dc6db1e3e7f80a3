"""Turn tritonclient's exceptions into ClientErrors a person can act on."""

from __future__ import annotations

import difflib
import socket
from collections.abc import Sequence
from typing import Callable, Optional

from tritonkit.errors import ClientError, Problem

__all__ = ["not_running", "timed_out", "translate", "unknown_model"]

_NOT_RUNNING_MARKERS = ("failed to connect", "connection refused", "unavailable", "connect call failed",
                        "cannot connect", "name or service not known", "connection reset")
_TIMEOUT_MARKERS = ("deadline exceeded", "deadline_exceeded", "timed out", "timeout")
_UNKNOWN_MODEL_MARKERS = ("unknown model", "is not found")


def not_running(url: str, protocol: str) -> ClientError:
    """The error for a server that does not answer at ``url``."""
    return ClientError(Problem(f"no Triton server answers at {url} ({protocol})", path=url,
                               hint="start one with `tritonkit serve REPO`, or pass the right --url and --protocol"))


def unknown_model(model: str, loaded: Sequence[str], url: str) -> ClientError:
    """The error for a model the server does not serve, listing those it does, with a "did you mean"."""
    names = ", ".join(loaded) if loaded else "none"
    close = difflib.get_close_matches(model, list(loaded), n=1)
    hint = f"did you mean '{close[0]}'?" if close else \
        "check the name, or load it (`tritonkit serve` loads every model by default)"
    return ClientError(Problem(f"model '{model}' is not served at {url}; ready models: {names}", path=url, model=model,
                               hint=hint))


def timed_out(model: Optional[str], url: str, timeout_s: float) -> ClientError:
    """The error for a request that took longer than ``timeout_s``."""
    what = f"request to model '{model}'" if model else "request"
    return ClientError(Problem(f"{what} at {url} timed out after {timeout_s:g} s", path=url, model=model,
                               hint="raise --timeout, or check the server's load"))


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None)
    text = text() if callable(text) else text
    status = getattr(exc, "status", None)
    status = status() if callable(status) else status
    return " ".join(str(part) for part in (status, text or exc) if part)


def translate(exc: BaseException, *, url: str, protocol: str, timeout_s: float, model: Optional[str] = None,
              loaded: Optional[Callable[[], list[str]]] = None) -> ClientError:
    """Map a tritonclient/grpc/socket exception to the ClientError that says what to do.

    ``loaded`` lists the ready models; it is called only for an unknown-model error.
    """
    if isinstance(exc, ClientError):
        return exc
    text = _message(exc)
    lowered = text.lower()
    if isinstance(exc, (TimeoutError, socket.timeout)) or any(m in lowered for m in _TIMEOUT_MARKERS):
        return timed_out(model, url, timeout_s)
    if model and any(m in lowered for m in _UNKNOWN_MODEL_MARKERS):
        names: list[str] = []
        if loaded is not None:
            try:
                names = loaded()
            except Exception:
                names = []
        return unknown_model(model, names, url)
    if isinstance(exc, ConnectionError) or any(m in lowered for m in _NOT_RUNNING_MARKERS):
        return not_running(url, protocol)
    return ClientError(Problem(f"request failed ({protocol}): {text}", path=url, model=model))
