"""What a starting tritonserver is doing, read from its output: which models load, their steps, and READY.

Triton announces each model (``loading: NAME:VERSION``, ``successfully loaded 'NAME'``, ``failed to load
'NAME'``); tritonkit's Python backends announce their own slow steps (``tritonkit: model 'NAME': STEP``,
e.g. converting a GGUF on the first start), and the libraries they call draw progress bars (``45%|...|``)
that end in a carriage return rather than a line. ``LoadProgress`` turns each piece of output into a
``LoadEvent`` when it says something new, and remembers when the server last showed any sign of progress,
so a caller can time out on silence instead of on a fixed clock.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["STEP_PREFIX", "LoadEvent", "LoadProgress"]

#: The line a tritonkit backend prints for each slow step of its load (``llm_common.report_step``).
STEP_PREFIX = "tritonkit: model '"
_STEP = re.compile(r"tritonkit: model '(?P<model>[^']+)': (?P<step>.+)$")
_LOADING = re.compile(r"""loading: (?P<model>[^:"]+):\d+""")
_LOADED = re.compile(r"successfully loaded '(?P<model>[^']+)'")
_FAILED = re.compile(r"failed to load '(?P<model>[^']+)'")
# tqdm: "Converting and de-quantizing GGUF tensors...:  45%|####5     | 123/272 [00:03<00:04, 35.1it/s]"
_BAR = re.compile(r"(?P<what>[^\r\n|]*?):?\s*(?P<percent>\d{1,3})%\|")


@dataclass(frozen=True)
class LoadEvent:
    """One change in a model's load: ``state`` is loading, step, progress, ready or failed."""

    model: str
    state: str
    detail: str = ""
    #: Seconds since the server was started.
    elapsed_s: float = 0.0


class LoadProgress:
    """Follows the models of one starting server through its output (fed by ``LogPump``, any thread)."""

    def __init__(self, on_event: Optional[Callable[[LoadEvent], None]] = None, percent_step: int = 10) -> None:
        self._on_event = on_event
        self._percent_step = percent_step
        self._lock = threading.Lock()
        self._started = time.monotonic()
        #: model -> its latest state and step, for the message when a load hangs.
        self._states: dict[str, tuple[str, str]] = {}
        self._last_step_model: Optional[str] = None
        self._last_percent: dict[str, int] = {}
        #: When the server last printed anything (``time.monotonic``).
        self.last_sign_s = self._started

    def feed(self, text: str) -> None:
        """Take one line, or one carriage-return piece of a progress bar, of the server's output."""
        with self._lock:
            self.last_sign_s = time.monotonic()
            event = self._event(text)
        if event is not None and self._on_event is not None:
            self._on_event(event)

    def _event(self, text: str) -> Optional[LoadEvent]:
        for pattern, state in ((_STEP, "step"), (_LOADED, "ready"), (_FAILED, "failed"), (_LOADING, "loading")):
            found = pattern.search(text)
            if found:
                model = found.group("model")
                detail = found.group("step").strip() if state == "step" else ""
                if state == "step":
                    self._last_step_model = model
                    self._last_percent.pop(model, None)
                self._states[model] = (state, detail or self._states.get(model, ("", ""))[1])
                return LoadEvent(model, state, detail, self.elapsed_s())
        return self._bar_event(text)

    def _bar_event(self, text: str) -> Optional[LoadEvent]:
        """A progress bar's piece belongs to the model that announced a step last (loads run one per stub)."""
        found = _BAR.search(text)
        model = self._last_step_model
        if found is None or model is None or self._states.get(model, ("", ""))[0] in ("ready", "failed"):
            return None
        percent = min(100, int(found.group("percent")))
        seen = self._last_percent.get(model)
        if seen is not None and (percent == seen or seen < percent < min(100, seen + self._percent_step)):
            return None
        self._last_percent[model] = percent
        what = found.group("what").strip().rstrip(".:") or "progress"
        return LoadEvent(model, "progress", f"{what}: {percent}%", self.elapsed_s())

    def elapsed_s(self) -> float:
        """Seconds since this server was started."""
        return time.monotonic() - self._started

    def silent_for_s(self) -> float:
        """Seconds since the server last printed anything."""
        return time.monotonic() - self.last_sign_s

    def unfinished(self) -> dict[str, str]:
        """Models announced but neither ready nor failed -> their last step ('' when none was announced)."""
        with self._lock:
            return {m: step for m, (state, step) in self._states.items() if state not in ("ready", "failed")}
