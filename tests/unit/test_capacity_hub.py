"""``plan --model hf:<org>/<name>``: config.json from a Hugging Face cache laid out as huggingface_hub lays it out.

Every test runs with ``HF_HUB_OFFLINE=1`` and a cache in ``tmp_path``: nothing reaches the network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tritonkit.capacity import PlanError, load_architecture, parameter_count
from tritonkit.capacity.hub import cache_folder, hub_cache_dir

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
# The fields of SmolLM2-135M-Instruct's config.json on the hub that the planner reads, and a few others.
SMOLLM2_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "vocab_size": 49152,
    "max_position_embeddings": 8192, "tie_word_embeddings": True, "rms_norm_eps": 1e-05,
    "torch_dtype": "bfloat16",
}


def put_in_cache(cache: Path, repo: str, config: dict[str, object], commit: str, main: bool = True) -> Path:
    """Store config.json the way huggingface_hub does: a blob named by its hash, a snapshot link, refs/main."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    data = json.dumps(config).encode()
    blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").symlink_to(Path("..", "..", "blobs", blob.name))
    if main:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
    return snapshot / "config.json"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


def test_a_cached_model_plans_from_its_config(cache: Path) -> None:
    stored = put_in_cache(cache, REPO, SMOLLM2_CONFIG, "12fd25f77366fa6b3b4b768ec3050bf629380bac")
    arch = load_architecture(f"hf:{REPO}")
    assert arch.name == REPO and arch.source == str(stored)
    assert (arch.layers, arch.heads, arch.kv_heads, arch.head_dim) == (30, 9, 3, 64)
    assert arch.tied_embeddings and arch.max_context == 8192
    assert parameter_count(arch) == parameter_count(load_architecture("smollm2-135m"))


def test_huggingface_hub_reads_the_same_layout(cache: Path) -> None:
    # The cache built here is the one huggingface_hub itself reads: it finds the same file.
    from huggingface_hub import try_to_load_from_cache

    stored = put_in_cache(cache, REPO, SMOLLM2_CONFIG, "0123abcd")
    assert try_to_load_from_cache(REPO, "config.json", cache_dir=str(cache)) == str(stored)
    assert load_architecture(f"hf:{REPO}").source == str(stored)


def test_refs_main_picks_the_snapshot(cache: Path) -> None:
    older = {**SMOLLM2_CONFIG, "num_hidden_layers": 12}
    put_in_cache(cache, REPO, older, "1111", main=False)
    put_in_cache(cache, REPO, SMOLLM2_CONFIG, "2222")
    assert load_architecture(f"hf:{REPO}").layers == 30
    (cache_folder(REPO, cache) / "refs" / "main").write_text("1111")
    assert load_architecture(f"hf:{REPO}").layers == 12


def test_offline_and_not_cached_says_where_to_put_the_file(cache: Path) -> None:
    put_in_cache(cache, "HuggingFaceTB/SmolLM2-360M-Instruct", SMOLLM2_CONFIG, "3333")  # another model only
    with pytest.raises(PlanError) as caught:
        load_architecture(f"hf:{REPO}")
    problem = caught.value.first
    expected = cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / "main" / "config.json"
    assert "is not in the Hugging Face cache" in problem.message and "HF_HUB_OFFLINE is set" in problem.message
    assert problem.hint is not None and f"put the model's config.json at {expected}" in problem.hint
    assert "--model PATH/config.json" in problem.hint


def test_the_file_put_where_the_message_says_is_read(cache: Path) -> None:
    with pytest.raises(PlanError) as caught:
        load_architecture(f"hf:{REPO}")
    hint = caught.value.first.hint or ""
    where = Path(hint.split("put the model's config.json at ", 1)[1].split(" (", 1)[0])
    where.parent.mkdir(parents=True)
    where.write_text(json.dumps(SMOLLM2_CONFIG))  # a plain file, no refs/: the fallback name "main"
    assert load_architecture(f"hf:{REPO}").layers == 30


@pytest.mark.parametrize("source", ["hf:", "hf:org/name/extra", "hf:../secrets", "hf:org--x/name", "hf:a b"])
def test_malformed_ids_are_refused(cache: Path, source: str) -> None:
    with pytest.raises(PlanError, match="is not a Hugging Face model id"):
        load_architecture(source)


def test_cache_location_follows_huggingface_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert hub_cache_dir() == tmp_path / "hfhome" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hubcache"))
    assert hub_cache_dir() == tmp_path / "hubcache"
