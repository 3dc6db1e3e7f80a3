"""The streaming layout's two fronts, ``<name>`` (unary) and ``<name>_bls``, under sustained concurrent load.

With an engine that echoes the prompt at once, so that the fronts and Triton's hops are all the work. Before
the fix in ``llm_prompt.StreamKeeper`` the unary front's stub died with a segfault in about two runs of three
of 3,000 requests at concurrency 8 (on 2 cores); the test fails whenever any request fails.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import tritonclient.grpc as grpcclient

from tritonkit.runtime import Server
from tritonkit.write.generate import generate

pytestmark = [pytest.mark.triton, pytest.mark.llm]

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "llm_overhead.py"
CONCURRENCY = 8
PER_CLIENT = 375  # 3,000 requests per front


def _overhead_module() -> Any:
    spec = importlib.util.spec_from_file_location("llm_overhead", _BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _overhead_module()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, triton_server_module: Callable[..., Server]) -> Server:
    root = tmp_path_factory.mktemp("fronts")
    (root / "tritonkit.yaml").write_text(BENCH.SPEC.format(streaming="true"))
    generate(root / "tritonkit.yaml", root)
    for model_py in (root / "model_repository" / "smollm2_engine").glob("*/model.py"):
        model_py.write_text(BENCH.ECHO_ENGINE)
    return triton_server_module(root / "model_repository", startup_timeout_s=400.0)


def _load(server: Server, client: Callable[[str, int, list[float]], None]) -> list[str]:
    failures: list[str] = []

    def run() -> None:
        try:
            client(server.grpc_url, PER_CLIENT, [])
        except Exception as exc:  # every failure is reported below, with its message
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.mark.parametrize("front", ["ensemble", "bls"])
def test_front_serves_3000_requests_at_concurrency_8(server: Server, front: str) -> None:
    client = BENCH._bls_client if front == "bls" else BENCH._ensemble_client
    assert _load(server, client) == []
    after = grpcclient.InferenceServerClient(server.grpc_url)
    assert after.is_model_ready("smollm2") and after.is_model_ready("smollm2_bls")
    assert after.infer("smollm2", BENCH._inputs(False)).as_numpy("text_output").reshape(-1)[0]
