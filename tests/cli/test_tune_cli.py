"""``tritonkit tune``'s arguments: the target, the load, the space, the model, the resume file; each error says
what to do. Nothing here starts a server: every check runs before one would."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tritonkit.cli import main
from tritonkit.errors import TuneError
from tritonkit.tune import TuneOptions, parse_dimension, parse_goal, prepare

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLES / "models", tmp_path / "models")
    shutil.copy(EXAMPLES / "tritonkit.yaml", tmp_path / "tritonkit.yaml")
    return tmp_path / "tritonkit.yaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["tune", *args])
    return code, capsys.readouterr().err


def test_the_load_is_required_once(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "p99_ms=20")
    assert code == 1
    assert "--concurrency N or --request-rate R" in err and "for example --slo p99_ms=50 --concurrency 16" in err
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "p99_ms=20", "--concurrency", "4",
                    "--request-rate", "10")
    assert code == 1 and "one of them" in err


def test_an_unknown_target_lists_the_known_ones(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "p99=20", "--concurrency", "4")
    assert code == 1
    assert "--slo: unknown target 'p99'" in err and "p99_ms" in err


def test_stream_targets_need_an_llm(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "ttft_p99_ms=200", "--concurrency", "4")
    assert code == 1
    assert "ttft_p99_ms needs an LLM" in err and "use p99_ms, error_rate or min_rps" in err


def test_a_spec_with_several_models_asks_which(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, str(spec), "--slo", "p99_ms=20", "--concurrency", "4")
    assert code == 1
    assert "--model: the spec has 3 models tune can search" in err
    assert "add_sub, scale, smollm2" in err  # the ensemble add_then_scale is not one of them


def test_an_ensemble_or_unknown_model_is_refused(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, str(spec), "--model", "add_then_scale", "--slo", "p99_ms=20", "--concurrency", "4")
    assert code == 1 and "'add_then_scale' is not one tune searches" in err
    code, err = run(capsys, str(spec), "--model", "nope", "--slo", "p99_ms=20", "--concurrency", "4")
    assert code == 1 and "'nope' names no entry of the spec" in err


@pytest.mark.parametrize(("space", "message"), [
    ("instance_count", "expects NAME=V1,V2,..."),
    ("prefill_chunk=64", "'prefill_chunk' is not a setting tune searches for this model"),
    ("instance_count=0,2", "instance_count: '0' is too small"),
    ("max_queue_delay_microseconds=soon", "use off (no dynamic batching) or microseconds"),
    ("instance_kind=tpu", "use cpu or gpu"),
])
def test_a_bad_space_names_the_fix(spec: Path, capsys: pytest.CaptureFixture[str], space: str, message: str) -> None:
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "p99_ms=20", "--concurrency", "4",
                    "--space", space)
    assert code == 1
    assert message in err and "--space" in err


def test_a_missing_spec_and_a_bad_duration(tmp_path: Path, spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, str(tmp_path / "nope.yaml"), "--slo", "p99_ms=20", "--concurrency", "4")
    assert code == 1 and "spec file not found" in err
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "p99_ms=20", "--concurrency", "4",
                    "--duration", "soon")
    assert code == 1 and "--duration: must be a duration like 30s" in err


def test_a_resume_file_of_another_tune_is_refused(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    resume = spec.parent / "resume.json"
    resume.write_text(json.dumps({"version": 1, "identity": {"model": "scale"}, "runs": []}))
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "p99_ms=20", "--concurrency", "4",
                    "--resume-file", str(resume))
    assert code == 1
    assert "holds runs of another tune" in err and "pass --fresh" in err
    resume.write_text("not json")
    code, err = run(capsys, str(spec), "--model", "add_sub", "--slo", "p99_ms=20", "--concurrency", "4",
                    "--resume-file", str(resume))
    assert code == 1 and "is not a tune resume file" in err


def test_goal_ranks_by_throughput_at_a_concurrency_and_by_headroom_at_a_rate() -> None:
    closed = parse_goal("p99_ms=20,error_rate=0.01", 16, None, llm=False)
    assert closed.objective_name == "throughput_rps"
    met = closed.evaluate({"p99_ms": 12.0, "error_rate": 0.0, "throughput_rps": 900.0})
    assert met.met and met.objective == 900.0
    missed = closed.evaluate({"p99_ms": 30.0, "error_rate": 0.0, "throughput_rps": 2000.0})
    assert not missed.met and missed.distance == pytest.approx(0.5)
    assert missed.misses == ("p99_ms is 30, target at most 20",)
    opened = parse_goal("p99_ms=20", None, 200.0, llm=False)
    assert opened.objective_name == "headroom" and opened.load_label == "rate 200/s"
    assert opened.evaluate({"p99_ms": 10.0, "throughput_rps": 199.0}).objective == pytest.approx(2.0)
    llm = parse_goal("ttft_p99_ms=500,min_tokens_per_s=100", 8, None, llm=True)
    assert llm.objective_name == "output_tokens_per_s" and llm.slo_metric == "ttft_p99_ms"
    assert not llm.evaluate({"ttft_p99_ms": 100.0, "min_tokens_per_s": 50.0}).met


def test_space_values_parse_and_sort() -> None:
    assert parse_dimension("max_queue_delay_microseconds=500,off,0", ["max_queue_delay_microseconds"]) == \
        ("max_queue_delay_microseconds", (None, 0, 500))
    assert parse_dimension("preferred_batch_size=16+8,none,4", ["preferred_batch_size"]) == \
        ("preferred_batch_size", ((), (4,), (8, 16)))
    with pytest.raises(TuneError, match="not a fraction"):
        parse_dimension("free_gpu_memory_fraction=1.5", ["free_gpu_memory_fraction"])


def test_prepare_starts_at_the_spec_and_prunes_by_the_load(spec: Path) -> None:
    outcome = prepare(TuneOptions(spec=spec, slo="p99_ms=20", model="add_sub", concurrency=8))
    assert outcome.space.dimension("max_queue_delay_microseconds").values == (None, 0, 100, 500, 2000)
    assert outcome.seed["max_queue_delay_microseconds"] == 500 and outcome.seed["instance_count"] == 2
    assert outcome.report == spec.parent / "tune-add_sub"
    llm = prepare(TuneOptions(spec=spec, slo="itl_p99_ms=100", model="smollm2", concurrency=6))
    assert llm.seed["max_batch_size"] == 8  # the requests in flight, rounded onto the space
    assert "free_gpu_memory_fraction" not in llm.space.to_dict()  # no GPU here
