"""What tritonkit's PyTorch engine says about itself, under vLLM's metric names and with vLLM's meanings.

Autoscalers and routers read vLLM's names (llm-d's scheduler and most KEDA examples key on
``vllm:num_requests_waiting`` and ``vllm:kv_cache_usage_perc``), so the engine exports those, with the
buckets vLLM's own Prometheus logger gives its histograms (``vllm/v1/metrics/loggers.py``). ``FAMILIES``
lists them; ``EngineStats`` collects them without Triton; ``llm_triton.EngineMetrics`` turns each
``EngineStats.take`` into Triton metrics on ``/metrics``.

Every value handed to Triton is a message to the server process (about 70 us on a 2-core CPU), so a
histogram observed sample by sample costs a message per sample. That is fine once per request (time to
first token, end to end, in the queue), not once per token: the inter-token histogram is counted here, in
vLLM's buckets, and written as the series a histogram is made of (``_bucket`` by ``le``, ``_sum``,
``_count``, as counters), so publishing it costs at most one message per bucket whatever the load.

The scheduler (``llm_scheduler.py``) calls ``EngineStats`` at three points: a request is queued
(``submit``: the request's listener is wrapped, so every token the engine delivers is seen), admitted
(``_admit``) and finished (``_finish``). Gauges (requests running and waiting, KV blocks in use) and the
prefix cache's counts are read from the engine when ``take`` is called. What the scheduler's thread
does per token is a clock read and an append, never a call into Triton.

Copied next to the engine's ``model.py``; it knows nothing of Triton.
"""

from __future__ import annotations

import bisect
import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from llm_sequence import Listener, Request

__all__ = ["FAMILIES", "FINISHED_REASONS", "EngineStats", "Family", "Reading", "Series"]

#: vLLM's buckets for time to first token, in seconds.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
#: vLLM's buckets for the time between two tokens of a request, in seconds.
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
#: vLLM's buckets for whole-request times (end to end, queued), in seconds.
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)

#: The engine's finish reasons under vLLM's ``finished_reason`` label values (vLLM's ``FinishReason``).
FINISHED_REASONS = {"stop": "stop", "length": "length", "cancelled": "abort", "error": "error"}
#: A finish reason that means no token was chosen: such a request has no time to first token.
_NO_TOKEN = ("cancelled", "error")
#: Samples a histogram keeps while no publisher takes them (a bound, not a buffer that is meant to fill).
_MAX_SAMPLES = 1 << 16


@dataclass(frozen=True)
class Family:
    """One metric family: its Prometheus name, help text, kind (counter, gauge, histogram) and buckets."""

    name: str
    description: str
    kind: str
    buckets: tuple[float, ...] = ()


RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"
CACHE_INFO = "vllm:cache_config_info"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
SUCCESS = "vllm:request_success_total"
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_HITS = "vllm:prefix_cache_hits_total"
TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"
E2E = "vllm:e2e_request_latency_seconds"
QUEUE = "vllm:request_queue_time_seconds"

#: Every family the engine exports. Counters carry ``_total`` in their name: Triton prints names as given,
#: where vLLM's Prometheus client adds the suffix itself.
FAMILIES = (
    Family(RUNNING, "Requests the engine is computing (prefilling or decoding).", "gauge"),
    Family(WAITING, "Requests queued for the engine, holding no KV cache yet.", "gauge"),
    Family(KV_USAGE, "Fraction of the KV-cache blocks held by requests (1 means all of them).", "gauge"),
    Family(CACHE_INFO, "The engine's KV-cache layout, in its labels (the value is always 1).", "gauge"),
    Family(PROMPT_TOKENS, "Prompt tokens of the requests that got their first token.", "counter"),
    Family(GENERATION_TOKENS, "Tokens the engine generated and delivered.", "counter"),
    Family(SUCCESS, "Requests finished, by finish reason.", "counter"),
    Family(PREFIX_QUERIES, "Prompt tokens looked up in the prefix cache.", "counter"),
    Family(PREFIX_HITS, "Prompt tokens the prefix cache held already.", "counter"),
    Family(TTFT, "Seconds from a request's arrival at the engine to its first token.", "histogram", TTFT_BUCKETS),
    # A histogram counted here and written as its series (see the module's docstring).
    Family(ITL + "_bucket", "Intervals between two consecutive tokens of a request, by upper bound in seconds.",
           "counter"),
    Family(ITL + "_sum", "Seconds between two consecutive tokens of a request, summed.", "counter"),
    Family(ITL + "_count", "Intervals between two consecutive tokens of a request.", "counter"),
    Family(E2E, "Seconds from a request's arrival at the engine to its end.", "histogram", REQUEST_BUCKETS),
    Family(QUEUE, "Seconds a request waited before the engine admitted it.", "histogram", REQUEST_BUCKETS),
)

