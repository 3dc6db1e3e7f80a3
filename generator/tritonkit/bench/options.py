"""What one bench run is asked to do, and the parsers that turn CLI text into it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tritonkit.errors import BenchError, Problem

__all__ = ["BenchError", "BenchOptions", "check_protocol", "parse_duration", "parse_levels"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, None: 1.0}


@dataclass(frozen=True)
class BenchOptions:
    """Every setting of one ``tritonkit bench`` run.

    ``mode`` is ``"concurrency"`` (closed loop: N workers, each sends its next request when the
    last one is answered) or ``"rate"`` (open loop: Poisson arrivals at ``levels`` requests/s).
    A level ends after ``duration_s`` seconds or ``requests`` requests, whichever is given.
    """

    model: str
    url: str = "localhost:8001"
    protocol: str = "grpc"
    mode: str = "concurrency"
    levels: tuple[float, ...] = (1, 2, 4, 8, 16, 32)
    duration_s: Optional[float] = 30.0
    requests: Optional[int] = None
    warmup_s: float = 5.0
    input_data: Optional[Path] = None
    prompts: Optional[Path] = None
    input_tokens: int = 128
    output_tokens: int = 64
    stream: bool = False
    tokenizer: Optional[str] = None
    timeout_s: float = 60.0
    seed: int = 0
    #: An OpenAI-compatible server's base URL (``http://host:9000/v1``): bench drives it instead of Triton.
    openai_url: Optional[str] = None
    #: ``chat`` (``/chat/completions``) or ``completions`` (``/completions``), with ``openai_url``.
    endpoint: str = "chat"
    #: Sent as ``Authorization: Bearer`` to the OpenAI server.
    api_key: Optional[str] = None


def parse_duration(text: str, flag: str) -> float:
    """Return seconds from ``30s``, ``500ms``, ``2m`` or a bare number of seconds.

    Raises:
        BenchError: the text is not a non-negative duration.

    """
    match = _DURATION.match(text)
    if not match:
        raise BenchError(Problem(f"must be a duration like 30s, 500ms or 2m (got {text!r})", path=flag,
                                 hint="write a number with an optional unit ms, s or m"))
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_levels(text: str, flag: str, integer: bool) -> tuple[float, ...]:
    """Return the comma-separated load levels of ``--concurrency`` or ``--request-rate``.

    Raises:
        BenchError: a level is not a positive number (or not a whole number for concurrency).

    """
    levels: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            value = -1.0
        if value <= 0 or (integer and value != int(value)):
            kind = "positive whole numbers" if integer else "positive numbers"
            raise BenchError(Problem(f"takes comma-separated {kind} (got {part!r} in {text!r})", path=flag,
                                     hint=f"for example {flag} 1,2,4,8"))
        levels.append(value)
    return tuple(levels)


def check_protocol(protocol: str, stream: bool) -> None:
    """Check ``--protocol`` and that a stream is asked over gRPC, the only protocol Triton streams on.

    Raises:
        BenchError: the protocol is unknown, or streaming was asked over HTTP.

    """
    if protocol not in ("grpc", "http"):
        raise BenchError(Problem(f"must be grpc or http (got {protocol!r})", path="--protocol"))
    if stream and protocol == "http":
        raise BenchError(Problem("needs --protocol grpc (Triton streams decoupled models over gRPC)",
                                 path="--stream", hint="drop --protocol http, or drop --stream"))
