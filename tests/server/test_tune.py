"""``tritonkit tune`` against a real tritonserver: a tiny space on add_sub, a refused candidate, resuming,
refusals of servers it cannot tune on, and the original config loaded back after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from tritonkit.cli import main
from tritonkit.runtime import Server
from tritonkit.write.generate import generate

pytestmark = pytest.mark.triton

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPEC = """\
triton: {version: "25.10"}
models:
  - name: add_sub   # the adder
    backend: python
    artifact: add_sub.py
    max_batch_size: 16
    input:
      - {name: INPUT0, data_type: FP32, dims: [4]}
      - {name: INPUT1, data_type: FP32, dims: [4]}
    output:
      - {name: SUM, data_type: FP32, dims: [4]}
      - {name: DIFF, data_type: FP32, dims: [4]}
    dynamic_batching:
      max_queue_delay_microseconds: 500   # a guess
    instance_group:
      - {kind: cpu, count: 2}   # a guess too
  - name: scale
    backend: python
    artifact: scale.py
    max_batch_size: 8
    input: [{name: INPUT, data_type: FP32, dims: [4]}]
    output: [{name: OUTPUT, data_type: FP32, dims: [4]}]
    parameters: {factor: 10}
"""
QUICK = ("--slo", "p99_ms=1000", "--concurrency", "4", "--duration", "0.4s", "--warmup", "0.1s",
         "--space", "max_batch_size=16", "--space", "preferred_batch_size=none")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    for name in ("add_sub.py", "scale.py"):
        (tmp_path / name).write_bytes((EXAMPLES / "models" / name).read_bytes())
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path / "spec.yaml"


@pytest.fixture
def explicit_server(spec: Path, tmp_path: Path) -> Iterator[Server]:
    """The spec's repository under explicit model control, add_sub loaded."""
    generate(spec, tmp_path / "out")
    with Server(tmp_path / "out" / "model_repository", model_control_mode="explicit", load_models=["add_sub"],
                exit_timeout_s=5.0) as server:
        yield server


def _config(server: Server) -> dict[str, object]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        return dict(client.get_model_config("add_sub", as_json=True)["config"])
    finally:
        client.close()


def test_tune_finds_writes_and_reports_and_records_a_refused_candidate(
        spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tune", str(spec), "--model", "add_sub", *QUICK, "--space", "instance_kind=cpu,gpu",
                 "--space", "instance_count=1,2", "--space", "max_queue_delay_microseconds=off,500"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((spec.parent / "tune-add_sub" / "tune.json").read_text())
    refused = [row for row in report["rows"] if row["status"] == "refused"]
    # This machine has no GPU: Triton refuses the KIND_GPU candidate with its own message; tune goes on.
    assert refused and refused[0]["values"]["instance_kind"] == "gpu" and "GPU" in refused[0]["note"]
    assert report["met"] and report["winner"]["instance_kind"] == "cpu"
    assert (spec.parent / "tune-add_sub" / "tune.png").stat().st_size > 0
    assert not (spec.parent / "tune-add_sub" / "resume.json").exists()  # finished: nothing to resume
    assert "the original config is loaded again" in captured.err
    text = spec.read_text()
    assert "# a guess too" in text and "# the adder" in text and "kind: cpu" in text
    winner = report["winner"]
    assert f"count: {winner['instance_count']}" in text


def test_an_interrupted_tune_resumes_from_its_file(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tune", str(spec), "--model", "add_sub", *QUICK, "--space", "instance_count=1,2,3",
            "--space", "max_queue_delay_microseconds=500", "--no-write-spec"]
    assert main([*args, "--max-runs", "1"]) == 0
    first = capsys.readouterr()
    resume = spec.parent / "tune-add_sub" / "resume.json"
    assert "stopped at --max-runs" in first.out and len(json.loads(resume.read_text())["runs"]) == 1
    assert main(args) == 0
    second = capsys.readouterr()
    assert "(1 replayed from the resume file)" in second.out
    assert "run 1 (from the resume file):" in second.err and "run 2:" in second.err


def test_a_server_without_model_control_is_refused_with_the_flag(spec: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    generate(spec, tmp_path / "out")
    with Server(tmp_path / "out" / "model_repository") as server:
        code = main(["tune", str(spec), "--model", "add_sub", *QUICK, "--url", server.grpc_url])
    err = capsys.readouterr().err
    assert code == 1
    assert "does not allow model control" in err and "--model-control-mode explicit" in err


def test_other_tenants_and_a_missing_key_are_refused(spec: Path, explicit_server: Server,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tune", str(spec), "--model", "add_sub", *QUICK, "--url", explicit_server.grpc_url,
                 "--admin-key", "wrong"])
    assert code == 1 and "pass --admin-key KEY" in capsys.readouterr().err
    client = grpcclient.InferenceServerClient(explicit_server.grpc_url)
    headers = explicit_server.admin_headers("grpc")
    other = {**_config(explicit_server), "name": "other"}
    other.pop("instance_group")
    files = {"file:1/model.py": (EXAMPLES / "models" / "add_sub.py").read_bytes()}
    client.load_model("other", headers=headers, config=json.dumps(other), files=files)
    try:
        code = main(["tune", str(spec), "--model", "add_sub", *QUICK, "--url", explicit_server.grpc_url,
                     "--admin-key", explicit_server.admin_key])
        err = capsys.readouterr().err
        assert code == 1 and "also serves models the spec does not have: other" in err
        assert "--allow-other-models" in err
    finally:
        client.unload_model("other", headers=headers)
        client.close()


def test_ctrl_c_leaves_the_original_config_loaded(spec: Path, explicit_server: Server) -> None:
    before = _config(explicit_server)
    command = [sys.executable, "-m", "tritonkit", "tune", str(spec), "--model", "add_sub", "--slo", "p99_ms=1000",
               "--concurrency", "4", "--duration", "30s", "--warmup", "0.1s", "--url", explicit_server.grpc_url,
               "--space", "instance_count=1,3", "--space", "max_queue_delay_microseconds=0",
               "--space", "max_batch_size=16", "--space", "preferred_batch_size=none"]
    env = {**os.environ, "TRITONKIT_ADMIN_KEY": explicit_server.admin_key}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first candidate is loaded and being measured
        if _config(explicit_server)["instance_group"] != before["instance_group"]:
            break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("tune never loaded a candidate: " + process.stderr.read())
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 130, err
    # The 30 s measurement ends at Ctrl-C, not at its end (what is left is putting the original config back).
    assert time.monotonic() - interrupted < 20, err
    assert "the original config is loaded again" in err
    after = _config(explicit_server)
    assert after["instance_group"] == before["instance_group"]
    assert after["dynamic_batching"] == before["dynamic_batching"]
