"""Every recording rule of the generated PrometheusRule, unit-tested with ``promtool test rules``.

Two pods of the Deployment serve ``add_sub``; a third series belongs to another app and must not count.
Per pod and per 15 s: queue 30 s, compute 15 s, request 60 s (in microseconds), 75 successes; pending 3 and 5.
So, summed: queue 4e6 us/s, compute 2e6 us/s, request 8e6 us/s, 10 requests/s, 8 pending, 2 ready pods.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Callable

import yaml
from test_k8s import _spec

from tritonkit.model.repository import build_repository
from tritonkit.render.repository import render_tree
from tritonkit.spec.load import load_spec

#: What each record must evaluate to (rounded to 0.001) for the series above.
EXPECTED = {
    "tritonkit:queue_duration_us:rate": 4e6,
    "tritonkit:compute_infer_duration_us:rate": 2e6,
    "tritonkit:request_duration_us:rate": 8e6,
    "tritonkit:request_success:rate": 10,
    "tritonkit:pending_requests:sum": 8,
    "tritonkit:ready_pods:count": 2,
    "tritonkit:queue_compute:ratio": 2,
    "tritonkit:queue_time_us:average": 400000,
    "tritonkit:inflight_requests:estimate": 8,
    # 8 requests in the system over (8e6 - 4e6) / 1e6 / 2 = 2 in service per replica: 4 replicas needed.
    "tritonkit:replicas_needed:estimate": 4,
}



def _series(app: str, pod: str, metric: str, step: float, model: str = "add_sub") -> dict[str, str]:
    labels = f'namespace="serving",app_kubernetes_io_name="{app}",pod="{pod}",model="{model}"'
    return {"series": f"{metric}{{{labels}}}", "values": f"0+{step:g}x40"}


def _inputs() -> list[dict[str, str]]:
    per_pod = {"nv_inference_queue_duration_us": 30e6, "nv_inference_compute_infer_duration_us": 15e6,
               "nv_inference_request_duration_us": 60e6, "nv_inference_request_success": 75}
    series = []
    for pod, pending in (("a", 3), ("b", 5)):
        series += [_series("spec", pod, metric, step) for metric, step in per_pod.items()]
        series.append({"series": f'nv_inference_pending_request_count{{namespace="serving",app_kubernetes_io_name='
                                 f'"spec",pod="{pod}",model="add_sub"}}', "values": f"{pending}x40"})
        series.append({"series": f'up{{namespace="serving",app_kubernetes_io_name="spec",pod="{pod}"}}',
                       "values": "1x40"})
    # Another app in the namespace, and an ensemble of this one: neither may count.
    series.append(_series("other", "c", "nv_inference_queue_duration_us", 1e9))
    series.append(_series("spec", "a", "nv_inference_queue_duration_us", 1e9, model="ensemble"))
    series.append({"series": 'up{namespace="serving",app_kubernetes_io_name="spec",pod="d"}', "values": "0x40"})
    return series


def _rule_groups(tmp_path: Path) -> list[dict[str, Any]]:
    spec = _spec(tmp_path)
    tree = render_tree(build_repository(load_spec(spec)), {}, spec.name)
    data = tree["k8s/prometheusrule.yaml"]
    assert isinstance(data, bytes)
    groups: list[dict[str, Any]] = yaml.safe_load(data)["spec"]["groups"]
    return groups


def test_promtool_checks_and_unit_tests_every_recording_rule(tmp_path: Path,
                                                             installed: Callable[[str], str]) -> None:
    promtool = installed("promtool")
    groups = _rule_groups(tmp_path)
    records = [rule["record"] for group in groups for rule in group["rules"]]
    assert sorted(records) == sorted(EXPECTED), "every recording rule needs an expected value here"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    selector = '{namespace="serving",app_kubernetes_io_name="spec",signal_group="classic"}'
    labels = {"namespace": "serving", "app_kubernetes_io_name": "spec", "signal_group": "classic"}
    exprs = [{"expr": f"round({record}{selector}, 0.001)", "eval_time": "5m",
              "exp_samples": [{"labels": "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}",
                               "value": value}]} for record, value in EXPECTED.items()]
    tests = tmp_path / "tests.yml"
    tests.write_text(yaml.safe_dump({
        "rule_files": [rules.name], "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": _inputs(), "promql_expr_test": exprs}]}), encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
