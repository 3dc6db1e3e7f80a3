"""tune's search, pruning, resume file and write-back, on a runner of our own (no server): the seam is
``coordinate_search``'s runner, which the real tune backs with Triton's load API and bench."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tritonkit.capacity.spec_edit import edit_entry_text
from tritonkit.tune import Candidate, Dimension, Ledger, Run, Space, coordinate_search, parse_goal
from tritonkit.tune.entry import Entry, spec_settings
from tritonkit.tune.prune import classic_rules
from tritonkit.tune.search import exhaustive_search

SPACE = Space((Dimension("max_queue_delay_microseconds", (None, 0, 100, 500, 2000)),
               Dimension("instance_count", (1, 2, 3, 4)),
               Dimension("max_batch_size", (4, 16, 64))))
GOAL = parse_goal("p99_ms=10", 16, None, llm=False)


def throughput(c: Candidate) -> float:
    """A smooth surface with one peak: batching on with 500 us, 2 instances, batches of 16."""
    delay = c["max_queue_delay_microseconds"]
    batching = 0.0 if delay is None else {0: 0.6, 100: 0.8, 500: 1.0, 2000: 0.7}[delay]
    return 1000.0 * (1 + batching) * {1: 0.8, 2: 1.0, 3: 0.9, 4: 0.7}[c["instance_count"]] * \
        {4: 0.8, 16: 1.0, 64: 1.0}[c["max_batch_size"]]


class Runner:
    """Measures by formula; counts the calls; refuses the keys it is told to."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.calls: list[str] = []
        self.refuse = refuse

    def __call__(self, c: Candidate) -> Run:
        self.calls.append(c.key)
        if c.key in self.refuse:
            return Run(c.key, c.to_dict(), "load_failed", message="failed to load")
        p99 = 20.0 if c["instance_count"] == 4 else 5.0  # four instances miss the target
        return Run(c.key, c.to_dict(), "measured", {"throughput_rps": throughput(c), "p99_ms": p99})


def test_coordinate_search_finds_the_peak_in_a_fraction_of_the_runs() -> None:
    runner = Runner()
    seed = SPACE.candidate({"max_queue_delay_microseconds": None, "instance_count": 1, "max_batch_size": 4})
    result = coordinate_search(SPACE, GOAL, seed, classic_rules(SPACE, GOAL), runner, Ledger(None, {}))
    assert result.winner is not None
    assert result.winner.candidate.key == "max_queue_delay_microseconds=500 instance_count=2 max_batch_size=16"
    assert len(runner.calls) <= SPACE.size // 3
    # max_batch_size 64 is no better than 16 with 16 requests in flight: pruned, never run
    assert not any("max_batch_size=64" in key for key in runner.calls)
    assert result.trace[-1][1] == result.winner.candidate.key


def test_a_refused_candidate_is_recorded_and_the_search_goes_on() -> None:
    refused = "max_queue_delay_microseconds=0 instance_count=1 max_batch_size=4"
    runner = Runner(refuse=(refused,))
    seed = SPACE.candidate({"max_queue_delay_microseconds": None, "instance_count": 1, "max_batch_size": 4})
    ledger = Ledger(None, {})
    result = coordinate_search(SPACE, GOAL, seed, classic_rules(SPACE, GOAL), runner, ledger)
    failed = [run for run in ledger.runs if run.status == "load_failed"]
    assert [run.key for run in failed] == [refused] and failed[0].message == "failed to load"
    assert result.winner is not None and result.winner.evaluation is not None and result.winner.evaluation.met


def test_no_candidate_meeting_the_target_answers_the_closest() -> None:
    goal = parse_goal("p99_ms=1", 16, None, llm=False)
    result = exhaustive_search(SPACE, goal, Runner(), Ledger(None, {}))
    assert result.winner is not None and result.winner.evaluation is not None
    assert not result.winner.evaluation.met and result.winner.evaluation.distance == pytest.approx(4.0)
    assert result.winner.candidate["instance_count"] != 4  # 5 ms is closer to 1 ms than 20 ms


