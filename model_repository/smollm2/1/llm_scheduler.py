"""In-flight batching for tritonkit's PyTorch engine: requests join the running batch between steps.

One background thread owns the model. Each iteration it admits queued requests while KV-cache
blocks are free, prefills one chunk of one new prompt (so a long prompt never stalls decoding for
more than a chunk), merges finished prefills into the running batch, and runs one decode step for
every running sequence. A finished or cancelled sequence leaves the batch at once and returns its
blocks. Copied next to the engine's ``model.py``; it knows nothing of Triton.

This module is the scheduler: queues, request states (``llm_sequence.State``), admission, token choice
and the loop. What a sequence holds and where its keys live is the KV memory's (``llm_kv.py``: one
dynamic cache, or static slots); the forward passes are the step runner's (``llm_steps.py`` for the
dynamic cache, ``llm_slots.py`` for static slots with CUDA graphs). ``engine_from_parameters`` picks
the pair a model's parameters and device call for.

Why not transformers' ``ContinuousBatchingManager``: it has no per-request seed, repetition,
presence or frequency penalties, bad or stop words, and its module layout changed between 5.17 and
5.24; on this project's 2-core CPU it also decoded SmolLM2 slower than this loop (docs/llm.md).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any, Optional

import torch

import llm_common
import llm_generate
import llm_kv
import llm_metrics
import llm_slots
import llm_steps
from llm_sequence import Listener, Request, State

__all__ = ["Engine", "Listener", "QueueFullError", "Request", "State", "engine_from_parameters"]


class QueueFullError(llm_common.RequestError):
    """The engine holds as many waiting requests as it may; the caller should retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, llm_common.OVERLOADED)


def _parts(model: Any, pad_id: int, max_batch: int, num_blocks: int, block_tokens: int, prefill_chunk: int,
           prefix_cache: bool, max_len: Optional[int], cuda_graphs: Optional[bool]) -> llm_steps.Steps:
    """The step runner (and through it the KV memory): static slots when ``max_len`` is given."""
    if max_len is None:
        dynamic = llm_kv.DynamicKV(num_blocks, block_tokens, prefix_cache)
        return llm_steps.DynamicSteps(model, pad_id, dynamic, prefill_chunk)
    slots = llm_kv.SlotKV(model, max_batch, max_len, num_blocks, block_tokens, prefix_cache)
    return llm_slots.SlotSteps(model, pad_id, slots, max_batch, prefill_chunk, cuda_graphs)


