"""What the generated KEDA ScaledObject would do under a load curve: replicas over time and the queue time.

Pure arithmetic, one tick per second. Each replica serves ``slots`` requests at once, each taking ``service_s``
(both from a ``tritonkit bench`` level: its concurrency and mean latency). The queue is a fluid backlog when
arrivals exceed capacity, and M/M/c's stationary queue (Erlang C) below it. The signals are the recording
rules of ``k8s/prometheusrule.yaml`` computed on that queue and averaged over their rate window; the
autoscaler is the HPA KEDA drives, with the ScaledObject's settings: ``Value`` targets scale the current
count by value/threshold, ``AverageValue`` targets ask for value/threshold replicas; a 10% tolerance; at most
2 more pods per 15 s; a scale-down only to the highest count asked for over ``scale_down_window_s``; and new
pods serve after ``startup_s``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from tritonkit.k8s_conventions import SIGNAL_DEFAULTS

__all__ = ["AutoscalePolicy", "Tick", "default_policy", "erlang_c", "load_curve", "policy_from_plan", "simulate",
           "summary"]

#: The HPA's default tolerance: no change while the ratio is within 10% of 1.
_TOLERANCE = 0.1
#: The ScaledObject's scale-up policy (render/k8s.py): at most this many pods per period.
_UP_PODS, _UP_PERIOD_S = 2, 15


@dataclass(frozen=True)
class AutoscalePolicy:
    """One KEDA trigger and the HPA behaviour around it, as ``k8s/scaledobject.yaml`` writes them."""

    signal: str
    threshold: float
    metric_type: str
    min_replicas: int = 1
    max_replicas: int = 4
    polling_interval_s: int = 15
    window_s: int = 60
    scale_down_window_s: int = 300


@dataclass(frozen=True)
class Tick:
    """The state at one polling instant."""

    time_s: int
    load_rps: float
    ready: int
    desired: int
    signal: float
    queue_ms: float
    utilisation: float


class _Trigger(Protocol):
    @property
    def signal(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def metric_type(self) -> str: ...


class _Autoscaling(Protocol):
    @property
    def polling_interval_s(self) -> int: ...
    @property
    def window_s(self) -> int: ...
    @property
    def scale_down_window_s(self) -> int: ...


class _Settings(Protocol):
    @property
    def min_replicas(self) -> int: ...
    @property
    def max_replicas(self) -> int: ...
    @property
    def autoscaling(self) -> _Autoscaling: ...


class _Plan(Protocol):
    """What the simulation reads of a Kubernetes plan; ``tritonkit.model.k8s.KubernetesPlan`` has it."""

    @property
    def triggers(self) -> Sequence[_Trigger]: ...
    @property
    def spec(self) -> _Settings: ...


def policy_from_plan(plan: _Plan, index: int = 0) -> AutoscalePolicy:
    """The policy of the plan's ``index``-th trigger, with the spec's replicas, windows and polling."""
    trigger, spec = plan.triggers[index], plan.spec
    return AutoscalePolicy(trigger.signal, trigger.threshold, trigger.metric_type, spec.min_replicas,
                           spec.max_replicas, spec.autoscaling.polling_interval_s, spec.autoscaling.window_s,
                           spec.autoscaling.scale_down_window_s)


def default_policy(signal: str, threshold: Optional[float] = None) -> AutoscalePolicy:
    """A named signal with its default metric type and threshold (``SIGNAL_DEFAULTS``)."""
    metric_type, default = SIGNAL_DEFAULTS[signal]
    value = threshold if threshold is not None else default
    if value is None:
        raise ValueError(f"{signal} has no default threshold; give one")
    return AutoscalePolicy(signal, value, metric_type)


def load_curve(text: str) -> Callable[[float], float]:
    """``0:5,300:50,600:10`` (seconds:requests per second) as a piecewise-linear function of time.

    Raises:
        ValueError: the text is not ascending ``time:rate`` pairs.

    """
    points = []
    for part in text.split(","):
        at, sep, value = part.partition(":")
        if not sep:
            raise ValueError(f"{part!r} is not time:rate (e.g. 300:50)")
        points.append((float(at), float(value)))
    if any(b[0] <= a[0] for a, b in zip(points, points[1:])) or any(r < 0 for _, r in points):
        raise ValueError(f"{text!r} needs ascending times and rates >= 0")

    def rate(time_s: float) -> float:
        if time_s <= points[0][0]:
            return points[0][1]
        for (t0, r0), (t1, r1) in zip(points, points[1:]):
            if time_s <= t1:
                return r0 + (r1 - r0) * (time_s - t0) / (t1 - t0)
        return points[-1][1]

    return rate


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c with ``servers`` and ``offered`` = arrival rate x service time."""
    if servers <= 0 or offered >= servers:
        return 1.0
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    last = term * offered / servers / (1 - offered / servers)
    return last / (total + last)


