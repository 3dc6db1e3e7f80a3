"""The static-slot step runner of tritonkit's PyTorch engine: bucketed steps, CUDA graphs on CUDA.

Every sequence the engine runs owns one slot of a KV cache allocated once (``llm_kv.SlotKV``): per
layer, keys and values shaped ``[slots, kv_heads, max_len + 1, head_dim]``. A step writes each row's
new keys at the row's own position and attends over the first ``L`` positions, where ``L`` is the
longest sequence rounded up to a bucket. Shapes therefore depend only on (batch bucket, length bucket),
so on CUDA each decode step, and each prefill of short prompts from position 0, is captured once as a
CUDA graph and replayed: the eager step of a 30-layer model costs about 21 ms of kernel launches on an
H200 whatever its size, a replay about the GPU's own time (3.9 ms per token for SmolLM2-135M,
docs/benchmarks.md).

The model itself is transformers' own module; tritonkit supplies only the cache object its attention
layers call (``llm_kv.SlotCache.update``), a grouped-query attention function registered with
transformers' ``AttentionInterface`` (no ``repeat_kv`` copy of the cache per step), and an explicit 4-D
mask. It serves decoder-only models whose every layer attends to the whole sequence (``supports``);
others run on the dynamic cache (``llm_steps.DynamicSteps``).

Why not transformers' ``StaticCache``: it writes one position for the whole batch (``cache_position``
is shared), so sequences that joined at different times cannot share a step; its ``PagedAttentionCache``
belongs to ``ContinuousBatchingManager``, which llm_scheduler.py says why this engine does not use.
The last position of every slot is scratch: rows of a batch bucket that hold no running sequence
write there and their output is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional

import torch

import llm_generate
import llm_kv
from llm_sequence import Request

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


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def batch_bucket(rows: int) -> int:
    """The batch size a step runs at: 1, 2, 4, 8, then multiples of 8."""
    return 1 << (rows - 1).bit_length() if rows <= 8 else _round_up(rows, 8)


def length_bucket(positions: int, limit: int) -> int:
    """The positions a step reads: multiples of 128 up to 1,024, then of 512; at most ``limit``."""
    return min(limit, _round_up(positions, 128) if positions <= 1024 else _round_up(positions, 512))


class SlotSteps:
    """Forwards of ``model``'s decoder over a ``SlotKV``, in buckets; on CUDA, CUDA graphs replayed per bucket.

    ``cuda_graphs`` None: graphs on CUDA unless the model reads tensors on the host; True on CPU runs the
    same bucketed steps eagerly (how the tests cover them).
    """

    def __init__(self, model: Any, pad_id: int, kv: llm_kv.SlotKV, max_batch: int, chunk: int,
                 cuda_graphs: Optional[bool] = None) -> None:
        device = next(model.parameters()).device
        register_attention()
        self.pad_id = pad_id
        self.kv = kv
        self.chunk = chunk
        self.device = device
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        self.decoder_cache = llm_generate.cache_argument(self.decoder)
        self.max_len = kv.max_len
        self.ids = torch.full((max_batch, 1), pad_id, dtype=torch.long, device=device)
        self.positions = torch.full((max_batch,), kv.max_len, dtype=torch.long, device=device)
        self.rows = torch.arange(max_batch, device=device)
        # Captured prefills: prompts of up to this many tokens that start at position 0, in buckets.
        self.graph_width = min(4 * chunk, kv.max_len)
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

    # -- the scheduler's side (llm_steps.Steps) --------------------------------------------------

    def prefill_chunk(self, request: Request) -> Optional[torch.Tensor]:
        """The next chunk into the request's slot, after the longest cached prefix on the first one."""
        prompt = request.row.prompt
        if request.prefilled == 0:
            request.prefilled = self.kv.open(request)
        end = min(len(prompt), request.prefilled + self.chunk)
        logits = self.prefill([request], request.prefilled, end - request.prefilled)
        request.prefilled = end
        if end < len(prompt):
            return None
        self.kv.remember(request)
        return logits[0]

    def prefill_group(self, group: list[Request]) -> torch.Tensor:
        """Whole prompts into their slots, right-padded to the longest."""
        logits = self.prefill(group, 0, max(len(r.row.prompt) for r in group))
        for request in group:
            request.prefilled = len(request.row.prompt)
        return logits

    def join(self, requests: list[Request]) -> None:
        """Nothing to move: a sequence's keys are in its slot already."""

    def decode(self, running: list[Request], greedy: bool) -> tuple[Sequence[torch.Tensor], list[int]]:
        """One row per slot, slots 0 .. bucket-1; a CUDA graph per (batch, length) bucket on CUDA."""
        batch = min(batch_bucket(max(r.slot for r in running) + 1), len(self.rows))
        length = length_bucket(max(r.prefilled for r in running) + 1, self.max_len)
        ids = [self.pad_id] * batch
        positions = [self.max_len] * batch
        for request in running:
            ids[request.slot] = request.pending
            positions[request.slot] = request.prefilled
        self.ids[:batch, 0].copy_(torch.tensor(ids, dtype=torch.long), non_blocking=True)
        self.positions[:batch].copy_(torch.tensor(positions, dtype=torch.long), non_blocking=True)
        if self.use_graphs:
            logits = self._graphed(("decode", batch, length), lambda: self._decode_step(batch, length))
        else:
            logits = self._decode_step(batch, length)
        picked = self._greedy(logits) if greedy else []
        for request in running:
            request.prefilled += 1
        return [logits[r.slot] for r in running], [picked[r.slot] for r in running] if greedy else []

    # -- prefill (captured from position 0 up to 4 chunks; eager for later chunks and cached prefixes) --

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, rows: Any,
             index: torch.Tensor, length: int) -> torch.Tensor:
        """One forward of the decoder; returns the last hidden states ``[batch, q_len, hidden]``.

        The layers read their attention function from the shared config at each call: it is switched to
        the slots' own for this forward only, so the model stays usable as it was loaded.
        """
        self.kv.cache.bind(index, rows, length)
        config = self.decoder.config
        loaded, config._attn_implementation = config._attn_implementation, ATTENTION
        try:
            out = self.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                               **{self.decoder_cache: self.kv.cache})
        finally:
            config._attn_implementation = loaded
        return out.last_hidden_state

    def _mask(self, positions: torch.Tensor, length: int) -> torch.Tensor:
        """Additive mask ``[batch, 1, q_len, length]``: each query sees the positions up to its own."""
        dtype = self.kv.cache.keys[0].dtype
        columns = torch.arange(length, device=positions.device)
        blocked = columns[None, None, None, :] > positions[:, None, :, None]
        return torch.zeros(blocked.shape, dtype=dtype, device=positions.device).masked_fill(
            blocked, torch.finfo(dtype).min)

    def prefill(self, requests: list[Request], start: int, width: int) -> torch.Tensor:
        """Prefill positions ``[start, start + width)`` of each request's slot (right-padded); last logits per row."""
        if self.use_graphs and start == 0 and width <= self.graph_width:
            return self._prefill_graphed(requests, width)
        ids, last = self._pieces(requests, start, width, len(requests), width)
        positions = (start + torch.arange(width)).expand(len(requests), width).to(self.device)
        slots = torch.tensor([r.slot for r in requests], device=self.device)
        rows: Any = slice(requests[0].slot, requests[0].slot + 1) if len(requests) == 1 else slots
        hidden = self._run(ids.to(self.device), positions, self._mask(positions, start + width), rows,
                           self.kv.cache.index(slots, positions), start + width)
        picked = hidden[torch.arange(len(requests), device=self.device), torch.tensor(last, device=self.device)]
        return self.head(picked)

    def _pieces(self, requests: list[Request], start: int, width: int, rows: int,
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

    def _prefill_graphed(self, requests: list[Request], width: int) -> torch.Tensor:
        """A prefill from position 0 as a captured step of (batch, width) buckets; padded rows fill the scratch slot."""
        batch = min(batch_bucket(len(requests)), len(self.prefill_slots))
        padded = length_bucket(width, self.graph_width)
        ids, last = self._pieces(requests, 0, width, batch, padded)  # a first chunk, or the whole prompt
        slots = [r.slot for r in requests] + [self.kv.scratch] * (batch - len(requests))
        self.prefill_ids[:batch, :padded].copy_(ids, non_blocking=True)
        self.prefill_slots[:batch].copy_(torch.tensor(slots, dtype=torch.long), non_blocking=True)
        self.prefill_last[:batch].copy_(torch.tensor(last, dtype=torch.long), non_blocking=True)
        return self._graphed(("prefill", batch, padded), lambda: self._prefill_step(batch, padded))[:len(requests)]

    def _prefill_step(self, batch: int, width: int) -> torch.Tensor:
        positions = self.arange[:width].expand(batch, width)
        slots = self.prefill_slots[:batch]
        hidden = self._run(self.prefill_ids[:batch, :width], positions, self._mask(positions, width), slots,
                           self.kv.cache.index(slots, positions), width)
        return self.head(hidden[self.rows[:batch], self.prefill_last[:batch]])

    # -- decode and capture ----------------------------------------------------------------------

    def _decode_step(self, batch: int, length: int) -> torch.Tensor:
        positions = self.positions[:batch, None]
        hidden = self._run(self.ids[:batch], positions, self._mask(positions, length), slice(0, batch),
                           self.kv.cache.index(self.rows[:batch], positions), length)
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

    def _greedy(self, logits: torch.Tensor) -> list[int]:
        """Each row's argmax, on the host."""
        if self.picked_ready is None:
            return logits.argmax(dim=-1).tolist()
        host = self.picked[:logits.shape[0]]
        host.copy_(logits.argmax(dim=-1), non_blocking=True)
        self.picked_ready.record()
        self.picked_ready.synchronize()
        return host.tolist()
