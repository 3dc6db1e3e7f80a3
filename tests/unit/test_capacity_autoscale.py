"""The autoscaling simulation: the generated ScaledObject's rule and threshold, replayed on a load curve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tritonkit.capacity.autoscale import (
    AutoscalePolicy,
    default_policy,
    erlang_c,
    load_curve,
    policy_from_plan,
    simulate,
    summary,
)
from tritonkit.model.repository import build_repository
from tritonkit.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[2]


def test_erlang_c_matches_mm1_and_textbook_mmc() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # M/M/2 at a = 1
    assert erlang_c(3, 3.0) == 1.0


def test_load_curve_is_piecewise_linear_and_checked() -> None:
    rate = load_curve("0:10,100:20")
    assert (rate(-5), rate(50), rate(100), rate(500)) == (10, 15, 20, 20)
    with pytest.raises(ValueError, match="time:rate"):
        load_curve("0:10,100")
    with pytest.raises(ValueError, match="ascending"):
        load_curve("10:1,5:2")


def test_policy_comes_from_the_generated_scaled_object() -> None:
    plan = build_repository(load_spec(ROOT / "examples" / "trtllm_llmapi.yaml")).kubernetes
    assert plan is not None
    policy = policy_from_plan(plan)
    assert (policy.signal, policy.threshold, policy.metric_type) == ("inflight_requests", 48, "AverageValue")
    assert (policy.min_replicas, policy.max_replicas, policy.polling_interval_s) == (1, 4, 15)


def test_a_steady_load_settles_on_the_replicas_littles_law_asks_for() -> None:
    # 100 req/s x 0.1 s = 10 requests in the system; threshold 2 per replica -> 5 replicas, little queueing.
    policy = AutoscalePolicy("inflight_requests", 2.0, "AverageValue", min_replicas=1, max_replicas=10)
    ticks = simulate(policy, service_s=0.1, slots=4, rate=load_curve("0:100"), duration_s=900, startup_s=30)
    assert ticks[-1].desired == ticks[-1].ready == 5
    assert ticks[-1].queue_ms < 1.0
    # Scale-up is paced: at most 2 more pods per 15 s polling interval.
    assert all(b.desired - a.desired <= 2 for a, b in zip(ticks, ticks[1:]))


def test_a_spike_queues_until_pods_start_then_drains() -> None:
    policy = default_policy("inflight_requests", 0.75)
    ticks = simulate(policy, service_s=0.02, slots=1, rate=load_curve("0:5,60:5,61:120,600:120"),
                     duration_s=600, startup_s=60)
    during = [t for t in ticks if 75 <= t.time_s <= 120]
    assert max(t.queue_ms for t in during) > 1000  # one replica (50 req/s) cannot hold 120 req/s
    assert ticks[-1].queue_ms < 5 and ticks[-1].ready >= 3
    facts = summary(ticks, policy.polling_interval_s)
    assert facts["peak_replicas"] == 4 and facts["peak_queue_ms"] > 1000


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    policy = AutoscalePolicy("inflight_requests", 1.0, "AverageValue", max_replicas=8, scale_down_window_s=300)
    ticks = simulate(policy, service_s=0.1, slots=1, rate=load_curve("0:40,300:40,301:1"), duration_s=900,
                     startup_s=15)
    # 40 req/s x 0.1 s = 4 in flight: at least 4 pods; the load falls to 1 req/s at 300 s, yet the count holds
    # (what was asked within the last 300 s), then falls to the minimum.
    assert all(t.desired >= 4 for t in ticks if 120 <= t.time_s < 600)
    assert ticks[-1].desired == 1


def test_the_script_reads_a_bench_json_and_prints_a_summary(tmp_path: Path) -> None:
    bench = {"levels": [{"level": 1, "latency_ms": {"mean": 20.0}}, {"level": 4, "latency_ms": {"mean": 40.0}}]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench), encoding="utf-8")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "autoscale_sim.py"), "--bench-json", str(path),
                           "--level", "4", "--load", "0:10,300:200", "--duration", "600", "--signal",
                           "replicas_needed", "--json"], capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    assert report["slots"] == 4 and report["capacity_rps_per_replica"] == pytest.approx(100.0)
    assert report["policy"]["threshold"] == 1.5 and report["policy"]["metric_type"] == "AverageValue"
    assert report["summary"]["peak_replicas"] >= 2