@dataclass
class _Queue:
    """Requests waiting (``waiting``) and in service (``busy``) at one instant, and the mean wait."""

    backlog: float = 0.0

    def step(self, rate: float, servers: int, service_s: float) -> tuple[float, float, float]:
        """Advance one second; return (waiting, busy, wait in seconds)."""
        capacity = servers / service_s if servers else 0.0
        self.backlog = max(0.0, self.backlog + rate - capacity)
        offered = rate * service_s
        busy = min(offered, float(servers))
        if self.backlog > 0 or offered >= servers:
            waiting = self.backlog
            wait_s = self.backlog / capacity if capacity else math.inf
        else:
            waiting = erlang_c(servers, offered) * offered / (servers - offered)
            wait_s = waiting / rate if rate else 0.0
        return waiting, busy, wait_s


def _signal(signal: str, waiting: float, busy: float, rate: float, wait_s: float, ready: int) -> float:
    """The recording rule's value (``render/k8s.py``) from the queue's state."""
    if signal == "queue_compute_ratio":
        return waiting / max(busy, 1e-6)  # queue us per second / compute us per second
    if signal == "queue_time_us":
        return wait_s * 1e6 if math.isfinite(wait_s) else 1e12
    if signal == "pending_requests":
        return waiting
    inflight = waiting + busy  # Little's law: requests in the system
    if signal == "inflight_requests":
        return inflight
    if signal == "replicas_needed":
        return inflight / max(busy / max(ready, 1), 1.0)
    raise ValueError(f"the simulation knows tritonkit's signals, not {signal!r}")


def _desired(policy: AutoscalePolicy, value: float, current: int) -> int:
    if policy.metric_type == "Value":
        ratio = value / policy.threshold
        target = current * ratio
    else:
        ratio = value / (policy.threshold * max(current, 1))
        target = value / policy.threshold
    if abs(ratio - 1.0) <= _TOLERANCE:
        return current
    # Kubernetes reads metric values as milli-quantities: 5.00004 replicas is 5, not 6.
    return min(policy.max_replicas, max(policy.min_replicas, math.ceil(round(target, 3))))


def _scale(policy: AutoscalePolicy, wanted: int, current: int, history: deque[tuple[int, int]], now: int) -> int:
    """The HPA's behaviour: scale-down stabilised over the window, scale-up by at most 2 pods per 15 s."""
    history.append((now, wanted))
    while history and history[0][0] < now - policy.scale_down_window_s:
        history.popleft()
    if wanted < current:
        return max(wanted, max(w for _, w in history))
    steps = max(1, math.ceil(policy.polling_interval_s / _UP_PERIOD_S))
    return min(wanted, current + _UP_PODS * steps)


def simulate(policy: AutoscalePolicy, service_s: float, slots: int, rate: Callable[[float], float],
             duration_s: int, startup_s: int = 60) -> list[Tick]:
    """Run the load curve for ``duration_s`` seconds; one ``Tick`` per polling interval.

    Args:
        policy: the trigger and HPA settings.
        service_s: time one request takes on a replica serving ``slots`` at once.
        slots: requests a replica serves at once (bench's concurrency for that latency).
        rate: requests per second at each second (``load_curve``).
        duration_s: how long to run.
        startup_s: seconds from a pod's creation to its readiness (the model's load time).

    """
    queue, history = _Queue(), deque[tuple[int, int]]()
    created: list[int] = [-startup_s] * policy.min_replicas
    samples: deque[tuple[float, float, float, float]] = deque()
    ticks: list[Tick] = []
    for now in range(duration_s + 1):
        ready = sum(1 for t in created if now - t >= startup_s)
        load = rate(float(now))
        waiting, busy, wait_s = queue.step(load, ready * slots, service_s)
        samples.append((waiting, busy, load, wait_s))
        if len(samples) > policy.window_s:
            samples.popleft()
        if now % policy.polling_interval_s:
            continue
        means = [sum(s[i] for s in samples) / len(samples) for i in range(4)]
        value = _signal(policy.signal, means[0], means[1], means[2], means[3], ready)
        wanted = _desired(policy, value, len(created))
        target = _scale(policy, wanted, len(created), history, now)
        created = created[:target] if target < len(created) else created + [now] * (target - len(created))
        ticks.append(Tick(now, load, ready, target, value, wait_s * 1000.0, busy / max(ready * slots, 1)))
    return ticks


def summary(ticks: Sequence[Tick], polling_interval_s: int) -> dict[str, float]:
    """Peak and mean queue time, peak replicas, and replica-hours the curve cost."""
    return {"peak_queue_ms": max(t.queue_ms for t in ticks),
            "mean_queue_ms": sum(t.queue_ms for t in ticks) / len(ticks),
            "peak_replicas": max(t.desired for t in ticks),
            "replica_hours": sum(t.desired for t in ticks) * polling_interval_s / 3600.0}
