"""One sequence in tritonkit's PyTorch engine: its record and the states it goes through.

The bottom of the engine's modules: the scheduler (``llm_scheduler.py``), the KV memory (``llm_kv.py``)
and the step runners (``llm_steps.py``, ``llm_slots.py``) all read and write a ``Request``, and import
this module, never each other in a circle. It knows nothing of Triton.

A request moves one way::

    NEW --submit--> WAITING --admit--> PREFILLING --join--> RUNNING
                      |                    |                   |
                      +--------------------+-------------------+--finish--> DONE

It holds KV memory only while PREFILLING or RUNNING, and gives it back when it becomes DONE.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import llm_generate

#: Called with (request, new token ids); the request's ``row.finish_reason`` is set when it is done.
Listener = Callable[["Request", list[int]], None]


class State(enum.Enum):
    """Where a request is in the engine."""

    NEW = "new"
    #: Queued: accepted by ``submit``, holding no KV memory yet.
    WAITING = "waiting"
    #: Admitted: its KV blocks (and slot) are reserved; its prompt is being computed, a chunk per step.
    PREFILLING = "prefilling"
    #: In the running batch: one token per decode step.
    RUNNING = "running"
    #: Finished, cancelled or failed; answered, its KV memory given back.
    DONE = "done"

    @property
    def holds_memory(self) -> bool:
        """True while the request owns KV blocks."""
        return self in (State.PREFILLING, State.RUNNING)


@dataclass(eq=False)
class Request:
    """One sequence: its row (prompt, limits, sampling), who listens, and its place in the engine.

    The scheduler owns ``state``, ``pending`` (the last token chosen, the next step's input), ``cancelled``
    and ``error``; the KV memory owns ``blocks``, ``slot`` and ``cache``; the step runner advances
    ``prefilled``.
    """

    row: llm_generate.Row
    listener: Listener
    #: KV-cache blocks the sequence may fill (its prompt plus every token it may generate).
    blocks: int = 0
    cancelled: bool = False
    #: Positions of the sequence already in the KV memory.
    prefilled: int = 0
    #: The dynamic cache of a prompt being prefilled in chunks (llm_kv.DynamicKV), else None.
    cache: Any = None
    pending: int = -1
    state: State = State.NEW
    #: The KV slot the sequence owns in static-slot memory (llm_kv.SlotKV), -1 when none.
    slot: int = -1
    error: Optional[str] = None
    done: threading.Event = field(default_factory=threading.Event)
