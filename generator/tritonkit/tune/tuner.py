"""One tune end to end: the spec, the goal, the space, the server, the search, and the server put back.

Without ``url`` the spec is generated into a temporary folder and served by a local tritonserver under
explicit model control, with only the tuned model loaded; with ``url``, the running server is checked
first (model control, admin key, no other tenants). Whatever ends the search (its end, an error, Ctrl-C),
the model is loaded back with the config it had before the first candidate.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tritonkit.bench import BenchOptions, run_bench
from tritonkit.capacity import Architecture, Gpu, find_gpu, load_architecture, load_catalog
from tritonkit.errors import BenchError, ClientError, Problem, TritonkitError, TuneError
from tritonkit.runtime import Server
from tritonkit.spec.llm import LLMSpec
from tritonkit.spec.load import LoadedSpec, load_spec
from tritonkit.tune.entry import Entry, find_entry
from tritonkit.tune.goal import Goal, figures_of, parse_goal
from tritonkit.tune.ledger import Ledger, Run
from tritonkit.tune.prune import Capacity, Pruner, classic_rules, default_space, llm_rules, seed_values
from tritonkit.tune.render import render_candidate
from tritonkit.tune.search import SearchResult, coordinate_search, exhaustive_search
from tritonkit.tune.space import Candidate, Space, parse_dimension
from tritonkit.tune.target import TritonTarget

__all__ = ["TuneOptions", "TuneOutcome", "measure_candidates", "prepare", "summary", "tune"]

Say = Callable[[str], None]


@dataclass(frozen=True)
class TuneOptions:
    """Every setting of one ``tritonkit tune`` run."""

    spec: Path
    slo: str
    model: Optional[str] = None
    concurrency: Optional[int] = None
    request_rate: Optional[float] = None
    space: tuple[str, ...] = ()
    url: Optional[str] = None
    admin_key: Optional[str] = None
    allow_other_models: bool = False
    duration_s: float = 5.0
    warmup_s: float = 1.0
    repeats: int = 2
    max_runs: int = 40
    input_tokens: int = 128
    output_tokens: int = 64
    tokenizer: Optional[str] = None
    gpu: Optional[str] = None
    #: Folder of the report and (by default) the resume file; default: ``tune-<model>/`` beside the spec.
    report: Optional[Path] = None
    #: None: ``resume.json`` in the report folder.
    resume_file: Optional[Path] = None
    fresh: bool = False
    tritonserver: Optional[str] = None
    ready_timeout_s: float = 300.0
    timeout_s: float = 60.0
    #: Measure every candidate once, nothing pruned (brute force, what the search is compared with).
    exhaustive: bool = False


@dataclass
class TuneOutcome:
    """What a tune found, and everything the report and the write-back need."""

    options: TuneOptions
    loaded: LoadedSpec
    entry: Entry
    goal: Goal
    space: Space
    seed: Candidate
    seed_note: str
    ledger: Ledger
    spec_digest: str
    capacity: Capacity
    report: Path
    result: SearchResult = field(default_factory=lambda: SearchResult(None, []))
    notes: list[str] = field(default_factory=list)


def _detect_gpu(name: Optional[str]) -> Optional[Gpu]:
    """``--gpu``'s entry of the catalogue, else the first local GPU's when the catalogue knows it, else None."""
    catalog = load_catalog(None)
    if name is not None:
        return find_gpu(catalog, name)
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    for word in (found[0].replace("NVIDIA", "").split() if found else []):
        try:
            return find_gpu(catalog, word)
        except TritonkitError:
            continue
    return None


def _architecture(llm: LLMSpec, base: Path) -> Optional[Architecture]:
    """The LLM's shape for the capacity model: a folder, a GGUF, ``pkg:<dist>/<file>`` or ``hf:``; None if unknown."""
    source = llm.engine.model or ""
    if source.startswith("pkg:"):
        dist, _, name = source[4:].partition("/")
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            return None
        found = [f for f in files if str(f).endswith(name)]
        if not found:
            return None
        source = str(found[0].locate())
    elif not source.startswith("hf:") and not Path(source).is_absolute():
        source = str(base / source)
    try:
        return load_architecture(source)
    except TritonkitError:
        return None


