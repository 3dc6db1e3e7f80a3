"""The scaling signal of k8s/ against a real Triton: a real Prometheus evaluates the generated recording rules
while a load loop saturates the model; KEDA's query rises above its threshold, then falls below when idle.

The PodMonitor's labels (``namespace``, ``app_kubernetes_io_name``) are set on a static scrape target, as the
prometheus-operator sets them on a pod's series.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports
from tritonkit.write.generate import generate

pytestmark = pytest.mark.triton
ROOT = Path(__file__).resolve().parents[2]
SPEC = """\
triton: {version: "25.10"}
models:
  - name: slow
    backend: python
    artifact: sleeper.py
    max_batch_size: 0
    input: [{name: SECONDS, data_type: FP32, dims: [1]}]
    output: [{name: SLEPT, data_type: FP32, dims: [1]}]
    instance_group: [{kind: cpu, count: 1}]
deploy:
  kubernetes:
    name: slow
    namespace: serving
    autoscaling: {window_s: 10, polling_interval_s: 1}
"""




def _query(base: str, query: str) -> float:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as reply:
        data = json.loads(reply.read().decode())
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _wait_for(base: str, query: str, test: Callable[[float], bool], timeout_s: float) -> list[float]:
    seen: list[float] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            seen.append(_query(base, query))
        except (urllib.error.URLError, ConnectionError):
            continue
        if test(seen[-1]):
            return seen
    raise AssertionError(f"{query} never passed the test within {timeout_s} s; seen {seen}")


def _load(server: Server, stop: threading.Event) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("SECONDS", [1], "FP32")
    tensor.set_data_from_numpy(np.array([0.02], dtype=np.float32))
    while not stop.is_set():
        client.infer("slow", [tensor])
    client.close()


def _prometheus(tmp_path: Path, server: Server, groups: list[dict[str, Any]],
                binary: str) -> tuple[subprocess.Popen[bytes], str]:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    target = {"targets": [server.metrics_url.split("/")[2]],
              "labels": {"namespace": "serving", "app_kubernetes_io_name": "slow", "pod": "slow-0"}}
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "triton", "static_configs": [target]}]}), encoding="utf-8")
    port = free_ports(1)[0]
    with (tmp_path / "prometheus.log").open("wb") as sink:
        process = subprocess.Popen([binary, f"--config.file={config}",
                                    f"--storage.tsdb.path={tmp_path / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=sink, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def test_scaling_metric_crosses_its_threshold_under_load_and_falls_back_when_idle(
        tmp_path: Path, triton_server: Callable[..., Server], installed: Callable[[str], str]) -> None:
    binary = installed("prometheus")
    shutil.copy(ROOT / "tests" / "fixtures" / "repos" / "basic" / "sleeper" / "1" / "model.py", tmp_path / "sleeper.py")
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    generate(tmp_path / "spec.yaml", tmp_path / "out")
    k8s = tmp_path / "out" / "k8s"
    groups = yaml.safe_load((k8s / "prometheusrule.yaml").read_text(encoding="utf-8"))["spec"]["groups"]
    [trigger] = yaml.safe_load((k8s / "scaledobject.yaml").read_text(encoding="utf-8"))["spec"]["triggers"]
    query, threshold = trigger["metadata"]["query"], float(trigger["metadata"]["threshold"])
    server = triton_server(tmp_path / "out" / "model_repository")
    prometheus, base = _prometheus(tmp_path, server, groups, binary)
    stop = threading.Event()
    workers = [threading.Thread(target=_load, args=(server, stop), daemon=True) for _ in range(8)]
    try:
        for worker in workers:
            worker.start()
        # Eight clients on one instance that takes 20 ms a request: about 7 wait for each one served.
        loaded = _wait_for(base, query, lambda value: value > threshold, 60)
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        idle = _wait_for(base, query, lambda value: value < threshold, 60)
        print(f"{query}: under load {loaded[-1]:.2f}, idle {idle[-1]:.2f} (threshold {threshold})")
    finally:
        stop.set()
        prometheus.terminate()
        prometheus.wait(timeout=30)
