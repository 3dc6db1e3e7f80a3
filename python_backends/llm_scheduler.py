"""In-flight batching for tritonkit's PyTorch engine: requests join the running batch between steps.

One background thread owns the model. Each iteration it admits queued requests while KV-cache
blocks are free, prefills one chunk of one new prompt (so a long prompt never stalls decoding for
more than a chunk), merges finished prefills into the running batch, and runs one decode step for
every running sequence. A finished or cancelled sequence leaves the batch at once and returns its
blocks. Copied next to the engine's ``model.py``; it knows nothing of Triton.

Why not transformers' ``ContinuousBatchingManager``: it has no per-request seed, repetition,
presence or frequency penalties, bad or stop words, and its module layout changed between 5.17 and
5.24; on this project's 2-core CPU it also decoded SmolLM2 slower than this loop (docs/llm.md).
The KV cache is transformers' ``DynamicCache``, built and reshaped only through its public API.
"""

from __future__ import annotations

import collections
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

import llm_common
import llm_generate

#: Called with (request, new token ids); the request's ``row.finish_reason`` is set when it is done.
Listener = Callable[["Request", list[int]], None]


class QueueFullError(llm_common.RequestError):
    """The engine holds as many waiting requests as it may; the caller should retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, llm_common.OVERLOADED)


@dataclass(eq=False)
class Request:
    """One sequence: its row (prompt, limits, sampling), who listens, and its place in the engine."""

    row: llm_generate.Row
    listener: Listener
    blocks: int = 0
    cancelled: bool = False
    prefilled: int = 0
    cache: Any = None
    pending: int = -1
    state: str = "new"
    #: The KV slot the sequence owns in a static-slot engine (llm_slots.py), -1 when none.
    slot: int = -1
    error: Optional[str] = None
    done: threading.Event = field(default_factory=threading.Event)


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's (keys, values) of a DynamicCache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    extra = width - tensor.shape[dim]
    if extra <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = extra
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)


class PrefixCache:
    """KV tensors of prompt prefixes already computed, in whole blocks, least recently used first out."""

    def __init__(self, block_tokens: int, max_tokens: int) -> None:
        self.block_tokens = block_tokens
        self.max_tokens = max_tokens
        self.entries: collections.OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = \
            collections.OrderedDict()
        self.hits = 0

    def lookup(self, prompt: list[int]) -> tuple[int, Optional[list[tuple[torch.Tensor, torch.Tensor]]]]:
        """The longest whole-block prefix ``prompt`` shares with a stored one (one token is left to compute).

        Returns its length and the stored tensors (callers take that many positions of them).
        """
        best, found = 0, None
        tokens = np.asarray(prompt[:-1])
        for key in self.entries:
            width = min(len(key), len(tokens))
            differ = np.flatnonzero(np.asarray(key[:width]) != tokens[:width])
            common = int(differ[0]) if differ.size else width
            usable = (common // self.block_tokens) * self.block_tokens
            if usable > best:
                best, found = usable, key
        if found is None:
            return 0, None
        self.entries.move_to_end(found)
        self.hits += 1
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in self.entries[found]]

    def store(self, prompt: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep the whole-block prefix of ``prompt`` (a copy: the running sequence goes on growing)."""
        length = (len(prompt) // self.block_tokens) * self.block_tokens
        if length == 0 or length > self.max_tokens:
            return
        key = tuple(prompt[:length])
        if key not in self.entries:
            self.entries[key] = [(k[:, :, :length].clone(), v[:, :, :length].clone()) for k, v in layers]
        self.entries.move_to_end(key)
        while sum(len(k) for k in self.entries) > self.max_tokens:
            self.entries.popitem(last=False)


class Engine:
    """The in-flight batching loop over one model."""

    def __init__(self, model: Any, pad_id: int, *, max_batch: int, num_blocks: int, block_tokens: int = 16,
                 prefill_chunk: int = 256, max_queue: int = 256, prefix_cache: bool = False) -> None:
        self.model = model
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.cache_name = llm_generate.cache_argument(model)
        self.max_batch = max_batch
        self.block_tokens = block_tokens
        self.num_blocks = num_blocks
        self.free_blocks = num_blocks
        self.prefill_chunk = prefill_chunk
        self.max_queue = max_queue
        self.prefixes = PrefixCache(block_tokens, num_blocks * block_tokens // 2) if prefix_cache else None
        self.waiting: collections.deque[Request] = collections.deque()
        self.prefilling: list[Request] = []
        self.running: list[Request] = []
        self.cache: Any = None
        self.mask: Optional[torch.Tensor] = None
        self.wake = threading.Condition()
        self.stopping = False
        # OpenMP's thread count is per thread: the loop's thread takes the creator's (set_threads).
        self.cpu_threads = torch.get_num_threads()
        self.thread = threading.Thread(target=self._loop, name="llm-scheduler", daemon=True)
        self.thread.start()

    # -- the caller's side ---------------------------------------------------------------------

    def blocks_for(self, row: llm_generate.Row) -> int:
        """KV-cache blocks a row may fill: its prompt plus every token it may generate."""
        return math.ceil((len(row.prompt) + row.max_new_tokens) / self.block_tokens)

    def submit(self, request: Request) -> None:
        """Queue ``request``; raises QueueFullError past ``max_queue`` waiting, ValueError if it can never fit."""
        request.blocks = self.blocks_for(request.row)
        if request.blocks > self.num_blocks:
            raise llm_common.RequestError(
                f"the request needs {request.blocks * self.block_tokens} tokens of KV cache (prompt plus max "
                f"tokens); the cache holds {self.num_blocks * self.block_tokens}", llm_common.CONTEXT_LENGTH_EXCEEDED)
        with self.wake:
            if len(self.waiting) >= self.max_queue:
                raise QueueFullError(f"{len(self.waiting)} requests are waiting already (the limit); retry later")
            request.state = "waiting"
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
                self._prefill_together(group)
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
        while self.waiting and len(self.running) + len(self.prefilling) < self.max_batch:
            if self.waiting[0].blocks > self.free_blocks:
                return
            request = self.waiting.popleft()
            self.free_blocks -= request.blocks
            request.state = "prefilling"
            self.prefilling.append(request)

    def _fail_all(self, exc: Exception) -> None:
        """End every admitted sequence with ``exc`` as its error; the loop goes on with the next requests."""
        for request in [*self.prefilling, *self.running]:
            self._fail(request, exc)
        self.prefilling, self.running, self.cache, self.mask = [], [], None, None

    def _fail(self, request: Request, exc: Exception) -> None:
        """End one sequence with ``exc`` as its error: it is answered, and its cache blocks go back."""
        request.error = llm_common.tag_error(llm_common.ENGINE_ERROR, f"generation failed: {exc}")
        self._finish(request, "error")

    def _finish(self, request: Request, reason: str) -> None:
        if request.row.finish_reason is None:
            request.row.finish_reason = reason
        if request.state != "done":
            if request.state != "waiting":
                self.free_blocks += request.blocks
            request.state = "done"
            request.cache = None
            request.listener(request, [])
            request.done.set()

    # -- prefill -------------------------------------------------------------------------------

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                          **{self.cache_name: cache})

    def _prefill_chunk(self, request: Request) -> None:
        prompt = request.row.prompt
        if request.cache is None:
            start, layers = self.prefixes.lookup(prompt) if self.prefixes else (0, None)
            request.cache = self._new_cache(layers)
            request.prefilled = start
        end = min(len(prompt), request.prefilled + self.prefill_chunk)
        ids = torch.tensor([prompt[request.prefilled:end]], dtype=torch.long, device=self.device)
        mask = torch.ones((1, end), dtype=torch.long, device=self.device)
        positions = torch.arange(request.prefilled, end, device=self.device).unsqueeze(0)
        out = self._forward(ids, mask, positions, request.cache)
        request.cache = getattr(out, self.cache_name)
        request.prefilled = end
        if end < len(prompt):
            return
        self.prefilling.remove(request)
        if self.prefixes is not None:
            self.prefixes.store(prompt, _layers(request.cache))
        if self._take_token(request, out.logits[0, -1]):
            self._join(request)

    def _short_prompts(self) -> list[Request]:
        """New prompts that fit one prefill together (left-padded to the longest, at most 4 chunks of tokens).

        Without it, a burst of requests is prefilled one per step and the last one waits for all the others.
        With the prefix cache on, each prompt goes alone: it may start from a cached prefix.
        """
        if self.prefixes is not None:
            return []
        group: list[Request] = []
        for request in self.prefilling:
            if request.cache is not None or request.prefilled or request.cancelled:
                continue
            width = max([len(request.row.prompt), *(len(r.row.prompt) for r in group)])
            if width * (len(group) + 1) > 4 * self.prefill_chunk:
                break
            group.append(request)
        return group

    def _prefill_together(self, group: list[Request]) -> None:
        from transformers import DynamicCache

        width = max(len(r.row.prompt) for r in group)
        ids = torch.full((len(group), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for i, request in enumerate(group):
            prompt = request.row.prompt
            ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(ids, mask, positions, DynamicCache())
        layers = _layers(getattr(out, self.cache_name))
        going = []
        for i, request in enumerate(group):
            self.prefilling.remove(request)
            if self._take_token(request, out.logits[i, -1]):
                going.append(i)
        if going:
            index = torch.tensor(going, device=self.device)
            self._join_rows([group[i] for i in going],
                            [(k.index_select(0, index), v.index_select(0, index)) for k, v in layers],
                            mask.index_select(0, index))

    def _new_cache(self, layers: Optional[list[tuple[torch.Tensor, torch.Tensor]]]) -> Any:
        from transformers import DynamicCache

        if layers is None:
            return DynamicCache()
        return DynamicCache([(k.clone(), v.clone()) for k, v in layers])

    def _join(self, request: Request) -> None:
        """Merge one prefilled sequence into the running batch."""
        own = torch.ones((1, len(request.row.prompt)), dtype=torch.long, device=self.device)
        self._join_rows([request], _layers(request.cache), own)

    def _join_rows(self, requests: list[Request], layers: list[tuple[torch.Tensor, torch.Tensor]],
                   mask: torch.Tensor) -> None:
        """Merge prefilled rows (their cache layers and mask) into the running batch, left-padding the shorter side."""
        from transformers import DynamicCache

        if self.cache is None or self.mask is None:
            self.cache, self.mask = DynamicCache(layers), mask
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            merged = [(torch.cat([_left_pad(k, width, 2), _left_pad(nk, width, 2)]),
                       torch.cat([_left_pad(v, width, 2), _left_pad(nv, width, 2)]))
                      for (k, v), (nk, nv) in zip(_layers(self.cache), layers)]
            self.cache = DynamicCache(merged)
            self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)])
        for request in requests:
            request.cache = None
            request.state = "running"
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
        assert self.mask is not None
        ids = torch.tensor([[r.pending] for r in self.running], dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, torch.ones((len(self.running), 1), dtype=torch.long,
                                                     device=self.device)], dim=1)
        positions = (self.mask.sum(dim=1, keepdim=True) - 1)
        out = self._forward(ids, self.mask, positions, self.cache)
        self.cache = getattr(out, self.cache_name)
        last = out.logits[:, -1]
        # Plain greedy rows take one batched argmax and one device sync, not one per row.
        plain = [llm_generate.is_plain_greedy(r.row) for r in self.running]
        picked = last.argmax(dim=-1).tolist() if any(plain) else []
        for index, request in enumerate(list(self.running)):
            self._take_token(request, last[index], picked[index] if plain[index] else None)

    def _finish_cancelled(self) -> None:
        """Finish every cancelled sequence, running or prefilling (its blocks go back)."""
        for request in [r for r in self.running if r.cancelled and r.state == "running"]:
            self._finish(request, "cancelled")
        for request in [r for r in self.prefilling if r.cancelled]:
            self.prefilling.remove(request)
            self._finish(request, "cancelled")

    def _reap(self) -> None:
        """Take finished and cancelled sequences out of the batch and shrink the cache to what is left."""
        self._finish_cancelled()
        keep = [i for i, r in enumerate(self.running) if r.state == "running"]
        if len(keep) == len(self.running):
            return
        self.running = [self.running[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, None
            return
        assert self.mask is not None
        index = torch.tensor(keep, device=self.device)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(dim=0).nonzero()[0])
        layers = [(k.index_select(0, index)[:, :, first:], v.index_select(0, index)[:, :, first:])
                  for k, v in _layers(self.cache)]
        from transformers import DynamicCache

        self.cache, self.mask = DynamicCache(layers), mask[:, first:]


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
        import llm_slots

        reason = llm_slots.supports(model)
        if reason is None:
            fraction = float(params.get("kv_cache_free_gpu_mem_fraction") or 0.9)
            free = torch.cuda.mem_get_info(device)[0]
            fits = int(fraction * free) // (llm_slots.kv_bytes_per_token(model) * max_batch) - 1
            max_len = min(default_tokens, budget, fits)
            if max_len < default_tokens:
                print(f"tritonkit engine: {max_batch} KV slots of {max_len} tokens fit "
                      f"{fraction:g} of the free GPU memory (asked for {default_tokens})", flush=True)
            engine = llm_slots.SlotEngine(model, pad_id, max_len=max_len, **common)
            print(f"tritonkit engine: {max_batch} KV slots of {max_len} tokens on {device}, CUDA graphs "
                  f"{'on' if engine.use_graphs else 'off (dynamic RoPE scaling)'}", flush=True)
            return engine
        print(f"tritonkit engine: dynamic KV cache without CUDA graphs: {reason}", flush=True)
    return Engine(model, pad_id, **common)