def prepare(options: TuneOptions) -> TuneOutcome:
    """Read the spec, find the entry, the goal, the space and the seed; open the resume file.

    Raises:
        SpecError: the spec is wrong.
        TuneError: the model, the target, the space or the resume file is wrong.

    """
    text = options.spec.read_bytes() if options.spec.is_file() else b""
    loaded = load_spec(options.spec)
    entry = find_entry(loaded, options.model)
    model = entry.spec_of(loaded)
    goal = parse_goal(options.slo, options.concurrency, options.request_rate, entry.llm)
    if entry.llm and isinstance(model, LLMSpec) and not model.streaming and any(
            t.name.startswith(("ttft_", "itl_")) for t in goal.targets):
        raise TuneError(Problem("TTFT and ITL targets need a streaming LLM (streaming: true in the spec)",
                                path="--slo", hint="use p99_ms or min_tokens_per_s, or turn streaming on"))
    gpu = _detect_gpu(options.gpu)
    arch = _architecture(model, loaded.base_dir) if isinstance(model, LLMSpec) and gpu is not None else None
    capacity = Capacity(gpu, arch, options.input_tokens, options.output_tokens)
    given = dict(parse_dimension(item, entry.dimensions) for item in options.space)
    space = default_space(entry, model, goal, capacity, given)
    values, note = seed_values(model, goal, capacity)
    seed = space.candidate({**{d.name: d.values[0] for d in space.dimensions}, **values})
    digest = hashlib.sha256(text).hexdigest()
    identity = {"spec": digest, "model": entry.name, "exhaustive": options.exhaustive, "goal": goal.describe(),
                "space": space.to_dict(),
                "duration_s": options.duration_s, "warmup_s": options.warmup_s, "url": options.url or "local",
                "input_tokens": options.input_tokens, "output_tokens": options.output_tokens}
    report = options.report or options.spec.parent / f"tune-{entry.name}"
    ledger = Ledger.open(options.resume_file or report / "resume.json", identity, options.fresh)
    outcome = TuneOutcome(options, loaded, entry, goal, space, seed, note, ledger, digest, capacity, report)
    outcome.notes.append(f"capacity model: {_capacity_note(capacity)}")
    return outcome


def _capacity_note(capacity: Capacity) -> str:
    if capacity.gpu is None:
        return "no GPU here (or none in the catalogue): rules from the load and the targets only"
    shape = f", {capacity.arch.name}" if capacity.arch is not None else ""
    return f"{capacity.gpu.name}{shape}"


def _rules(outcome: TuneOutcome) -> list[Pruner]:
    if outcome.entry.llm:
        return llm_rules(outcome.space, outcome.goal, outcome.capacity)
    return classic_rules(outcome.space, outcome.goal)


def _bench_options(outcome: TuneOutcome, url: str) -> BenchOptions:
    options, goal = outcome.options, outcome.goal
    model = outcome.entry.spec_of(outcome.loaded)
    stream = isinstance(model, LLMSpec) and model.streaming
    return BenchOptions(model=outcome.entry.name, url=url, protocol="grpc", mode=goal.mode, levels=(goal.level,),
                        duration_s=options.duration_s, warmup_s=options.warmup_s, stream=stream,
                        input_tokens=options.input_tokens, output_tokens=options.output_tokens,
                        tokenizer=options.tokenizer, timeout_s=options.timeout_s)


def _runner(outcome: TuneOutcome, target: TritonTarget) -> Callable[[Candidate], Run]:
    bench = _bench_options(outcome, target.url)
    spec_name = outcome.options.spec.name

    def run(candidate: Candidate) -> Run:
        values = candidate.to_dict()
        rendering = render_candidate(outcome.loaded, outcome.entry, candidate, spec_name)
        if rendering.config is None:
            return Run(candidate.key, values, "invalid", message="; ".join(rendering.problems))
        started = time.monotonic()
        refused = target.load(rendering.config)
        if refused is not None:
            return Run(candidate.key, values, "load_failed", message=refused, seconds=time.monotonic() - started)
        try:
            level = run_bench(bench).levels[0]
        except (BenchError, ClientError) as exc:
            return Run(candidate.key, values, "load_failed", message=exc.first.message,
                       seconds=time.monotonic() - started)
        return Run(candidate.key, values, "measured", figures_of(level, outcome.goal),
                   seconds=time.monotonic() - started)

    return run


