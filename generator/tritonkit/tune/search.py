"""The search: coordinate line searches from the seed, with repeats where two candidates are within noise.

Each dimension is stepped along from the incumbent, one value at a time, while a step beats it: first
upwards, and downwards only when upwards did not help. A pass over every dimension repeats until one
changes nothing. Pruned and invalid candidates are stepped over at no cost; one the server refuses ends
the line in that direction (larger counts, batches or fractions fail the same way).

A step beats the incumbent when it meets the targets and the other does not, or, both meeting them, when
its objective is higher by more than twice the standard error of the difference (about 95% confidence).
The noise is the relative spread between repeated runs of one candidate, pooled over every candidate
repeated so far (5% until a repeat exists, never below 2%). Within noise, the challenger and then the
incumbent are measured again, up to ``repeats`` runs each; then the higher mean moves on. A candidate
that meets a target with less than 10% to spare is measured again before it is trusted.

The answer, at any moment, is the measured candidate that meets every target with the highest mean
objective (none meets them: the one that misses by least); its confidence against the runner-up is
stated from the same noise model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

from tritonkit.tune.goal import Evaluation, Goal
from tritonkit.tune.ledger import Ledger, Run
from tritonkit.tune.prune import Pruner
from tritonkit.tune.space import Candidate, Dimension, Space

__all__ = ["SearchResult", "Standing", "coordinate_search", "exhaustive_search", "mean_figures"]

_PRIOR_NOISE, _NOISE_FLOOR, _MARGIN, _Z = 0.05, 0.02, 0.10, 2.0


class _OutOfRunsError(Exception):
    """The run budget is spent."""


@dataclass(frozen=True)
class Standing:
    """A candidate's measured runs and its evaluation on their means (None: never measured)."""

    candidate: Candidate
    runs: tuple[Run, ...]
    evaluation: Optional[Evaluation]
    figures: dict[str, Optional[float]]


@dataclass
class SearchResult:
    """The winner (None when nothing could be measured), every candidate's standing, and how the best moved."""

    winner: Optional[Standing]
    standings: list[Standing]
    #: (runs made so far, the answer's key) each time the answer changed.
    trace: list[tuple[int, str]] = field(default_factory=list)
    noise: float = _PRIOR_NOISE
    #: True when no candidate was measured twice, so ``noise`` is the 5% prior, not a measurement.
    noise_assumed: bool = True
    runner_up: Optional[Standing] = None
    confidence: Optional[float] = None
    stopped_early: bool = False


def mean_figures(runs: Sequence[Run]) -> dict[str, Optional[float]]:
    """Each figure's mean over the runs that measured it."""
    names = dict.fromkeys(name for run in runs for name in run.figures)
    means: dict[str, Optional[float]] = {}
    for name in names:
        values = [v for run in runs if (v := run.figures.get(name)) is not None and not math.isnan(v)]
        means[name] = sum(values) / len(values) if values else None
    return means


