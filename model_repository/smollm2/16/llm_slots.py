"""Static KV slots and CUDA-graph steps for tritonkit's PyTorch engine.

Every sequence the engine runs owns one slot of a KV cache allocated once: per layer, keys and values
shaped ``[slots, kv_heads, max_len + 1, head_dim]``. A step writes each row's new keys at the row's
own position and attends over the first ``L`` positions, where ``L`` is the longest sequence rounded
up to a bucket. Shapes therefore depend only on (batch bucket, length bucket), so on CUDA each decode
step, and each prefill of short prompts from position 0, is captured once as a CUDA graph and replayed:
the eager step of a 30-layer model costs about 21 ms of kernel launches on an H200 whatever its size, a
replay about the GPU's own time (3.9 ms per token for SmolLM2-135M, docs/benchmarks.md).

The model itself is transformers' own module; tritonkit supplies only the cache object its attention
layers call (``update``), a grouped-query attention function registered with transformers'
``AttentionInterface`` (no ``repeat_kv`` copy of the cache per step), and an explicit 4-D mask. It
serves decoder-only models whose every layer attends to the whole sequence (``supports``); others run
on the dynamic-cache engine (``llm_scheduler.Engine``).

Why not transformers' ``StaticCache``: it writes one position for the whole batch (``cache_position``
is shared), so sequences that joined at different times cannot share a step; its ``PagedAttentionCache``
belongs to ``ContinuousBatchingManager``, which llm_scheduler.py says why this engine does not use.
The last position of every slot is scratch: rows of a batch bucket that hold no running sequence
write there and their output is ignored.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Optional

import torch

import llm_generate
import llm_scheduler

ATTENTION = "tritonkit_slots"
#: Architectures whose forward is transformers' plain decoder with full attention in every layer.
MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def supports(model: Any) -> Optional[str]:
    """None when ``model`` can run on static slots, else why not (a sentence)."""
    config = model.config
    if config.model_type not in MODEL_TYPES:
        return f"model type {config.model_type!r} is not one of {sorted(MODEL_TYPES)}"
    layer_types = getattr(config, "layer_types", None) or []
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    if any(kind != "full_attention" for kind in layer_types) or (sliding and not layer_types):
        return "the model uses sliding-window attention"
    return None


def graph_safe(model: Any) -> bool:
    """False where the model's forward reads tensors on the host (dynamic RoPE scaling)."""
    scaling = getattr(model.config, "rope_scaling", None) or {}
    return "dynamic" not in str(scaling.get("rope_type", scaling.get("type", "")))


def slot_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: Optional[torch.Tensor], scaling: float, dropout: float = 0.0,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention with grouped KV heads read in place: query heads of one KV head share one matmul.

    ``query`` is ``[batch, heads, q_len, dim]``, ``key``/``value`` ``[batch, kv_heads, kv_len, dim]``,
    ``attention_mask`` additive ``[batch, 1, q_len, kv_len]``. Returns ``[batch, q_len, heads, dim]``.
    """
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    grouped = query.reshape(batch, kv_heads, groups * length, dim)
    scores = torch.matmul(grouped, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = (scores.view(batch, kv_heads, groups, length, -1) + attention_mask[:, :, None]).view(
            batch, kv_heads, groups * length, -1)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(probs, value).view(batch, heads, length, dim)
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> None:
    """Make ``attn_implementation="tritonkit_slots"`` known to transformers (once per process)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, slot_attention)