@contextmanager
def _server(outcome: TuneOutcome, say: Say) -> Iterator[TritonTarget]:
    """The target: the server at ``--url``, or a local one over the generated repository."""
    from tritonkit.write.generate import generate

    options, entry = outcome.options, outcome.entry
    if options.url is not None:
        target = TritonTarget(options.url, entry.name, options.admin_key)
        try:
            yield target
        finally:
            target.close()
        return
    with tempfile.TemporaryDirectory(prefix="tritonkit-tune-") as folder:
        spec_copy = options.spec.resolve()
        generate(spec_copy, Path(folder))
        say(f"starting a local tritonserver (explicit model control) for {entry.name} ...")
        server = Server(Path(folder) / "model_repository", tritonserver=options.tritonserver,
                        model_control_mode="explicit", load_models=[entry.name], heal=False,
                        startup_timeout_s=options.ready_timeout_s, exit_timeout_s=5.0)
        with server:
            target = TritonTarget(server.grpc_url, entry.name, server.admin_key, server.log_lines)
            try:
                yield target
            finally:
                target.close()


@contextmanager
def _restoring(target: TritonTarget, say: Say) -> Iterator[None]:
    """Put the model's original config back however the block ends; a second Ctrl-C does not cut that short."""
    try:
        yield
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            target.restore()
            say(f"{target.model}: the original config is loaded again")
        except Exception as exc:  # the restore is best effort: say so, the run's own outcome stands
            say(f"warning: could not load {target.model}'s original config back: {exc}")
        finally:
            signal.signal(signal.SIGINT, previous)


def tune(outcome: TuneOutcome, say: Say) -> TuneOutcome:
    """Run the search on the server and return the outcome (the server has its original config again).

    Raises:
        TuneError: the server cannot be tuned on (no model control, no key, other tenants, model not loaded).
        ServerError: the local server does not start.

    """
    options = outcome.options
    with _server(outcome, say) as target:
        target.check(_spec_models(outcome.loaded), options.allow_other_models)
        outcome.ledger.original_config = outcome.ledger.original_config or target.original
        target.original = outcome.ledger.original_config
        with _restoring(target, say):
            runner = _runner(outcome, target)
            if options.exhaustive:
                outcome.result = exhaustive_search(outcome.space, outcome.goal, runner, outcome.ledger,
                                                   max_runs=options.max_runs, say=say)
            else:
                outcome.result = coordinate_search(outcome.space, outcome.goal, outcome.seed, _rules(outcome),
                                                   runner, outcome.ledger, repeats=options.repeats,
                                                   max_runs=options.max_runs, say=say)
    if outcome.ledger.path is not None and not outcome.result.stopped_early:
        outcome.ledger.path.unlink(missing_ok=True)  # finished: the report holds every run
    return outcome


def measure_candidates(outcome: TuneOutcome, candidates: list[Candidate], say: Say) -> list[Run]:
    """Measure ``candidates`` in order on one server, as the search would (to re-check answers side by side).

    Raises:
        TuneError: as :func:`tune`.

    """
    with _server(outcome, say) as target:
        target.check(_spec_models(outcome.loaded), outcome.options.allow_other_models)
        with _restoring(target, say):
            runner = _runner(outcome, target)
            return [runner(candidate) for candidate in candidates]


def _spec_models(loaded: LoadedSpec) -> list[str]:
    """Every Triton model name the spec generates."""
    from tritonkit.model.repository import build_repository

    return [unit.name for unit in build_repository(loaded).units]


def summary(outcome: TuneOutcome) -> dict[str, Any]:
    """The JSON form of a finished tune (without the table rows)."""
    result = outcome.result
    winner = result.winner
    return {"spec": str(outcome.options.spec), "model": outcome.entry.name, "goal": outcome.goal.describe(),
            "objective": outcome.goal.objective_name, "space": outcome.space.to_dict(),
            "space_size": outcome.space.size,
            "seed": outcome.seed.to_dict(), "seed_from": outcome.seed_note,
            "runs": outcome.ledger.run_count, "replayed": outcome.ledger.replayed,
            "trace": [{"runs": runs, "best": key} for runs, key in result.trace], "noise": result.noise,
            "winner": winner.candidate.to_dict() if winner else None,
            "winner_figures": winner.figures if winner else None,
            "met": bool(winner and winner.evaluation and winner.evaluation.met),
            "runner_up": result.runner_up.candidate.to_dict() if result.runner_up else None,
            "confidence": result.confidence, "stopped_early": result.stopped_early, "notes": outcome.notes}
