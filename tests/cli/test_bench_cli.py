"""``tritonkit bench`` from the command line: outputs written and readable, SLO gate exit codes, usage errors."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import matplotlib.image
import pytest

from tritonkit.cli import main
from tritonkit.runtime import Server

BENCH_REPO = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / "repo"
QUICK = ["--duration", "1s", "--warmup", "0.2s"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           triton_server_module: Callable[..., Server]) -> Iterator[Server]:
    repo = tmp_path_factory.mktemp("bench_cli") / "model_repository"
    shutil.copytree(BENCH_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    yield triton_server_module(repo)


@pytest.mark.triton
def test_stream_run_writes_json_csv_png(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = main(["bench", "tinyllm_bls", "--url", server.grpc_url, "--stream", "--concurrency", "1,2",
                 "--output-tokens", "4", "--save-json", str(out / "r.json"), "--save-csv",
                 str(out / "r.csv"), "--save-plot", str(out / "r.png"), *QUICK])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "client side" in captured.out and "TTFT p50" in captured.out and "queue" in captured.out
    assert "note: prompts of 128 words" in captured.err and "wrote" in captured.err

    document = json.loads((out / "r.json").read_text())
    assert document["model"] == "tinyllm_bls" and document["stream"] is True
    assert [level["level"] for level in document["levels"]] == [1, 2]
    for level in document["levels"]:
        assert level["ok"] > 0 and level["output_tokens"] == 4 * level["ok"]
        assert set(level["ttft_ms"]) >= {"p50", "p99"} and set(level["itl_ms"]) >= {"p50", "p99"}
        assert level["server"][0]["model"] == "tinyllm_bls"

    with (out / "r.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["level"] for row in rows] == ["1.0", "2.0"]
    assert float(rows[0]["latency_p99_ms"]) > 0 and float(rows[0]["ttft_p50_ms"]) > 0
    assert float(rows[1]["throughput_rps"]) == pytest.approx(document["levels"][1]["throughput_rps"])

    image = matplotlib.image.imread(out / "r.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 600  # two panels side by side


@pytest.mark.triton
def test_classic_http_run_and_plot(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "simple", "--url", server.http_url, "--protocol", "http", "--concurrency", "1,4",
                 "--save-plot", str(tmp_path / "c.png"), *QUICK])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "simple over http" in captured.out
    assert matplotlib.image.imread(tmp_path / "c.png").shape[1] >= 600


@pytest.mark.triton
def test_slo_gate_exit_codes(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "simple", "--url", server.grpc_url, "--concurrency", "2", *QUICK]
    assert main([*args, "--slo", "p99_ms=5000,error_rate=0"]) == 0
    capsys.readouterr()
    assert main([*args, "--slo", "p50_ms=0.001,min_rps=1e9"]) == 1
    err = capsys.readouterr().err
    assert "--slo: missed at concurrency 2: p50_ms is" in err and "target at most 0.001" in err
    assert "min_rps is" in err and "target at least 1e+09" in err


@pytest.mark.triton
def test_slo_on_errors_and_ttft(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    flaky = ["bench", "flaky", "--url", server.grpc_url, "--concurrency", "1", "--requests", "30", "--warmup", "0s"]
    assert main([*flaky, "--slo", "error_rate=0.5"]) == 0  # a third fail: counted, under the target
    assert main([*flaky, "--slo", "error_rate=0.1"]) == 1
    assert "error_rate is 0.3333" in capsys.readouterr().err
    # A classic model has no TTFT: a target on it is missed, never silently passed.
    assert main(["bench", "simple", "--url", server.grpc_url, "--concurrency", "1", *QUICK,
                 "--slo", "ttft_p99_ms=1000"]) == 1
    assert "ttft_p99_ms is not measured" in capsys.readouterr().err


@pytest.mark.triton
def test_percentiles_over_few_requests_are_flagged(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "simple", "--url", server.grpc_url, "--concurrency", "1", "--requests", "3",
                 "--warmup", "0s"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "note: too few requests for some percentiles (marked * in the tables)" in captured.err
    assert "concurrency 1 (3 ok requests): p90, p95, p99;" in captured.err
    row = next(line for line in captured.out.splitlines() if line.strip().startswith("│"))
    assert [cell.strip().endswith("*") for cell in row.split("│")[5:11]] == [False, True, True, True, False, False]


@pytest.mark.triton
def test_decoupled_model_needs_stream(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "tinyllm_bls", "--url", server.grpc_url, *QUICK]) == 1
    assert "is decoupled" in capsys.readouterr().err


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unknown_model_lists_the_served_ones(server: Server, protocol: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    assert main(["bench", "simpel", "--url", url, "--protocol", protocol, *QUICK]) == 1
    err = capsys.readouterr().err
    assert f"{url}: model 'simpel' is not served at {url}; ready models: flaky, simple, tinyllm, tinyllm_bls" in err
    assert err.rstrip().endswith("did you mean 'simple'?")
    assert "curl" not in err


@pytest.mark.triton
def test_json_prints_the_figures_on_stdout(server: Server, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "simple", "--url", server.grpc_url, "--concurrency", "1", "--json", "--timeout", "10",
                 "--save-json", str(tmp_path / "r.json"), *QUICK])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["model"] == "simple" and document["levels"][0]["ok"] > 0
    assert document == json.loads((tmp_path / "r.json").read_text())


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "1,x"], "--concurrency: takes comma-separated positive whole numbers"),
    (["--concurrency", "1.5"], "--concurrency: takes comma-separated positive whole numbers"),
    (["--request-rate", "0"], "--request-rate: takes comma-separated positive numbers"),
    (["--concurrency", "1", "--request-rate", "5"], "give --concurrency or --request-rate, not both"),
    (["--duration", "soon"], "--duration: must be a duration like 30s"),
    (["--requests", "0"], "--requests: must be at least 1"),
    (["--slo", "p42_ms=1"], "--slo: unknown target 'p42_ms'"),
    (["--slo", "p99_ms=fast"], "--slo: p99_ms needs a number"),
    (["--protocol", "smtp"], "--protocol: must be grpc or http"),
    (["--protocol", "http", "--stream"], "--stream: needs --protocol grpc"),
])
def test_bad_flags_are_user_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "any", "--url", "localhost:1", *args]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unreachable_server(protocol: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "simple", "--url", "localhost:1", "--protocol", protocol, "--duration", "1s"]) == 1
    err = capsys.readouterr().err
    assert err == (f"localhost:1: no Triton server answers at localhost:1 ({protocol}); start one with "
                   "`tritonkit serve REPO`, or pass the right --url and --protocol\n")


def test_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "simple", "--url", "localhost:1", "--timeout", "0"]) == 1
    assert "--timeout: must be more than 0 seconds" in capsys.readouterr().err
