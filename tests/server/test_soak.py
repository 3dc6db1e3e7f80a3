"""A short soak of the default example under `tritonkit serve`: classic load, greedy LLM streams and poison.

The same mix as benchmarks/soak.py (which runs it for ten minutes and prints the figures), for 45 seconds:
nothing lost or wrong, every malformed request refused naming its input, memory back near its level after
warm-up, the server ready throughout, and Ctrl-C ending serve with exit code 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.triton, pytest.mark.llm, pytest.mark.timeout(900)]

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import soak  # noqa: E402  (the benchmark's own driver, found through the path set just above)


def test_a_short_soak_loses_nothing_and_refuses_every_malformed_request(tmp_path: Path) -> None:
    with soak.served_default_example(tmp_path) as (process, endpoints):
        report = soak.run_soak(endpoints["grpc"], endpoints["http"], soak._server_pid(process.pid), duration_s=45,
                               add_sub_clients=4, streams=2, malformed_per_s=5.0)
        report.exit_code = soak.stop_with_ctrl_c(process)
    print(report.summary())
    assert report.add_sub_requests > 100 and report.add_sub_errors == []
    assert report.llm_answers >= 4 and report.llm_wrong == [] and report.llm_lost == 0
    assert set(report.malformed) == set(soak.MALFORMED) and report.malformed_wrong == []
    assert report.clamped_answered >= 1
    # The benchmark quotes the real figure; here only that no refusal waited behind a generation.
    assert report.malformed_p99_ms() < 1000
    assert report.not_ready_seen == 0
    assert report.memory_after_load_mib <= 1.10 * report.memory_after_warmup_mib
    assert report.exit_code == 0
