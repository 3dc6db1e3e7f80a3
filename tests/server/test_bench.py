"""bench against a real tritonserver: every figure present, counts agreeing with Triton's own."""

from __future__ import annotations

import json
import math
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from tritonkit.bench import BenchError, BenchOptions, LevelResult, run_bench
from tritonkit.runtime import Server

pytestmark = pytest.mark.triton

BENCH_REPO = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / "repo"
# tinyllm_bls sleeps FIRST_S before its first delta and STEP_S between deltas (see its model.py).
FIRST_S, STEP_S = 0.010, 0.003


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           triton_server_module: Callable[..., Server]) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("bench") / "model_repository"
    shutil.copytree(BENCH_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    yield triton_server_module(repo)


def _options(server: Server, model: str, protocol: str = "grpc", **kwargs: object) -> BenchOptions:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    settings: dict[str, object] = {"levels": (2,), "duration_s": 1.0, "warmup_s": 0.3}
    settings.update(kwargs)
    return BenchOptions(model=model, url=url, protocol=protocol, **settings)  # type: ignore[arg-type]


def _success_counter(server: Server, model: str) -> int:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    pattern = rf'^nv_inference_request_success{{model="{model}",version="1"}} (\d+)'
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no success counter for {model} in /metrics"
    return int(match.group(1))


def _assert_latency(level: LevelResult) -> None:
    figures = level.latency_ms
    assert set(figures) == {"p50", "p90", "p95", "p99", "max", "mean"}
    assert all(v > 0 and not math.isnan(v) for v in figures.values())
    assert figures["p50"] <= figures["p90"] <= figures["p95"] <= figures["p99"] <= figures["max"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classic_model_every_field(server: Server, protocol: str) -> None:
    result = run_bench(_options(server, "simple", protocol, levels=(1, 4)))
    assert result.kind == "classic"
    assert [level.level for level in result.levels] == [1, 4]
    for level in result.levels:
        assert level.requests > 20 and level.errors == 0 and level.ok == level.requests
        assert level.throughput_rps == pytest.approx(level.ok / level.window_s)
        _assert_latency(level)
        split = level.server_for("simple")
        assert split is not None and split.success == level.requests
        assert split.compute_infer_ms > 0 and split.queue_ms >= 0 and split.avg_batch >= 1.0
        assert level.ttft_ms is None and level.itl_ms is None


def test_counts_agree_with_triton_counters(server: Server) -> None:
    # No warm-up, so the metrics read around run_bench enclose exactly bench's measured window.
    before = _success_counter(server, "simple")
    result = run_bench(_options(server, "simple", levels=(4,), duration_s=2.0, warmup_s=0.0))
    level = result.levels[0]
    after = _success_counter(server, "simple")
    split = level.server_for("simple")
    assert split is not None
    assert level.ok == split.success == after - before
    triton_rps = (after - before) / level.window_s
    assert level.throughput_rps == pytest.approx(triton_rps, rel=0.01)


def test_warmup_is_excluded_from_the_window(server: Server) -> None:
    before = _success_counter(server, "simple")
    result = run_bench(_options(server, "simple", levels=(2,), requests=150, duration_s=None, warmup_s=0.5))
    after = _success_counter(server, "simple")
    level = result.levels[0]
    assert level.requests == 150 and level.server_for("simple").success == 150  # type: ignore[union-attr]
    assert after - before > 150  # the warm-up ran, and was left out of every figure


def test_errors_are_counted_not_fatal(server: Server) -> None:
    result = run_bench(_options(server, "flaky", requests=90, duration_s=None, warmup_s=0.0, levels=(1,)))
    level = result.levels[0]
    assert level.requests == 90
    assert level.errors == 30 and level.ok == 60  # the model refuses every third request
    assert level.errors_by_kind == {"INTERNAL": 30}
    _assert_latency(level)


def test_errors_over_http_are_counted(server: Server) -> None:
    options = _options(server, "flaky", "http", requests=60, duration_s=None, warmup_s=0.0, levels=(3,))
    level = run_bench(options).levels[0]
    assert level.requests == 60 and level.errors == 20 and level.ok == 40
    assert level.errors_by_kind == {"500": 20}  # Triton maps INTERNAL to HTTP 500


def test_streaming_llm_ttft_itl_and_tokens(server: Server) -> None:
    options = _options(server, "tinyllm_bls", stream=True, output_tokens=6, input_tokens=12, levels=(1, 2))
    result = run_bench(options)
    assert result.kind == "llm" and result.stream
    assert "about 12 tokens" in result.notes[0]  # no tokenizer: the approximation is said out loud
    for level in result.levels:
        assert level.errors == 0 and level.ok > 5
        assert level.output_tokens == 6 * level.ok
        assert level.ttft_ms is not None and level.itl_ms is not None
        assert level.ttft_ms["p50"] >= FIRST_S * 1000
        assert level.itl_ms["p50"] >= STEP_S * 1000
        assert level.ttft_ms["p99"] < level.latency_ms["p99"]
        assert level.output_tokens_per_s == pytest.approx(level.output_tokens / level.window_s)
        assert level.tokens_per_s_per_request is not None
        assert level.tokens_per_s_per_request["p50"] == pytest.approx(6 / (level.latency_ms["p50"] / 1000),
                                                                       rel=0.2)
        _assert_latency(level)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_non_streaming_llm_counts_words(server: Server, protocol: str) -> None:
    result = run_bench(_options(server, "tinyllm", protocol, output_tokens=5, requests=20, duration_s=None))
    level = result.levels[0]
    assert level.ok == 20 and level.output_tokens == 100
    assert level.ttft_ms is None
    assert "approximated as words" in result.notes[0]


def test_input_data_file(server: Server, tmp_path: Path) -> None:
    data = {"data": [{"INPUT0": list(range(16)), "TAG": ["first"]},
                     {"INPUT0": {"content": [0.5] * 16, "shape": [16]}, "TAG": {"content": ["second"], "shape": [1]}}]}
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(data))
    result = run_bench(_options(server, "simple", "http", input_data=path, requests=10, duration_s=None))
    assert result.notes[0] == "inputs from inputs.json"
    # Ten requests hold a p90 (one of them above it) but not a p95 or p99: bench says so.
    assert len(result.notes) == 2 and "(10 ok requests): p95, p99;" in result.notes[1]
    assert result.levels[0].ok == 10


def test_input_data_file_must_match_the_model(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"INPUT0": [1.0] * 16, "EXTRA": [1]}]))
    with pytest.raises(BenchError) as caught:
        run_bench(_options(server, "simple", input_data=path))
    assert caught.value.first.path == str(path)
    assert "unknown ['EXTRA'], missing ['TAG']" in caught.value.first.message


def test_prompts_file(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"text": "hello there"}\n{"prompt": "what is up"}\n')
    options = _options(server, "tinyllm_bls", stream=True, prompts=path, output_tokens=3, requests=4,
                       duration_s=None)
    result = run_bench(options)
    assert result.notes[0].startswith("2 prompts from prompts.jsonl")
    assert result.levels[0].ok == 4 and result.levels[0].output_tokens == 12


def test_open_loop_poisson_rate(server: Server) -> None:
    result = run_bench(_options(server, "simple", mode="rate", levels=(40.0,), duration_s=3.0, warmup_s=0.2))
    level = result.levels[0]
    assert level.mode == "rate" and level.errors == 0
    assert 70 <= level.requests <= 170  # 120 expected; Poisson arrivals vary
    assert level.throughput_rps == pytest.approx(40.0, rel=0.35)