class _Search:
    def __init__(self, space: Space, goal: Goal, rules: Sequence[Pruner], runner: Callable[[Candidate], Run],
                 ledger: Ledger, repeats: int, max_runs: int, say: Callable[[str], None]) -> None:
        self.space, self.goal, self.rules, self.runner = space, goal, rules, runner
        self.ledger, self.repeats, self.max_runs, self.say = ledger, max(1, repeats), max_runs, say
        self.runs: dict[str, list[Run]] = {}
        self.candidates: dict[str, Candidate] = {}
        self.blocked: dict[str, Run] = {}
        self.best: Optional[Candidate] = None
        self.trace: list[tuple[int, str]] = []

    # -- runs -------------------------------------------------------------------------------------
    def measured(self, candidate: Candidate) -> list[Run]:
        return [run for run in self.runs.get(candidate.key, []) if run.status == "measured"]

    def _blocked_run(self, candidate: Candidate) -> Optional[Run]:
        self.candidates[candidate.key] = candidate
        if candidate.key not in self.blocked:
            reason = next((why for rule in self.rules if (why := rule(candidate)) is not None), None)
            if reason is not None:
                self.blocked[candidate.key] = self.ledger.outcome(
                    candidate.key, 0, lambda: Run(candidate.key, candidate.to_dict(), "pruned", message=reason))
                self.say(_describe(self.blocked[candidate.key], self.ledger.run_count, self.goal, False))
        return self.blocked.get(candidate.key)

    def runnable(self, candidate: Candidate) -> bool:
        """Measure ``candidate`` once if it never was; False when it is pruned, invalid or refused."""
        if self._blocked_run(candidate) is not None:
            return False
        if not self.runs.get(candidate.key):
            self.measure(candidate)
        return bool(self.measured(candidate))

    def measure(self, candidate: Candidate) -> bool:
        """One more run of ``candidate``; False when it could not be measured."""
        if self.ledger.run_count >= self.max_runs:
            raise _OutOfRunsError
        nth, replayed = len(self.runs.get(candidate.key, [])), self.ledger.replayed
        run = self.ledger.outcome(candidate.key, nth, lambda: self.runner(candidate))
        if run.status == "invalid":
            self.blocked[candidate.key] = run
        self.runs.setdefault(candidate.key, []).append(run)
        self.say(_describe(run, self.ledger.run_count, self.goal, self.ledger.replayed > replayed))
        answer = self.answer()
        if answer is not None and (not self.trace or self.trace[-1][1] != answer.key):
            self.trace.append((self.ledger.run_count, answer.key))
        return run.status == "measured"

    def answer(self) -> Optional[Candidate]:
        """The best measured candidate so far (what a tune stopped now would answer).

        The highest objective among those that meet every target, else the one that misses by least.
        """
        measured = [self.candidates[key] for key, runs in self.runs.items()
                    if any(run.status == "measured" for run in runs)]
        if not measured:
            return None

        def rank(candidate: Candidate) -> tuple[bool, float]:
            evaluation = self.evaluation(candidate)
            return (evaluation.met, evaluation.objective if evaluation.met else -evaluation.distance)

        return max(measured, key=rank)

    # -- judging ----------------------------------------------------------------------------------
    def evaluation(self, candidate: Candidate) -> Evaluation:
        return self.goal.evaluate(mean_figures(self.measured(candidate)))

    def noise(self) -> float:
        squares, freedom = 0.0, 0
        for runs in self.runs.values():
            values = [self.goal.evaluate(run.figures).objective for run in runs if run.status == "measured"]
            mean = sum(values) / len(values) if values else 0.0
            if len(values) > 1 and mean > 0:
                squares += sum(((v - mean) / mean) ** 2 for v in values)
                freedom += len(values) - 1
        return max(_NOISE_FLOOR, math.sqrt(squares / freedom)) if freedom else _PRIOR_NOISE

    def z_score(self, a: Candidate, b: Candidate) -> float:
        ea, eb = self.evaluation(a), self.evaluation(b)
        na, nb = len(self.measured(a)), len(self.measured(b))
        se = self.noise() * math.sqrt(ea.objective ** 2 / na + eb.objective ** 2 / nb)
        return (ea.objective - eb.objective) / se if se > 0 else math.inf

    def _marginal(self, candidate: Candidate) -> bool:
        figures = mean_figures(self.measured(candidate))
        for target in self.goal.targets:
            value = figures.get(target.name)
            if value is not None and target.bound > 0 and abs(value / target.bound - 1.0) < _MARGIN:
                return True
        return False

    def _again(self, candidate: Candidate) -> bool:
        """Measure once more if the repeats allow; False when they do not (or the run failed)."""
        return len(self.measured(candidate)) < self.repeats and self.measure(candidate)

    def beats(self, challenger: Candidate, incumbent: Candidate) -> bool:
        while True:
            ea, eb = self.evaluation(challenger), self.evaluation(incumbent)
            if ea.met != eb.met:
                if ea.met and self._marginal(challenger) and self._again(challenger):
                    continue
                return ea.met
            if not ea.met:
                return ea.distance < eb.distance
            if ea.objective <= eb.objective:
                return False
            if self.z_score(challenger, incumbent) > _Z:
                if self._marginal(challenger) and self._again(challenger):
                    continue
                return True
            if not (self._again(challenger) or self._again(incumbent)):
                return True  # as many runs as allowed, still within noise: the higher mean moves on

    # -- moving -----------------------------------------------------------------------------------
    def adopt(self, candidate: Candidate) -> Candidate:
        self.best = candidate
        return candidate

    def start(self, seed: Candidate) -> Optional[Candidate]:
        """The seed, or the runnable candidate nearest to it when the seed cannot run."""
        def distance(c: Candidate) -> int:
            return sum(abs(d.values.index(c[d.name]) - d.values.index(seed[d.name])) for d in self.space.dimensions)

        for candidate in sorted(self.space, key=distance):
            if self.runnable(candidate):
                return self.adopt(candidate)
        return None

    def line(self, incumbent: Candidate, dimension: Dimension) -> Candidate:
        for step in (1, -1):
            current, value = incumbent, incumbent[dimension.name]
            while (value := dimension.neighbour(value, step)) is not None:
                candidate = current.with_value(dimension.name, value)
                if not self.runnable(candidate):
                    if candidate.key in self.blocked:
                        continue  # pruned or invalid: step over it at no cost
                    break  # the server refused it: further along fails alike
                if not self.beats(candidate, current):
                    break
                current = self.adopt(candidate)
            if current is not incumbent:
                return current
        return incumbent


