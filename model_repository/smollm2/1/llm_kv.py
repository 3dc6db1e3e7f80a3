"""KV memory of tritonkit's PyTorch engine: what a sequence may hold, and where its keys and values live.

``KVMemory`` is the interface the scheduler sees: a budget of blocks (``check``, ``reserve``, ``release``),
the optional prefix cache, and the running batch's rows (``retain``, ``clear``). Two kinds implement it:

- ``DynamicKV``: transformers' ``DynamicCache`` for the running batch, left-padded to its longest
  sequence and rebuilt as sequences join and leave; a prompt prefilled in chunks has its own cache until
  it joins. Built and reshaped only through transformers' public API.
- ``SlotKV``: one static slot per sequence in a cache allocated once (``SlotCache``), so a step's shapes
  depend only on buckets and the step can be a CUDA graph (``llm_slots.py``).

The step runners (``llm_steps.py``, ``llm_slots.py``) write and read the tensors; the scheduler only
counts. Copied next to the engine's ``model.py``; it knows nothing of Triton.
"""

from __future__ import annotations

import collections
import heapq
import math
from typing import Any, Optional

import numpy as np
import torch

import llm_common
import llm_generate
from llm_sequence import Request

#: Per layer, (keys, values) shaped ``[batch, kv_heads, positions, head_dim]``.
Layers = list[tuple[torch.Tensor, torch.Tensor]]


class PrefixCache:
    """KV tensors of prompt prefixes already computed, in whole blocks, least recently used first out."""

    def __init__(self, block_tokens: int, max_tokens: int) -> None:
        self.block_tokens = block_tokens
        self.max_tokens = max_tokens
        self.entries: collections.OrderedDict[tuple[int, ...], Layers] = collections.OrderedDict()
        self.hits = 0
        #: Prompt tokens looked up, and those found, as vLLM counts its prefix-cache queries and hits.
        self.query_tokens = 0
        self.hit_tokens = 0

    def lookup(self, prompt: list[int]) -> tuple[int, Optional[Layers]]:
        """The longest whole-block prefix ``prompt`` shares with a stored one (one token is left to compute).

        Returns its length and the stored tensors (callers take that many positions of them).
        """
        best, found = 0, None
        tokens = np.asarray(prompt[:-1])
        self.query_tokens += len(prompt)
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
        self.hit_tokens += best
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in self.entries[found]]

    def store(self, prompt: list[int], layers: Layers) -> None:
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


class KVMemory:
    """A budget of ``num_blocks`` blocks of ``block_tokens`` positions; subclasses keep the tensors.

    With ``prefix_cache``, prompt prefixes are kept for later prompts, in up to half the budget's tokens.
    """

    def __init__(self, num_blocks: int, block_tokens: int, prefix_cache: bool) -> None:
        self.num_blocks = num_blocks
        self.block_tokens = block_tokens
        self.free_blocks = num_blocks
        self.prefixes = PrefixCache(block_tokens, num_blocks * block_tokens // 2) if prefix_cache else None

    def blocks_for(self, row: llm_generate.Row) -> int:
        """Blocks a row may fill: its prompt plus every token it may generate."""
        return math.ceil((len(row.prompt) + row.max_new_tokens) / self.block_tokens)

    def check(self, request: Request) -> None:
        """Size ``request``; raises RequestError (context_length_exceeded) if it can never fit."""
        request.blocks = self.blocks_for(request.row)
        if request.blocks > self.num_blocks:
            raise llm_common.RequestError(
                f"the request needs {request.blocks * self.block_tokens} tokens of KV cache (prompt plus max "
                f"tokens); the cache holds {self.num_blocks * self.block_tokens}", llm_common.CONTEXT_LENGTH_EXCEEDED)

    def reserve(self, request: Request) -> bool:
        """Take the request's blocks if they are free; False (nothing taken) if not."""
        if request.blocks > self.free_blocks:
            return False
        self.free_blocks -= request.blocks
        return True

    def release(self, request: Request) -> None:
        """Give back what ``reserve`` took."""
        self.free_blocks += request.blocks

    def open(self, request: Request) -> int:
        """Make room for a prompt about to be prefilled; returns how many positions the prefix cache filled."""
        raise NotImplementedError

    def remember(self, request: Request) -> None:
        """Offer a fully prefilled prompt's keys and values to the prefix cache."""
        raise NotImplementedError

    def retain(self, rows: list[int]) -> None:
        """The running batch is now these rows of the previous one, in order."""

    def clear(self) -> None:
        """Forget the running batch (after a failed step has ended every sequence)."""


def layers_of(cache: Any) -> Layers:
    """Every layer's (keys, values) of a DynamicCache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    extra = width - tensor.shape[dim]
    if extra <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = extra
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)


class DynamicKV(KVMemory):
    """The running batch in one ``DynamicCache`` (``batch``) with its attention ``mask``, left-padded."""

    def __init__(self, num_blocks: int, block_tokens: int, prefix_cache: bool) -> None:
        super().__init__(num_blocks, block_tokens, prefix_cache)
        self.batch: Any = None
        self.mask: Optional[torch.Tensor] = None

    def release(self, request: Request) -> None:
        """Give back the blocks, and drop the cache of a prompt that never joined."""
        super().release(request)
        request.cache = None

    def open(self, request: Request) -> int:
        """Give the prompt its own cache, holding the longest cached prefix when there is one."""
        from transformers import DynamicCache

        start, layers = self.prefixes.lookup(request.row.prompt) if self.prefixes else (0, None)
        request.cache = DynamicCache() if layers is None else DynamicCache([(k.clone(), v.clone()) for k, v in layers])
        return start

    def remember(self, request: Request) -> None:
        """Offer the prompt's own cache to the prefix cache."""
        if self.prefixes is not None:
            self.prefixes.store(request.row.prompt, layers_of(request.cache))

    def join(self, layers: Layers, mask: torch.Tensor) -> None:
        """Append prefilled rows (their cache layers and mask) to the batch, left-padding the shorter side."""
        from transformers import DynamicCache

        if self.batch is None or self.mask is None:
            self.batch, self.mask = DynamicCache(layers), mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        merged = [(torch.cat([_left_pad(k, width, 2), _left_pad(nk, width, 2)]),
                   torch.cat([_left_pad(v, width, 2), _left_pad(nv, width, 2)]))
                  for (k, v), (nk, nv) in zip(layers_of(self.batch), layers)]
        self.batch = DynamicCache(merged)
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)])

    def retain(self, rows: list[int]) -> None:
        """Keep ``rows`` of the batch and cut the padding columns no row uses any more."""
        from transformers import DynamicCache

        if not rows:
            self.clear()
            return
        assert self.mask is not None
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(dim=0).nonzero()[0])
        layers = [(k.index_select(0, index)[:, :, first:], v.index_select(0, index)[:, :, first:])
                  for k, v in layers_of(self.batch)]
        self.batch, self.mask = DynamicCache(layers), mask[:, first:]

    def clear(self) -> None:
        """Drop the batch cache and its mask."""
        self.batch, self.mask = None, None


