"""deploy.kubernetes: the rendered k8s/ folder, its strict validation, and located errors for bad input."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tritonkit.errors import SpecError
from tritonkit.model.repository import build_repository
from tritonkit.render.repository import render_tree
from tritonkit.spec.load import load_spec
from tritonkit.validate import validate_k8s_files, validate_k8s_folder
from tritonkit.write.generate import check_spec, generate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "trtllm_llmapi.yaml"

CLASSIC = """\
triton: {version: "25.10"}
models:
  - name: add_sub
    backend: python
    artifact: add_sub.py
    max_batch_size: 8
    input:  [{name: INPUT0, data_type: FP32, dims: [4]}, {name: INPUT1, data_type: FP32, dims: [4]}]
    output: [{name: OUTPUT0, data_type: FP32, dims: [4]}, {name: OUTPUT1, data_type: FP32, dims: [4]}]
    dynamic_batching: {}
    instance_group: [{kind: cpu, count: 3}]
deploy:
  kubernetes:
"""


def _spec(tmp_path: Path, kubernetes: str = "    namespace: serving\n", extra: str = "") -> Path:
    shutil.copy(ROOT / "examples" / "models" / "add_sub.py", tmp_path / "add_sub.py")
    path = tmp_path / "spec.yaml"
    path.write_text(CLASSIC + textwrap.indent(textwrap.dedent(kubernetes), "    ") + extra, encoding="utf-8")
    return path


def _k8s(spec: Path) -> dict[str, bytes]:
    loaded = load_spec(spec)
    tree = render_tree(build_repository(loaded), {}, spec.name)
    return {p: d for p, d in tree.items() if p.startswith("k8s/") and isinstance(d, bytes)}


def _doc(files: dict[str, bytes], name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(files[f"k8s/{name}"])
    return loaded


def _errors(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        build_repository(load_spec(spec, spec.name))
    return [p.format() for p in caught.value.problems]


def test_gpu_example_writes_k8s_that_validates_strictly_with_no_warning(tmp_path: Path) -> None:
    generate(EXAMPLE, tmp_path)
    names = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert names == ["deployment.yaml", "kustomization.yaml", "pdb.yaml", "podmonitor.yaml", "prometheusrule.yaml",
                     "repository.Dockerfile", "scaledobject.yaml", "secrets.env.example", "service.yaml"]
    report = validate_k8s_folder(tmp_path / "k8s")
    assert report.errors == [] and report.warnings == []
    kustomization = yaml.safe_load((tmp_path / "k8s" / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["metadata"]["annotations"]["tritonkit.io/kubernetes-versions"] == "1.30,1.33"
    assert set(kustomization["resources"]) == {"deployment.yaml", "service.yaml", "pdb.yaml", "podmonitor.yaml",
                                               "prometheusrule.yaml", "scaledobject.yaml"}


def test_deployment_reuses_the_compose_command_and_sizes_gpus_shm_and_probes(tmp_path: Path) -> None:
    files = _k8s(EXAMPLE)
    compose = yaml.safe_load(render_tree(build_repository(load_spec(EXAMPLE)), {}, "x")["docker/docker-compose.yml"])
    pod = _doc(files, "deployment.yaml")["spec"]["template"]["spec"]
    triton = pod["containers"][0]
    assert triton["image"] == compose["services"]["triton"]["image"]
    expected = [a.replace("${TRITON_ADMIN_KEY:?set TRITON_ADMIN_KEY in docker/.env}", "$(TRITON_ADMIN_KEY)")
                for a in compose["services"]["triton"]["command"]]
    assert triton["command"] == expected and "$(TRITON_ADMIN_KEY)" in " ".join(expected)
    assert triton["resources"]["limits"] == {"nvidia.com/gpu": 2}  # tensor_parallel_size 2
    ready, live = (" ".join(triton[probe]["exec"]["command"]) for probe in ("readinessProbe", "livenessProbe"))
    assert "http://localhost:8000/v2/health/ready" in ready and "http://localhost:8000/v2/health/live" in live
    assert "(triton_python_b) Z" in live and "(triton_python_b) Z" in ready
    assert triton["startupProbe"]["failureThreshold"] * triton["startupProbe"]["periodSeconds"] == 900
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    init = pod["initContainers"][0]
    assert init["image"].startswith("registry.example.com/llm/llama-model-repository:")


def test_classic_spec_scales_on_queue_compute_ratio(tmp_path: Path) -> None:
    files = _k8s(_spec(tmp_path))
    scaled = _doc(files, "scaledobject.yaml")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 4)
    [trigger] = scaled["triggers"]
    assert trigger["metricType"] == "Value" and trigger["metadata"]["threshold"] == "1"
    assert trigger["metadata"]["query"].startswith("sum(tritonkit:queue_compute:ratio{")
    triton = _doc(files, "deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert "resources" not in triton  # CPU-only models ask for no GPU
    records = [r["record"] for r in _doc(files, "prometheusrule.yaml")["spec"]["groups"][0]["rules"]]
    assert "tritonkit:queue_compute:ratio" in records and 'model=~"add_sub"' in str(_doc(files, "prometheusrule.yaml"))
    assert validate_k8s_files(files, ["1.29", "1.33"]).ok


def test_spec_thresholds_min_max_and_scale_to_zero_reach_the_scaled_object(tmp_path: Path) -> None:
    spec = _spec(tmp_path, """\
        min_replicas: 2
        max_replicas: 9
        scale_to_zero: true
        autoscaling: {metric: replicas_needed, threshold: 2.5, wake_query: 'sum(rate(ingress_requests_total[1m]))'}
        repository: {kind: pvc, claim_name: models}
    """)
    files = _k8s(spec)
    scaled = _doc(files, "scaledobject.yaml")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 9)
    main, wake = scaled["triggers"]
    assert (main["metricType"], main["metadata"]["threshold"]) == ("AverageValue", "2.5")
    assert "replicas_needed" in main["metadata"]["query"]
    assert wake["metadata"]["activationThreshold"] == "0"
    pod = _doc(files, "deployment.yaml")["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "k8s/repository.Dockerfile" not in files
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert validate_k8s_files(files, ["1.31"]).ok


def test_min_above_max_replicas_names_the_line(tmp_path: Path) -> None:
    errors = _errors(_spec(tmp_path, "min_replicas: 5\nmax_replicas: 2\n"))
    assert errors == ["spec.yaml:13:19: deploy.kubernetes.min_replicas is 5, above max_replicas (2); "
                      "raise max_replicas or lower min_replicas"]


def test_gpu_count_no_node_type_offers(tmp_path: Path) -> None:
    errors = _errors(_spec(tmp_path, "gpus_per_pod: 4\nnode_gpus: [1, 2]\n"))
    assert len(errors) == 1 and errors[0].startswith("spec.yaml:13:19: deploy.kubernetes.gpus_per_pod leaves a pod "
                                                     "needing 4 GPUs, which no node type offers")


def test_tensor_parallel_larger_than_any_node(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("node_gpus: [8]", "node_gpus: [1]")
    (tmp_path / "llm.yaml").write_text(text, encoding="utf-8")
    errors = _errors(tmp_path / "llm.yaml")
    assert len(errors) == 1 and "node_gpus leaves a pod needing 2 GPUs" in errors[0]


def test_metric_triton_does_not_export(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(_spec(tmp_path, "autoscaling: {metric: nv_inference_queue_duration}\n"), "spec.yaml")
    [problem] = caught.value.problems
    assert problem.line == 13
    assert "neither a tritonkit signal nor a metric Triton exports" in problem.message
    assert "did you mean 'nv_inference_queue_duration_us'?" in problem.message


def test_triton_metric_needs_a_threshold_and_then_gets_its_own_rule(tmp_path: Path) -> None:
    errors = _errors(_spec(tmp_path, "autoscaling: {metric: nv_gpu_utilization}\n"))
    assert "has no default threshold" in errors[0]
    files = _k8s(_spec(tmp_path, "autoscaling: {metric: nv_inference_exec_count, threshold: 200}\n"))
    [rule] = _doc(files, "prometheusrule.yaml")["spec"]["groups"][0]["rules"]
    assert rule["record"] == "tritonkit:nv_inference_exec_count:sum" and "rate(nv_inference_exec_count{" in rule["expr"]


def test_shm_smaller_than_python_instances_need(tmp_path: Path) -> None:
    errors = _errors(_spec(tmp_path, "shm_size: 128Mi\n"))
    assert errors == ["spec.yaml:13:15: deploy.kubernetes.shm_size is 128Mi (128 MiB), less than the 192 MiB that "
                      "3 Python-backend instance(s) need (64 MiB each); set it to 192Mi or more, or remove it to "
                      "size it from the instances"]


def test_scale_to_zero_without_a_wake_query_and_restricted_health(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "scale_to_zero: true\n")
    text = spec.read_text(encoding="utf-8").replace("deploy:\n", "deploy:\n  restricted_apis: [health]\n")
    spec.write_text(text, encoding="utf-8")
    errors = _errors(spec)
    assert any("scale_to_zero needs autoscaling.wake_query" in e for e in errors)
    assert any("restricts health, but Kubernetes probes cannot send" in e for e in errors)


def test_validation_finds_broken_manifests_at_file_and_line(tmp_path: Path) -> None:
    files = _k8s(_spec(tmp_path))
    deployment = files["k8s/deployment.yaml"].decode().replace("periodSeconds: 5", "periodSecs: 5", 1)
    scaled = files["k8s/scaledobject.yaml"].decode().replace("pollingInterval:", "pollingIntervl:")
    pdb = files["k8s/pdb.yaml"].decode().replace("policy/v1", "policy/v1beta1")
    broken = {**files, "k8s/deployment.yaml": deployment.encode(), "k8s/scaledobject.yaml": scaled.encode(),
              "k8s/pdb.yaml": pdb.encode()}
    report = validate_k8s_files(broken, ["1.31"])
    found = {(p.path, p.line): p.message for p in report.errors}
    line = next(i for i, text in enumerate(deployment.splitlines(), 1) if "periodSecs" in text)
    assert "'periodSecs' was unexpected" in found[("k8s/deployment.yaml", line)]
    assert any(path == "k8s/scaledobject.yaml" and "'pollingIntervl' was unexpected" in m
               for (path, _), m in found.items())
    assert "policy/v1beta1" in found[("k8s/pdb.yaml", 2)]


def test_validate_spec_reports_the_rendered_k8s(tmp_path: Path) -> None:
    report = check_spec(_spec(tmp_path, "versions: ['1.24']\n"))
    assert [p.message for p in report.errors] and all("no schemas for Kubernetes 1.24" in p.message
                                                      for p in report.errors)