class SlotCache:
    """The KV cache transformers' attention layers write to: one slot per sequence, one position per token.

    ``bind`` says, before each forward, which flat rows of the cache the new keys go to and which
    slots and how many positions the layers then read back.
    """

    def __init__(self, config: Any, slots: int, max_len: int, device: torch.device, dtype: torch.dtype) -> None:
        self.kv_heads = int(config.num_key_value_heads)
        head_dim = _head_dim(config)
        self.width = max_len + 1
        shape = (slots, self.kv_heads, self.width, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self._heads = torch.arange(self.kv_heads, device=device)
        self._index = torch.zeros(0, dtype=torch.long, device=device)
        self._rows: Any = slice(0, 1)
        self._length = 0

    def index(self, slots: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Flat row of every (slot, kv head, position): ``slots`` is ``[n]``, ``positions`` ``[n, t]``."""
        return ((slots[:, None, None] * self.kv_heads + self._heads[None, :, None]) * self.width
                + positions[:, None, :]).reshape(-1)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Asked by decoders only when no position ids are given; tritonkit always gives them."""
        return 0

    def bind(self, index: torch.Tensor, rows: Any, length: int) -> None:
        """Write the next keys to flat rows ``index``; read back slots ``rows``, positions ``[0, length)``."""
        self._index, self._rows, self._length = index, rows, length

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Called by every attention layer: store the new keys and values, return what the layer reads."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        dim = keys.shape[-1]
        keys.view(-1, dim).index_copy_(0, self._index, key_states.reshape(-1, dim))
        values.view(-1, dim).index_copy_(0, self._index, value_states.reshape(-1, dim))
        return keys[self._rows, :, :self._length], values[self._rows, :, :self._length]

    def copy_in(self, slot: int, layers: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> None:
        """Put a cached prefix (per layer ``[1, kv_heads, >= length, dim]``) at the start of ``slot``."""
        for (keys, values), (k, v) in zip(zip(self.keys, self.values), layers):
            keys[slot, :, :length] = k[0, :, :length]
            values[slot, :, :length] = v[0, :, :length]

    def view_of(self, slot: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer the first ``length`` positions of ``slot``, shaped ``[1, kv_heads, length, dim]``."""
        return [(k[slot:slot + 1, :, :length], v[slot:slot + 1, :, :length]) for k, v in zip(self.keys, self.values)]


def _head_dim(config: Any) -> int:
    """Size of one attention head: the config's ``head_dim``, else hidden size over heads."""
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def batch_bucket(rows: int) -> int:
    """The batch size a step runs at: 1, 2, 4, 8, then multiples of 8."""
    return 1 << (rows - 1).bit_length() if rows <= 8 else _round_up(rows, 8)


def length_bucket(positions: int, limit: int) -> int:
    """The positions a step reads: multiples of 128 up to 1,024, then of 512; at most ``limit``."""
    return min(limit, _round_up(positions, 128) if positions <= 1024 else _round_up(positions, 512))


class SlotEngine(llm_scheduler.Engine):
    """The in-flight loop of ``llm_scheduler.Engine`` over static slots, with CUDA-graph steps on CUDA."""

    def __init__(self, model: Any, pad_id: int, *, max_batch: int, num_blocks: int, max_len: int,
                 block_tokens: int = 16, prefill_chunk: int = 256, max_queue: int = 256,
                 prefix_cache: bool = False, cuda_graphs: Optional[bool] = None) -> None:
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        register_attention()
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.decoder_cache = llm_generate.cache_argument(self.decoder)
        self.max_len = max_len
        # One slot more than sequences: padded rows of a captured prefill write to the last one.
        self.slots = SlotCache(model.config, max_batch + 1, max_len, device, dtype)
        self.scratch = max_batch
        self.free_slots = list(range(max_batch))
        heapq.heapify(self.free_slots)
        self.ids = torch.full((max_batch, 1), pad_id, dtype=torch.long, device=device)
        self.positions = torch.full((max_batch,), max_len, dtype=torch.long, device=device)
        self.rows = torch.arange(max_batch, device=device)
        # Captured prefills: prompts of up to this many tokens that start at position 0, in buckets.
        self.graph_width = min(4 * prefill_chunk, max_len)
        self.prefill_ids = torch.full((max_batch, self.graph_width), pad_id, dtype=torch.long, device=device)
        self.prefill_slots = torch.zeros(max_batch, dtype=torch.long, device=device)
        self.prefill_last = torch.zeros(max_batch, dtype=torch.long, device=device)
        self.arange = torch.arange(self.graph_width, device=device)
        self.use_graphs = (device.type == "cuda" and graph_safe(model)) if cuda_graphs is None else cuda_graphs
        # Greedy picks come back through pinned memory, waited for on an event: the wait lets go of
        # the GIL, so the thread that sends responses runs while the GPU computes.
        self.picked = torch.zeros(max_batch, dtype=torch.long, pin_memory=device.type == "cuda")
        self.picked_ready = torch.cuda.Event() if device.type == "cuda" else None
        self.graphs: dict[tuple[str, int, int], tuple[Any, torch.Tensor]] = {}
        self.pool: Any = None
        super().__init__(model, pad_id, max_batch=max_batch, num_blocks=num_blocks, block_tokens=block_tokens,
                         prefill_chunk=prefill_chunk, max_queue=max_queue, prefix_cache=prefix_cache)

    # -- slots ---------------------------------------------------------------------------------

    def submit(self, request: llm_scheduler.Request) -> None:
        """As ``Engine.submit``; also refuses a sequence longer than a slot."""
        needed = len(request.row.prompt) + request.row.max_new_tokens
        if needed > self.max_len:
            raise ValueError(f"the request needs {needed} tokens of KV cache (prompt plus max tokens); "
                             f"a sequence holds at most {self.max_len}")
        super().submit(request)

    def _admit(self) -> None:
        before = len(self.prefilling)
        super()._admit()
        for request in self.prefilling[before:]:
            request.slot = heapq.heappop(self.free_slots)

    def _finish(self, request: llm_scheduler.Request, reason: str) -> None:
        if request.slot >= 0:
            heapq.heappush(self.free_slots, request.slot)
            request.slot = -1
        super()._finish(request, reason)

    def _reap(self) -> None:
        self._finish_cancelled()
        self.running = [r for r in self.running if r.state == "running"]

    # -- prefill (captured from position 0 up to 4 chunks; eager for later chunks and cached prefixes) --

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, rows: Any,
             index: torch.Tensor, length: int) -> torch.Tensor:
        """One forward of the decoder; returns the last hidden states ``[batch, q_len, hidden]``.

        The layers read their attention function from the shared config at each call: it is switched to
        the slots' own for this forward only, so the model stays usable as it was loaded.
        """
        self.slots.bind(index, rows, length)
        config = self.decoder.config
        loaded, config._attn_implementation = config._attn_implementation, ATTENTION
        try:
            out = self.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                               **{self.decoder_cache: self.slots})
        finally:
            config._attn_implementation = loaded
        return out.last_hidden_state

    def _mask(self, positions: torch.Tensor, length: int) -> torch.Tensor:
        """Additive mask ``[batch, 1, q_len, length]``: each query sees the positions up to its own."""
        columns = torch.arange(length, device=positions.device)
        blocked = columns[None, None, None, :] > positions[:, None, :, None]
        return torch.zeros(blocked.shape, dtype=self.slots.keys[0].dtype, device=positions.device).masked_fill(
            blocked, torch.finfo(self.slots.keys[0].dtype).min)

    def _prefill(self, requests: list[llm_scheduler.Request], start: int, width: int) -> torch.Tensor:
        """Prefill positions ``[start, start + width)`` of each request's slot (right-padded); last logits per row."""
        if self.use_graphs and start == 0 and width <= self.graph_width:
            return self._prefill_graphed(requests, width)
        ids, last = self._pieces(requests, start, width, len(requests), width)
        positions = (start + torch.arange(width)).expand(len(requests), width).to(self.device)
        slots = torch.tensor([r.slot for r in requests], device=self.device)
        rows: Any = slice(requests[0].slot, requests[0].slot + 1) if len(requests) == 1 else slots
        hidden = self._run(ids.to(self.device), positions, self._mask(positions, start + width), rows,
                           self.slots.index(slots, positions), start + width)
        picked = hidden[torch.arange(len(requests), device=self.device), torch.tensor(last, device=self.device)]
        return self.head(picked)

    def _pieces(self, requests: list[llm_scheduler.Request], start: int, width: int, rows: int,
                columns: int) -> tuple[torch.Tensor, list[int]]:
        """Prompt tokens ``[start, start + width)`` of each request, right-padded to ``rows`` x ``columns``.

        Also returns the index of each row's last token (0 for padding rows).
        """
        ids = torch.full((rows, columns), self.pad_id, dtype=torch.long)
        last = [0] * rows
        for i, request in enumerate(requests):
            piece = request.row.prompt[start:start + width]
            ids[i, :len(piece)] = torch.tensor(piece, dtype=torch.long)
            last[i] = len(piece) - 1
        return ids, last

    def _prefill_graphed(self, requests: list[llm_scheduler.Request], width: int) -> torch.Tensor:
        """A prefill from position 0 as a captured step of (batch, width) buckets; padded rows fill the scratch slot."""
        batch = min(batch_bucket(len(requests)), len(self.prefill_slots))
        padded = length_bucket(width, self.graph_width)
        ids, last = self._pieces(requests, 0, width, batch, padded)  # a first chunk, or the whole prompt
        slots = [r.slot for r in requests] + [self.scratch] * (batch - len(requests))
        self.prefill_ids[:batch, :padded].copy_(ids, non_blocking=True)
        self.prefill_slots[:batch].copy_(torch.tensor(slots, dtype=torch.long), non_blocking=True)
        self.prefill_last[:batch].copy_(torch.tensor(last, dtype=torch.long), non_blocking=True)
        return self._graphed(("prefill", batch, padded), lambda: self._prefill_step(batch, padded))[:len(requests)]

    def _prefill_step(self, batch: int, width: int) -> torch.Tensor:
        positions = self.arange[:width].expand(batch, width)
        slots = self.prefill_slots[:batch]
        hidden = self._run(self.prefill_ids[:batch, :width], positions, self._mask(positions, width), slots,
                           self.slots.index(slots, positions), width)
        return self.head(hidden[self.rows[:batch], self.prefill_last[:batch]])

    def _prefill_chunk(self, request: llm_scheduler.Request) -> None:
        prompt = request.row.prompt
        if request.prefilled == 0 and self.prefixes is not None:
            start, layers = self.prefixes.lookup(prompt)
            if layers is not None:
                self.slots.copy_in(request.slot, layers, start)
                request.prefilled = start
        end = min(len(prompt), request.prefilled + self.prefill_chunk)
        logits = self._prefill([request], request.prefilled, end - request.prefilled)
        request.prefilled = end
        if end < len(prompt):
            return
        self.prefilling.remove(request)
        if self.prefixes is not None:
            self.prefixes.store(prompt, self.slots.view_of(request.slot, len(prompt)))
        if self._take_token(request, logits[0]):
            self._join(request)

    def _prefill_together(self, group: list[llm_scheduler.Request]) -> None:
        logits = self._prefill(group, 0, max(len(r.row.prompt) for r in group))
        for i, request in enumerate(group):
            self.prefilling.remove(request)
            request.prefilled = len(request.row.prompt)
            if self._take_token(request, logits[i]):
                self._join(request)

    def _join(self, request: llm_scheduler.Request) -> None:
        request.state = "running"
        self.running.append(request)

    # -- decode (one row per slot, slots 0 .. bucket-1; a CUDA graph per bucket on CUDA) ------------

    def _decode_step(self, batch: int, length: int) -> torch.Tensor:
        positions = self.positions[:batch, None]
        hidden = self._run(self.ids[:batch], positions, self._mask(positions, length), slice(0, batch),
                           self.slots.index(self.rows[:batch], positions), length)
        return self.head(hidden[:, -1])

    def _graphed(self, key: tuple[str, int, int], step: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``step``, replayed if captured under ``key``, else run eagerly once and captured.

        On CPU nothing is captured: the bucketed steps run eagerly (how the tests cover them).
        """
        if self.device.type != "cuda":
            return step()
        found = self.graphs.get(key)
        if found is not None:
            found[0].replay()
            return found[1]
        logits = step()
        # The eager run above is this step's result (and warmed the allocator); a capture records the same
        # kernels without running them. A model whose forward cannot be captured runs eagerly from then on.
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                output = step()
        except Exception as exc:
            print(f"tritonkit engine: CUDA graph capture failed ({exc}); steps run eagerly", flush=True)
            self.use_graphs = False
            self.graphs.clear()
            return logits
        self.graphs[key] = (graph, output)
        return logits

    def _decode(self) -> None:
        batch = min(batch_bucket(max(r.slot for r in self.running) + 1), len(self.rows))
        length = length_bucket(max(r.prefilled for r in self.running) + 1, self.max_len)
        ids = [self.pad_id] * batch
        positions = [self.max_len] * batch
        for request in self.running:
            ids[request.slot] = request.pending
            positions[request.slot] = request.prefilled
        self.ids[:batch, 0].copy_(torch.tensor(ids, dtype=torch.long), non_blocking=True)
        self.positions[:batch].copy_(torch.tensor(positions, dtype=torch.long), non_blocking=True)
        if self.use_graphs:
            logits = self._graphed(("decode", batch, length), lambda: self._decode_step(batch, length))
        else:
            logits = self._decode_step(batch, length)
        plain = [llm_generate.is_plain_greedy(r.row) for r in self.running]
        picked = self._greedy(logits) if any(plain) else []
        for index, request in enumerate(list(self.running)):
            request.prefilled += 1
            slot = request.slot
            self._take_token(request, logits[slot], picked[slot] if plain[index] else None)

    def _greedy(self, logits: torch.Tensor) -> list[int]:
        """Each row's argmax, on the host."""
        if self.picked_ready is None:
            return logits.argmax(dim=-1).tolist()
        host = self.picked[:logits.shape[0]]
        host.copy_(logits.argmax(dim=-1), non_blocking=True)
        self.picked_ready.record()
        self.picked_ready.synchronize()
        return host.tolist()


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys and values one token takes across the model's layers."""
    config = model.config
    size = next(model.parameters()).element_size()
    return 2 * int(config.num_hidden_layers) * int(config.num_key_value_heads) * _head_dim(config) * size
