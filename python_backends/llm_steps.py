"""Step runners of tritonkit's PyTorch engine: the model's forward passes, and nothing else.

The scheduler (``llm_scheduler.py``) decides which sequences a step computes; a runner computes it over
its KV memory (``llm_kv.py``) and hands back logits; the scheduler chooses the tokens. ``Steps`` is what
the scheduler asks of a runner. Two runners implement it:

- ``DynamicSteps`` (here): eager forwards over ``llm_kv.DynamicKV``; any causal LM transformers loads.
- ``llm_slots.SlotSteps``: bucketed forwards over ``llm_kv.SlotKV``, CUDA graphs on CUDA.

Copied next to the engine's ``model.py``; it knows nothing of Triton.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Protocol

import torch

import llm_generate
import llm_kv
from llm_sequence import Request


class Steps(Protocol):
    """The forward passes the scheduler asks for; each one runs on the scheduler's thread."""

    @property
    def kv(self) -> llm_kv.KVMemory:
        """The KV memory the runner's forwards write to."""

    def prefill_chunk(self, request: Request) -> Optional[torch.Tensor]:
        """Compute the next chunk of ``request``'s prompt: its last logits once the prompt is done, else None."""

    def prefill_group(self, group: list[Request]) -> torch.Tensor:
        """Compute whole new prompts in one forward; row ``i`` holds the last logits of ``group[i]``."""

    def join(self, requests: list[Request]) -> None:
        """Make sequences of the last completed prefill part of the running batch (the others are dropped)."""

    def decode(self, running: list[Request], greedy: bool) -> tuple[Sequence[torch.Tensor], list[int]]:
        """One position for each running sequence (input: its ``pending`` token).

        Returns each sequence's logits and, when ``greedy``, each one's argmax (else an empty list).
        """


class DynamicSteps:
    """Eager forwards of ``model`` over a ``DynamicKV``; a prompt is prefilled ``chunk`` tokens per step."""

    def __init__(self, model: Any, pad_id: int, kv: llm_kv.DynamicKV, chunk: int) -> None:
        self.model = model
        self.pad_id = pad_id
        self.kv = kv
        self.chunk = chunk
        self.device = next(model.parameters()).device
        self.cache_name = llm_generate.cache_argument(model)
        #: The last completed prefill, until ``join``: its requests, their cache layers and mask.
        self._prefilled: Optional[tuple[list[Request], llm_kv.Layers, torch.Tensor]] = None

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
        """The model's forward with its cache; returns transformers' output (logits and the grown cache)."""
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                          **{self.cache_name: cache})

    def prefill_chunk(self, request: Request) -> Optional[torch.Tensor]:
        """The next chunk into the prompt's own cache, which starts from the longest cached prefix."""
        prompt = request.row.prompt
        if request.cache is None:
            request.prefilled = self.kv.open(request)
        end = min(len(prompt), request.prefilled + self.chunk)
        ids = torch.tensor([prompt[request.prefilled:end]], dtype=torch.long, device=self.device)
        mask = torch.ones((1, end), dtype=torch.long, device=self.device)
        positions = torch.arange(request.prefilled, end, device=self.device).unsqueeze(0)
        out = self.forward(ids, mask, positions, request.cache)
        request.cache = getattr(out, self.cache_name)
        request.prefilled = end
        if end < len(prompt):
            return None
        self.kv.remember(request)
        own = torch.ones((1, len(prompt)), dtype=torch.long, device=self.device)
        self._prefilled = ([request], llm_kv.layers_of(request.cache), own)
        return out.logits[0, -1]

    def prefill_group(self, group: list[Request]) -> torch.Tensor:
        """The prompts left-padded to the longest, from an empty cache.

        Identical prompts (a request's ``n`` sequences) are computed once; their rows of the cache are copies.
        """
        from transformers import DynamicCache

        distinct: dict[tuple[int, ...], int] = {}
        index = [distinct.setdefault(tuple(r.row.prompt), len(distinct)) for r in group]
        prompts = list(distinct)
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[i, width - len(prompt):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.forward(ids, mask, positions, DynamicCache())
        layers, logits = llm_kv.layers_of(getattr(out, self.cache_name)), out.logits[:, -1]
        if len(prompts) < len(group):
            rows = torch.tensor(index, device=self.device)
            layers = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in layers]
            mask, logits = mask.index_select(0, rows), logits.index_select(0, rows)
        self._prefilled = (group, layers, mask)
        return logits

    def join(self, requests: list[Request]) -> None:
        """Merge the requests' rows of the last prefill into the batch cache."""
        prefilled, self._prefilled = self._prefilled, None
        if not requests or prefilled is None:
            return
        group, layers, mask = prefilled
        if len(requests) < len(group):
            index = torch.tensor([group.index(r) for r in requests], device=self.device)
            layers = [(k.index_select(0, index), v.index_select(0, index)) for k, v in layers]
            mask = mask.index_select(0, index)
        self.kv.join(layers, mask)
        for request in requests:
            request.cache = None

    def decode(self, running: list[Request], greedy: bool) -> tuple[Sequence[torch.Tensor], list[int]]:
        """One forward of the batch cache; rows are in ``running``'s order, as the cache's are."""
        kv = self.kv
        assert kv.mask is not None
        ids = torch.tensor([[r.pending] for r in running], dtype=torch.long, device=self.device)
        kv.mask = torch.cat([kv.mask, torch.ones((len(running), 1), dtype=torch.long, device=self.device)], dim=1)
        positions = kv.mask.sum(dim=1, keepdim=True) - 1
        out = self.forward(ids, kv.mask, positions, kv.batch)
        kv.batch = getattr(out, self.cache_name)
        last = out.logits[:, -1]
        # Greedy rows take one batched argmax and one device sync, not one per row.
        return last.unbind(0), last.argmax(dim=-1).tolist() if greedy else []