class SlotCache:
    """The KV cache transformers' attention layers write to: one slot per sequence, one position per token.

    Per layer, keys and values shaped ``[slots, kv_heads, max_len + 1, head_dim]``; the last position of
    every slot is scratch. ``bind`` says, before each forward, which flat rows of the cache the new keys
    go to and which slots and how many positions the layers then read back.
    """

    def __init__(self, config: Any, slots: int, max_len: int, device: torch.device, dtype: torch.dtype) -> None:
        self.kv_heads = int(config.num_key_value_heads)
        self.width = max_len + 1
        shape = (slots, self.kv_heads, self.width, head_dim(config))
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

    def copy_in(self, slot: int, layers: Layers, length: int) -> None:
        """Put a cached prefix (per layer ``[1, kv_heads, >= length, dim]``) at the start of ``slot``."""
        for (keys, values), (k, v) in zip(zip(self.keys, self.values), layers):
            keys[slot, :, :length] = k[0, :, :length]
            values[slot, :, :length] = v[0, :, :length]

    def view_of(self, slot: int, length: int) -> Layers:
        """Per layer the first ``length`` positions of ``slot``, shaped ``[1, kv_heads, length, dim]``."""
        return [(k[slot:slot + 1, :, :length], v[slot:slot + 1, :, :length]) for k, v in zip(self.keys, self.values)]


class SlotKV(KVMemory):
    """``max_batch`` static slots of ``max_len`` positions (``cache``), and one scratch slot after them.

    Rows of a step's batch bucket that hold no sequence write to the scratch slot; the blocks budget
    still bounds the tokens in flight, as in ``DynamicKV``.
    """

    def __init__(self, model: Any, max_batch: int, max_len: int, num_blocks: int, block_tokens: int,
                 prefix_cache: bool) -> None:
        super().__init__(num_blocks, block_tokens, prefix_cache)
        parameter = next(model.parameters())
        self.max_len = max_len
        self.cache = SlotCache(model.config, max_batch + 1, max_len, parameter.device, parameter.dtype)
        self.scratch = max_batch
        self.free_slots = list(range(max_batch))
        heapq.heapify(self.free_slots)

    def check(self, request: Request) -> None:
        """As ``KVMemory.check``; also refuses a sequence longer than a slot."""
        needed = len(request.row.prompt) + request.row.max_new_tokens
        if needed > self.max_len:
            raise llm_common.RequestError(f"the request needs {needed} tokens of KV cache (prompt plus max tokens); "
                                          f"a sequence holds at most {self.max_len}",
                                          llm_common.CONTEXT_LENGTH_EXCEEDED)
        super().check(request)

    def reserve(self, request: Request) -> bool:
        """As ``KVMemory.reserve``, with the lowest free slot (the scheduler admits at most one per slot)."""
        if not super().reserve(request):
            return False
        request.slot = heapq.heappop(self.free_slots)
        return True

    def release(self, request: Request) -> None:
        """Give back the blocks and the slot."""
        if request.slot >= 0:
            heapq.heappush(self.free_slots, request.slot)
            request.slot = -1
        super().release(request)

    def open(self, request: Request) -> int:
        """Copy the longest cached prefix into the request's slot."""
        start, layers = self.prefixes.lookup(request.row.prompt) if self.prefixes else (0, None)
        if layers is None:
            return 0
        self.cache.copy_in(request.slot, layers, start)
        return start

    def remember(self, request: Request) -> None:
        """Offer the prompt's positions of its slot to the prefix cache (it copies them)."""
        if self.prefixes is not None:
            self.prefixes.store(request.row.prompt, self.cache.view_of(request.slot, len(request.row.prompt)))


def head_dim(config: Any) -> int:
    """Size of one attention head: the config's ``head_dim``, else hidden size over heads."""
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys and values one token takes across the model's layers."""
    config = model.config
    size = next(model.parameters()).element_size()
    return 2 * int(config.num_hidden_layers) * int(config.num_key_value_heads) * head_dim(config) * size