def test_a_resumed_search_replays_its_runs_and_makes_only_the_missing_ones(tmp_path: Path) -> None:
    path, identity = tmp_path / "resume.json", {"space": SPACE.to_dict()}
    seed = SPACE.candidate({"max_queue_delay_microseconds": None, "instance_count": 1, "max_batch_size": 4})
    first = Runner()
    full = coordinate_search(SPACE, GOAL, seed, classic_rules(SPACE, GOAL), first, Ledger.open(path, identity, False))
    # Interrupted after three runs: a ledger that stops the runner there.
    path.unlink()
    cut = Runner()
    coordinate_search(SPACE, GOAL, seed, classic_rules(SPACE, GOAL), cut, Ledger.open(path, identity, False),
                      max_runs=3)
    assert len(cut.calls) == 3
    resumed = Runner()
    ledger = Ledger.open(path, identity, False)
    result = coordinate_search(SPACE, GOAL, seed, classic_rules(SPACE, GOAL), resumed, ledger)
    assert ledger.replayed >= 3 and resumed.calls == first.calls[3:]
    assert result.winner is not None and full.winner is not None
    assert result.winner.candidate == full.winner.candidate


def test_the_winner_is_written_into_the_spec_keeping_comments() -> None:
    text = """\
models:
  - name: add_sub   # the adder
    backend: python
    max_batch_size: 64          # guessed
    dynamic_batching:
      max_queue_delay_microseconds: 100   # guessed too
    instance_group:
      - {kind: auto, count: 1}   # one for now
"""
    entry = Entry("models", 0, "add_sub")
    winner = SPACE.candidate({"max_queue_delay_microseconds": 500, "instance_count": 2, "max_batch_size": 16})
    edited = edit_entry_text(text, "models", "add_sub", spec_settings(entry, winner)).text
    assert "max_batch_size: 16          # guessed" in edited
    assert "max_queue_delay_microseconds: 500   # guessed too" in edited
    assert "- {kind: auto, count: 2}   # one for now" in edited and "# the adder" in edited
    off = SPACE.candidate({"max_queue_delay_microseconds": None, "instance_count": 1, "max_batch_size": 4})
    removed = yaml.safe_load(edit_entry_text(text, "models", "add_sub", spec_settings(entry, off)).text)
    assert "dynamic_batching" not in removed["models"][0] and removed["models"][0]["max_batch_size"] == 4


def test_llm_settings_land_under_engine_and_kv_cache() -> None:
    text = "llms:\n  - name: chat\n    engine: {kind: pytorch, model: m.gguf}\n    max_batch_size: 8\n"
    space = Space((Dimension("max_batch_size", (16,)), Dimension("prefill_chunk", (128,)),
                   Dimension("free_gpu_memory_fraction", (0.5,)), Dimension("instance_count", (2,))))
    candidate = next(iter(space))
    settings = spec_settings(Entry("llms", 0, "chat"), candidate)
    data = yaml.safe_load(edit_entry_text(text, "llms", "chat", settings).text)
    entry = data["llms"][0]
    assert entry["engine"]["parameters"] == {"prefill_chunk": 128} and entry["max_batch_size"] == 16
    assert entry["kv_cache"] == {"free_gpu_memory_fraction": 0.5} and entry["instance_group"] == [{"count": 2}]


def test_llm_rules_use_the_capacity_model_of_plan() -> None:
    from tritonkit.capacity import find_gpu, find_preset, load_catalog
    from tritonkit.tune.prune import Capacity, llm_rules

    space = Space((Dimension("instance_count", (1, 2)), Dimension("max_batch_size", (8, 16, 32, 64)),
                   Dimension("prefill_chunk", (64, 128, 512)),
                   Dimension("free_gpu_memory_fraction", (0.001, 0.3, 0.9))))
    goal = parse_goal("itl_p99_ms=50", 32, None, llm=True)
    capacity = Capacity(find_gpu(load_catalog(None), "H200"), find_preset("llama-3-8b"), 128, 64)
    rules = llm_rules(space, goal, capacity)

    def why(**values: object) -> str | None:
        candidate = space.candidate({"instance_count": 1, "max_batch_size": 32, "prefill_chunk": 128,
                                     "free_gpu_memory_fraction": 0.3, **values})
        return next((reason for rule in rules if (reason := rule(candidate)) is not None), None)

    assert why() is None
    assert "no better than 32" in (why(max_batch_size=64) or "")
    assert why(instance_count=2, max_batch_size=32) is None  # a decoupled instance may hold them all
    assert "prefills in one chunk, as with 128" in (why(prefill_chunk=512) or "")
    assert "does not fit 0.001 of the free memory" in (why(free_gpu_memory_fraction=0.001) or "")
    assert "fits 0.3 of the free memory already" in (why(free_gpu_memory_fraction=0.9) or "")