def coordinate_search(space: Space, goal: Goal, seed: Candidate, rules: Sequence[Pruner],
                      runner: Callable[[Candidate], Run], ledger: Ledger, *, repeats: int = 2, max_runs: int = 40,
                      max_passes: int = 3, say: Callable[[str], None] = lambda _: None) -> SearchResult:
    """Search ``space`` from ``seed`` and return the winner with every candidate's standing."""
    search = _Search(space, goal, rules, runner, ledger, repeats, max_runs, say)
    stopped = False
    try:
        incumbent = search.start(seed)
        for _ in range(max_passes if incumbent is not None else 0):
            assert incumbent is not None
            before = incumbent
            for dimension in space.dimensions:
                if len(dimension.values) > 1:
                    incumbent = search.line(incumbent, dimension)
            if incumbent == before:
                break
    except _OutOfRunsError:
        stopped = True
    return _result(search, stopped)


def exhaustive_search(space: Space, goal: Goal, runner: Callable[[Candidate], Run], ledger: Ledger, *,
                      max_runs: int = 10_000, say: Callable[[str], None] = lambda _: None) -> SearchResult:
    """Measure every candidate of ``space`` once, nothing pruned: what brute force does, to compare with."""
    search = _Search(space, goal, (), runner, ledger, 1, max_runs, say)
    stopped = False
    try:
        for candidate in space:
            search.candidates[candidate.key] = candidate
            search.measure(candidate)
    except _OutOfRunsError:
        stopped = True
    return _result(search, stopped)


def _result(search: _Search, stopped: bool) -> SearchResult:
    standings = []
    for key, runs in search.runs.items():
        candidate = search.candidates[key]
        measured = search.measured(candidate)
        figures = mean_figures(measured)
        standings.append(Standing(candidate, tuple(runs), search.goal.evaluate(figures) if measured else None,
                                  figures))
    answer = search.answer()
    winner = next((s for s in standings if answer is not None and s.candidate == answer), None)
    assumed = not any(len(search.measured(c)) > 1 for c in search.candidates.values())
    result = SearchResult(winner, standings, search.trace, search.noise(), noise_assumed=assumed,
                          stopped_early=stopped)
    if winner is not None and winner.evaluation is not None and winner.evaluation.met:
        others = [s for s in standings if s is not winner and s.evaluation is not None and s.evaluation.met]
        if others:
            runner_up = max(others, key=lambda s: s.evaluation.objective if s.evaluation else 0.0)
            z = search.z_score(winner.candidate, runner_up.candidate)
            result.runner_up, result.confidence = runner_up, 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    return result


def _describe(run: Run, count: int, goal: Goal, replayed: bool) -> str:
    what = {"measured": "", "load_failed": "refused by the server: ", "invalid": "invalid: ",
            "pruned": "pruned: "}[run.status]
    shown = {"output_tokens_per_s" if goal.llm else "throughput_rps", *(t.name for t in goal.targets)}
    figures = ", ".join(f"{name} {value:.4g}" for name, value in run.figures.items()
                        if value is not None and name in shown)
    source = " (from the resume file)" if replayed else ""
    label = f"run {count}{source}" if run.costs_a_run else "not run"
    return f"{label}: {run.key}: {what}{figures or run.message}"