class Engine:
    """The in-flight batching loop over one model.

    The KV budget is ``num_blocks`` blocks of ``block_tokens``. With ``max_len``, each of ``max_batch``
    sequences has a static KV slot of that many positions and steps run in buckets (``cuda_graphs``:
    see ``llm_slots.SlotSteps``); without, the running batch shares one dynamic cache.
    """

    def __init__(self, model: Any, pad_id: int, *, max_batch: int, num_blocks: int, block_tokens: int = 16,
                 prefill_chunk: int = 256, max_queue: int = 256, prefix_cache: bool = False,
                 max_len: Optional[int] = None, cuda_graphs: Optional[bool] = None) -> None:
        self.steps = _parts(model, pad_id, max_batch, num_blocks, block_tokens, prefill_chunk, prefix_cache,
                            max_len, cuda_graphs)
        self.kv = self.steps.kv
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.max_queue = max_queue
        self.waiting: collections.deque[Request] = collections.deque()
        self.prefilling: list[Request] = []
        self.running: list[Request] = []
        self.stats = llm_metrics.EngineStats(self)  # vLLM's metrics; llm_triton.EngineMetrics publishes them
        self.wake = threading.Condition()
        self.stopping = False
        #: The grammar masks (llm_grammar.Masks), made when the first constrained request comes.
        self.masks: Any = None
        # OpenMP's thread count is per thread: the loop's thread takes the creator's (set_threads).
        self.cpu_threads = torch.get_num_threads()
        self.thread = threading.Thread(target=self._loop, name="llm-scheduler", daemon=True)
        self.thread.start()

    @property
    def free_blocks(self) -> int:
        """KV blocks no admitted sequence holds."""
        return self.kv.free_blocks

    @property
    def num_blocks(self) -> int:
        """The KV budget, in blocks."""
        return self.kv.num_blocks

    @property
    def prefixes(self) -> Optional[llm_kv.PrefixCache]:
        """The prefix cache, when it is on."""
        return self.kv.prefixes

    # -- the caller's side ---------------------------------------------------------------------

    def blocks_for(self, row: llm_generate.Row) -> int:
        """KV-cache blocks a row may fill: its prompt plus every token it may generate."""
        return self.kv.blocks_for(row)

    def submit(self, request: Request) -> None:
        """Queue ``request``; raises QueueFullError past ``max_queue`` waiting, RequestError if it can never fit."""
        self.kv.check(request)
        with self.wake:
            if len(self.waiting) >= self.max_queue:
                raise QueueFullError(f"{len(self.waiting)} requests are waiting already (the limit); retry later")
            self.stats.queued(request)
            request.state = State.WAITING
            self.waiting.append(request)
            self.wake.notify()

    def cancel(self, request: Request) -> None:
        """Stop ``request`` at the next step (finish reason ``cancelled``)."""
        with self.wake:
            request.cancelled = True
            self.wake.notify()

    def stop(self) -> None:
        """End the loop after the current step."""
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join(timeout=30)

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        torch.set_num_threads(self.cpu_threads)
        while True:
            with self.wake:
                while not self.stopping and not (self.waiting or self.prefilling or self.running):
                    self.wake.wait()
                if self.stopping:
                    return
                self._drop_cancelled_waiting()
                self._admit()
            try:
                self._iterate()
            except Exception as exc:
                self._fail_all(exc)

    def _iterate(self) -> None:
        with torch.inference_mode():
            group = self._short_prompts()
            if len(group) > 1:
                self._prefill_group(group)
            elif self.prefilling:
                self._prefill_chunk(self.prefilling[0])
            self._reap()
            if self.running:
                self._decode()
                self._reap()

    def _drop_cancelled_waiting(self) -> None:
        for request in [r for r in self.waiting if r.cancelled]:
            self.waiting.remove(request)
            self._finish(request, "cancelled")

    def _admit(self) -> None:
        """Move queued requests, oldest first, to prefilling while the batch has room and their KV fits."""
        while self.waiting and len(self.running) + len(self.prefilling) < self.max_batch:
            if not self.kv.reserve(self.waiting[0]):
                return
            request = self.waiting.popleft()
            request.state = State.PREFILLING
            self.stats.admitted(request)
            self.prefilling.append(request)

    def _fail_all(self, exc: Exception) -> None:
        """End every admitted sequence with ``exc`` as its error; the loop goes on with the next requests."""
        for request in [*self.prefilling, *self.running]:
            self._fail(request, exc)
        self.prefilling, self.running = [], []
        self.kv.clear()

    def _fail(self, request: Request, exc: Exception) -> None:
        """End one sequence with ``exc`` as its error: it is answered, and its cache blocks go back."""
        request.error = llm_common.tag_error(llm_common.ENGINE_ERROR, f"generation failed: {exc}")
        self._finish(request, "error")

    def _finish(self, request: Request, reason: str) -> None:
        if request.row.finish_reason is None:
            request.row.finish_reason = reason
        if request.state is State.DONE:
            return
        if request.state.holds_memory:
            self.kv.release(request)
        request.state = State.DONE
        self.stats.finished(request)
        request.listener(request, [])
        request.done.set()

    # -- prefill -------------------------------------------------------------------------------

    def _short_prompts(self) -> list[Request]:
        """New prompts that fit one prefill together (at most 4 chunks of tokens, padded to the longest).

        Without it, a burst of requests is prefilled one per step and the last one waits for all the others.
        With the prefix cache on, each prompt goes alone: it may start from a cached prefix.
        """
        if self.kv.prefixes is not None:
            return []
        group: list[Request] = []
        for request in self.prefilling:
            if request.prefilled or request.cancelled:
                continue
            width = max([len(request.row.prompt), *(len(r.row.prompt) for r in group)])
            if width * (len(group) + 1) > 4 * self.prefill_chunk:
                break
            group.append(request)
        return group

    def _prefill_group(self, group: list[Request]) -> None:
        logits = self._constrain(group, self.steps.prefill_group(group))
        going = []
        for i, request in enumerate(group):
            self.prefilling.remove(request)
            if self._take_token(request, logits[i]):
                going.append(request)
        self._join(going)

    def _prefill_chunk(self, request: Request) -> None:
        logits = self.steps.prefill_chunk(request)
        if logits is None:
            return
        self.prefilling.remove(request)
        self._join([request] if self._take_token(request, self._constrain([request], [logits])[0]) else [])

    def _join(self, requests: list[Request]) -> None:
        """Sequences whose prompt is done and that go on: into the running batch."""
        self.steps.join(requests)
        for request in requests:
            request.state = State.RUNNING
            self.running.append(request)

    # -- decode --------------------------------------------------------------------------------

    def _take_token(self, request: Request, logits: torch.Tensor, greedy: Optional[int] = None) -> bool:
        """Choose the next token (``greedy`` when the batch already picked it); True while the sequence goes on."""
        if request.cancelled:
            self._finish(request, "cancelled")
            return False
        try:
            if greedy is None:
                token = llm_generate.choose_token(logits, request.row)
            else:
                token = greedy
                llm_generate.record_token(request.row, token)
        except Exception as exc:  # one row's sampling failure ends that row only; the batch goes on
            self._fail(request, exc)
            return False
        grammar = request.row.grammar
        if grammar is not None and not grammar.advance(token):
            self._fail(request, RuntimeError(f"token {token} does not follow the request's grammar "
                                             f"({grammar.error or 'refused'})"))
            return False
        new = [] if token in request.row.end_ids else [token]
        request.pending = token
        if request.row.finish_reason is None:
            request.listener(request, new)
            return True
        if new:
            request.listener(request, new)
        self._finish(request, request.row.finish_reason)
        return False

    def _decode(self) -> None:
        # Plain greedy rows take the runner's batched argmax, not one device sync each.
        plain = [llm_generate.is_plain_greedy(r.row) for r in self.running]
        logits, picked = self.steps.decode(self.running, any(plain))
        logits = self._constrain(self.running, logits)
        for index, request in enumerate(list(self.running)):
            self._take_token(request, logits[index], picked[index] if plain[index] else None)

    def _constrain(self, requests: list[Request], logits: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        """The step's logits with each grammar's mask applied: one mask fill and one masking call for the batch.

        Applied to the logits a step (captured or not) handed back, so grammars never cost the CUDA graphs.
        Rows without a grammar are the step's own; a constrained row is a masked copy.
        """
        constrained = [i for i, r in enumerate(requests) if r.row.grammar is not None]
        if not constrained:
            return logits
        if self.masks is None:
            import llm_grammar  # copied next to the engine; imported once a request brings a grammar

            self.masks = llm_grammar.Masks()
        batch = torch.stack([logits[i] for i in constrained])
        self.masks.apply(batch, [requests[i].row.grammar for i in constrained])
        masked = list(logits)
        for position, index in enumerate(constrained):
            masked[index] = batch[position]
        return masked

    def _finish_cancelled(self) -> None:
        """Finish every cancelled sequence, running or prefilling (its blocks go back)."""
        for request in [r for r in self.running if r.cancelled and r.state is State.RUNNING]:
            self._finish(request, "cancelled")
        for request in [r for r in self.prefilling if r.cancelled]:
            self.prefilling.remove(request)
            self._finish(request, "cancelled")

    def _reap(self) -> None:
        """Take finished and cancelled sequences out of the batch; the KV memory keeps the rest's rows."""
        self._finish_cancelled()
        keep = [i for i, r in enumerate(self.running) if r.state is State.RUNNING]
        if len(keep) == len(self.running):
            return
        self.running = [self.running[i] for i in keep]
        self.kv.retain(keep)


def engine_from_parameters(model: Any, pad_id: int, params: dict[str, str], max_batch: int,
                           default_tokens: int) -> Engine:
    """The scheduler an engine model's parameters describe.

    KV budget: ``kv_cache_tokens``, else ``max_batch`` sequences of ``default_tokens``; also
    ``prefill_chunk``, ``max_queue`` and ``enable_reuse`` (prefix caching). On CUDA, a model that
    llm_slots.py supports runs on static KV slots with CUDA-graph decode steps (``cuda_graphs: false``
    keeps the dynamic cache); each sequence then holds at most ``default_tokens``, fewer when
    ``max_batch`` of them would take more than ``kv_cache_free_gpu_mem_fraction`` of the free GPU memory.
    """
    budget = int(params.get("kv_cache_tokens") or 0) or max_batch * default_tokens
    common: dict[str, Any] = {
        "max_batch": max_batch, "num_blocks": -(-budget // 16), "block_tokens": 16,
        "prefill_chunk": int(params.get("prefill_chunk") or 256), "max_queue": int(params.get("max_queue") or 256),
        "prefix_cache": llm_common.parse_bool(params.get("enable_reuse", ""))}
    device = next(model.parameters()).device
    if device.type == "cuda" and llm_common.parse_bool(params.get("cuda_graphs", ""), True):
        reason = llm_slots.supports(model)
        if reason is None:
            fraction = float(params.get("kv_cache_free_gpu_mem_fraction") or 0.9)
            max_len = _slot_length(model, fraction, max_batch, min(default_tokens, budget))
            if max_len < default_tokens:
                print(f"tritonkit engine: {max_batch} KV slots of {max_len} tokens fit "
                      f"{fraction:g} of the free GPU memory (asked for {default_tokens})", flush=True)
            engine = Engine(model, pad_id, max_len=max_len, **common)
            graphs = isinstance(engine.steps, llm_slots.SlotSteps) and engine.steps.use_graphs
            print(f"tritonkit engine: {max_batch} KV slots of {max_len} tokens on {device}, CUDA graphs "
                  f"{'on' if graphs else 'off (dynamic RoPE scaling)'}", flush=True)
            return engine
        print(f"tritonkit engine: dynamic KV cache without CUDA graphs: {reason}", flush=True)
    return Engine(model, pad_id, **common)


def _slot_length(model: Any, fraction: float, max_batch: int, wanted: int) -> int:
    """Positions per slot: ``wanted``, fewer if ``max_batch`` slots would take more than ``fraction`` of free memory."""
    free = torch.cuda.mem_get_info(next(model.parameters()).device)[0]
    fits = int(fraction * free) // (llm_kv.kv_bytes_per_token(model) * max_batch) - 1
    return min(wanted, fits)