#: A series of a family: its name and the labels it has beyond the model's own, as sorted pairs.
Series = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Reading:
    """What ``EngineStats.take`` returns: gauge values and counter totals by series, new histogram samples."""

    #: Gauges as they are now; counters as totals since the engine started (the publisher adds the difference).
    levels: dict[Series, float] = field(default_factory=dict)
    #: Per histogram family, the values observed since the last ``take``.
    samples: dict[str, list[float]] = field(default_factory=dict)


class _Engine(Protocol):
    """What ``EngineStats`` reads of the scheduler (``llm_scheduler.Engine``): its KV memory (``llm_kv.KVMemory``)."""

    kv: Any


class _Watch:
    """A request's listener, with the times the metrics need: when it was queued, its last token."""

    __slots__ = ("admitted", "first", "last", "listener", "queued", "stats")

    def __init__(self, stats: EngineStats, listener: Listener) -> None:
        self.stats = stats
        self.listener = listener
        self.queued = time.perf_counter()
        self.admitted = False
        self.first: Optional[float] = None
        self.last = 0.0

    def __call__(self, request: Request, new_tokens: list[int]) -> None:
        if new_tokens:
            self.stats.delivered(self, request, len(new_tokens))
        self.listener(request, new_tokens)


class EngineStats:
    """The engine's counts and times since it started, collected on the scheduler's thread.

    Each count is written by one thread (``submit``'s callers take turns under the scheduler's lock) and
    only grows, and histogram samples go into bounded deques that ``take`` drains: no lock is taken.
    Requests running and waiting are told by these counts, not by the scheduler's lists, which a request
    leaves for a moment in the middle of a step.
    """

    #: The families ``take`` reports, for the publisher (which imports nothing of this module).
    families = FAMILIES

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.prompt_tokens = 0
        self.generation_tokens = 0
        #: Requests queued, admitted, and finished before or after admission.
        self.queued_total = self.admitted_total = self.dropped_total = self.done_total = 0
        self.finished_by_reason = dict.fromkeys(sorted(set(FINISHED_REASONS.values())), 0)
        self._samples: dict[str, collections.deque[float]] = {
            name: collections.deque(maxlen=_MAX_SAMPLES) for name in (TTFT, ITL, E2E, QUEUE)}
        #: The inter-token histogram, counted by ``take``: per bucket of ITL_BUCKETS and +Inf (not cumulative).
        self._itl_counts = [0] * (len(ITL_BUCKETS) + 1)
        self._itl_sum = 0.0

    # -- the scheduler's hooks -----------------------------------------------------------------

    def queued(self, request: Request) -> None:
        """A request enters the queue: from now its listener reports the tokens it is handed."""
        if not isinstance(request.listener, _Watch):
            request.listener = _Watch(self, request.listener)
        self.queued_total += 1

    def admitted(self, request: Request) -> None:
        """A request leaves the queue for the running batch: how long it waited."""
        watch = request.listener
        if isinstance(watch, _Watch):
            watch.admitted = True
            self._samples[QUEUE].append(time.perf_counter() - watch.queued)
            self.admitted_total += 1

    def delivered(self, watch: _Watch, request: Request, count: int) -> None:
        """``count`` new tokens of ``request`` are handed to its listener."""
        now = time.perf_counter()
        if watch.first is None:
            self._first_token(watch, request, now)
        else:
            self._samples[ITL].append(now - watch.last)
        watch.last = now
        self.generation_tokens += count

    def finished(self, request: Request) -> None:
        """A request is done (finished, cancelled or failed): its reason and its time end to end."""
        watch = request.listener
        if not isinstance(watch, _Watch):
            return
        now = time.perf_counter()
        reason = request.row.finish_reason or "stop"
        if watch.first is None and reason not in _NO_TOKEN:
            self._first_token(watch, request, now)  # its first token ended it (an end id, never delivered)
        if watch.admitted:
            self.done_total += 1
        else:
            self.dropped_total += 1
        label = FINISHED_REASONS.get(reason, reason)
        self.finished_by_reason[label] = self.finished_by_reason.get(label, 0) + 1
        self._samples[E2E].append(now - watch.queued)

    def _first_token(self, watch: _Watch, request: Request, now: float) -> None:
        watch.first = now
        self.prompt_tokens += len(request.row.prompt)
        self._samples[TTFT].append(now - watch.queued)

    # -- the publisher's side ------------------------------------------------------------------

    def take(self) -> Reading:
        """Gauges now, counter totals, and the histogram samples since the last call (they are handed over once)."""
        kv = self.engine.kv
        prefixes = kv.prefixes
        admitted = self.admitted_total  # read first: the waiting count is never below zero
        levels: dict[Series, float] = {
            (RUNNING, ()): max(0, admitted - self.done_total),
            (WAITING, ()): max(0, self.queued_total - admitted - self.dropped_total),
            (KV_USAGE, ()): (kv.num_blocks - kv.free_blocks) / kv.num_blocks if kv.num_blocks else 0.0,
            (CACHE_INFO, self.cache_info()): 1.0,
            (PROMPT_TOKENS, ()): self.prompt_tokens, (GENERATION_TOKENS, ()): self.generation_tokens,
            (PREFIX_QUERIES, ()): getattr(prefixes, "query_tokens", 0),
            (PREFIX_HITS, ()): getattr(prefixes, "hit_tokens", 0)}
        for reason, total in list(self.finished_by_reason.items()):
            levels[(SUCCESS, (("finished_reason", reason),))] = total
        levels.update(self._itl_levels())
        return Reading(levels, {name: _drain(samples) for name, samples in self._samples.items() if name != ITL})

    def _itl_levels(self) -> dict[Series, float]:
        """The inter-token histogram's series: new samples counted into vLLM's buckets, then cumulative totals."""
        for value in _drain(self._samples[ITL]):
            self._itl_counts[bisect.bisect_left(ITL_BUCKETS, value)] += 1
            self._itl_sum += value
        levels: dict[Series, float] = {}
        total = 0
        for bound, count in zip((*(f"{b:g}" for b in ITL_BUCKETS), "+Inf"), self._itl_counts):
            total += count
            levels[(ITL + "_bucket", (("le", bound),))] = total
        levels[(ITL + "_sum", ())] = self._itl_sum
        levels[(ITL + "_count", ())] = total
        return levels

    def cache_info(self) -> tuple[tuple[str, str], ...]:
        """The labels of ``vllm:cache_config_info`` that llm-d's scheduler reads (block size, number of blocks)."""
        kv = self.engine.kv
        return (("block_size", str(kv.block_tokens)), ("enable_prefix_caching", str(kv.prefixes is not None)),
                ("num_gpu_blocks", str(kv.num_blocks)))


def _drain(samples: collections.deque[float]) -> list[float]:
    """Pop what the deque holds now (the scheduler's thread may append meanwhile; only the caller pops)."""
    pop = samples.popleft
    return [pop() for _ in range(len(samples))]
