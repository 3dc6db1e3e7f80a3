"""``tritonkit tune``: the configuration that meets a service target, found by measurement on a running server.

Candidates come from a small space of the settings that matter (``space``), start at ``plan``'s estimate
or the spec's values and skip what the capacity model rules out (``prune``), go through the same
pipeline as ``generate`` (``render``), are loaded one after another into one server through Triton's
model-control API (``target``) and measured with ``bench``'s load generator; a coordinate search with
repeats where two are within noise picks the winner (``search``), every run is kept for resuming
(``ledger``), and the report shows what was tried (``report``).
"""

from __future__ import annotations

from tritonkit.tune.goal import Goal, parse_goal
from tritonkit.tune.ledger import Ledger, Run
from tritonkit.tune.search import SearchResult, coordinate_search
from tritonkit.tune.space import Candidate, Dimension, Space, parse_dimension
from tritonkit.tune.tuner import TuneOptions, TuneOutcome, prepare, summary, tune

__all__ = [
    "Candidate",
    "Dimension",
    "Goal",
    "Ledger",
    "Run",
    "SearchResult",
    "Space",
    "TuneOptions",
    "TuneOutcome",
    "coordinate_search",
    "parse_dimension",
    "parse_goal",
    "prepare",
    "summary",
    "tune",
]
