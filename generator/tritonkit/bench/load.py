"""Load generation: closed loop (fixed concurrency) and open loop (Poisson arrivals), warm-up excluded."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np

from tritonkit.bench.client import Sample
from tritonkit.bench.options import BenchOptions

__all__ = ["INTERRUPTED", "LevelRun", "LoadClient", "ProgressCallback", "run_level"]


class LoadClient(Protocol):
    """What a load level needs of a client: timed requests and the server's statistics (Triton or OpenAI)."""

    async def send(self, index: int) -> Sample:
        """Send the ``index``-th prepared request and time it."""

    async def statistics(self) -> list[dict[str, Any]]:
        """Return the server's per-model statistics (empty where it has none)."""

#: Called a few times a second with the fraction of the measured window done (0..1).
ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class LevelRun:
    """The raw outcome of one load level: the measured window's samples and server statistics.

    The window starts after warm-up has drained and ends when the last measured request is answered,
    so every request Triton counts between ``stats_before`` and ``stats_after`` is one of ``samples``.
    """

    level: float
    samples: tuple[Sample, ...]
    window_s: float
    stats_before: tuple[dict[str, Any], ...]
    stats_after: tuple[dict[str, Any], ...]


#: Set by Ctrl-C (``runner.run_bench``): no load hands out another request, so a sweep ends with those in flight.
INTERRUPTED = threading.Event()


class _Budget:
    """Hands out request indices until the deadline passes or the request limit is reached (or Ctrl-C)."""

    def __init__(self, duration_s: Optional[float], requests: Optional[int]) -> None:
        self.started = time.perf_counter()
        self.deadline = self.started + duration_s if duration_s is not None else None
        self.limit = requests
        self.issued = 0

    def take(self, at: Optional[float] = None) -> Optional[int]:
        now = time.perf_counter() if at is None else at
        if INTERRUPTED.is_set():
            return None
        if self.limit is not None and self.issued >= self.limit:
            return None
        if self.deadline is not None and now >= self.deadline:
            return None
        self.issued += 1
        return self.issued - 1

    def fraction(self) -> float:
        parts = [0.0]
        if self.deadline is not None:
            parts.append((time.perf_counter() - self.started) / (self.deadline - self.started or 1.0))
        if self.limit:
            parts.append(self.issued / self.limit)
        return min(1.0, max(parts))


async def _closed_loop(client: LoadClient, concurrency: int, budget: _Budget) -> list[Sample]:
    samples: list[Sample] = []

    async def worker() -> None:
        while (index := budget.take()) is not None:
            samples.append(await client.send(index))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


async def _open_loop(client: LoadClient, rate: float, budget: _Budget, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    tasks: list[asyncio.Task[Sample]] = []
    due = time.perf_counter()
    while (index := budget.take(at=due)) is not None:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(client.send(index)))
        due += float(rng.exponential(1.0 / rate))
    return list(await asyncio.gather(*tasks))


async def _drive(client: LoadClient, options: BenchOptions, level: float, budget: _Budget,
                 progress: Optional[ProgressCallback]) -> list[Sample]:
    async def report() -> None:
        while progress is not None:
            progress(budget.fraction())
            await asyncio.sleep(0.2)

    reporter = asyncio.create_task(report())
    try:
        if options.mode == "rate":
            return await _open_loop(client, level, budget, options.seed)
        return await _closed_loop(client, int(level), budget)
    finally:
        reporter.cancel()
        if progress is not None:
            progress(1.0)


def _answered(stats: list[dict[str, Any]]) -> int:
    total = 0
    for model in stats:
        inference = model.get("inference_stats", {})
        for key in ("success", "fail"):
            total += int(inference.get(key, {}).get("count", 0))
    return total


async def settled_statistics(client: LoadClient, tries: int = 20) -> list[dict[str, Any]]:
    """Read Triton's statistics until two reads 20 ms apart agree (the server has booked every request)."""
    last = await client.statistics()
    for _ in range(tries):
        await asyncio.sleep(0.02)
        current = await client.statistics()
        if _answered(current) == _answered(last):
            return current
        last = current
    return last


async def run_level(client: LoadClient, options: BenchOptions, level: float,
                    progress: Optional[ProgressCallback] = None) -> LevelRun:
    """Warm up, then measure one load level and read the server statistics around the window."""
    if options.warmup_s > 0:
        await _drive(client, options, level, _Budget(options.warmup_s, None), None)
    before = await settled_statistics(client)
    budget = _Budget(options.duration_s if options.requests is None else None, options.requests)
    samples = await _drive(client, options, level, budget, progress)
    window_s = time.perf_counter() - budget.started
    after = await settled_statistics(client)
    return LevelRun(level, tuple(samples), window_s, tuple(before), tuple(after))
