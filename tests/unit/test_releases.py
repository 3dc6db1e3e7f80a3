"""tritonkit.triton.releases: the NGC release matrix as data, and what each release can run."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from tritonkit.triton import releases
from tritonkit.triton.releases import (
    LLM_ARG_KEYS,
    LLMAPI_TENSOR_SINCE,
    NEWER_LLM_KEYS,
    PRECISION_FLAGS,
    Release,
    check_llm_key,
    check_vllm_key,
    closest_key,
    has_engine_backend,
    has_llmapi_model,
    known_releases,
    last_engine_release,
    llmapi_tensor_available,
    newest_release,
    precision_fix,
    precision_removal,
    release,
    takes_precision_flags,
    trtllm_image_gap,
    version_at_least,
)

_ROWS = json.loads(resources.files("tritonkit.triton").joinpath("ngc_releases.json").read_text("utf-8"))


def test_every_monthly_release_from_24_10_to_26_11_is_known_in_order() -> None:
    expected = [f"{year}.{month:02d}" for year in (24, 25, 26) for month in range(1, 13)]
    expected = expected[expected.index("24.10"): expected.index("26.11") + 1]
    assert list(known_releases()) == expected


def test_rows_carry_the_matrix_values_and_a_source() -> None:
    rel = release("26.04")
    assert rel == Release("26.04", "2.68.0", "1.2.1", "0.19.0", rel.source, "10.14.1.48", rel.urls)
    assert release("25.07").triton == "2.59.1"
    assert release("25.11").trtllm == "1.0.3.2510"
    assert release("25.06").vllm == "0.9.0rc1"
    assert release("25.01").tensorrt == "10.8.0.43" and release("24.10").tensorrt == "10.4.0"
    assert all(release(ngc).source for ngc in known_releases())


def test_every_row_names_the_public_pages_it_was_read_from() -> None:
    for ngc in known_releases():
        urls = release(ngc).urls
        assert urls and all(url.startswith("https://") for url in urls), ngc
        assert not any("/work/" in url or "shared" in url for url in urls), ngc


def test_releases_after_26_07_are_the_github_releases_triton_versions() -> None:
    assert [release(ngc).triton for ngc in ("26.08", "26.09", "26.10", "26.11")] == \
        ["2.72.0", "2.73.0", "2.74.0", "2.75.0"]
    assert all(f"releases/tag/v2.{72 + i}.0" in " ".join(release(ngc).urls)
               for i, ngc in enumerate(("26.08", "26.09", "26.10", "26.11")))


def test_what_is_not_documented_stays_none() -> None:
    assert release("26.08").trtllm is None and release("26.08").vllm == "0.27.1"
    for ngc in ("26.08", "26.09", "26.10", "26.11"):
        assert release(ngc).trtllm is None and release(ngc).tensorrt is None, ngc
    for ngc in ("26.09", "26.10", "26.11"):
        assert release(ngc).vllm is None, ngc


def test_conflicts_and_gaps_are_noted_in_the_data() -> None:
    notes = {row["ngc"]: row.get("note", "") for row in _ROWS["releases"]}
    assert "0.15.0" in notes["24.12"] and "conflict" in notes["24.12"]
    assert all("gap" in notes[ngc] for ngc in ("26.08", "26.09", "26.10", "26.11"))


def test_an_unknown_release_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        release("23.01")


def test_newest_release() -> None:
    assert newest_release().ngc == "26.11"
    assert newest_release(with_trtllm=True).ngc == "26.07" == _ROWS["trtllm_image"]["last_documented"]


def test_releases_without_a_documented_trtllm_image_say_why_in_the_sources_words() -> None:
    assert trtllm_image_gap(release("26.07")) is None
    assert trtllm_image_gap(release("26.09")) == (
        "NGC 26.09 documents no -trtllm-python-py3 image: NVIDIA's compatibility matrix lists TensorRT-LLM images up "
        "to 26.07 (TensorRT-LLM 1.2.1), and the 26.11 release says \"The Triton TensorRT-LLM Backend container image "
        "is not included in this release.\"")
    assert all(trtllm_image_gap(release(ngc)) for ngc in ("26.08", "26.10", "26.11"))


def test_the_last_release_with_the_engine_backend_is_26_07() -> None:
    assert last_engine_release() == release("26.07")


@pytest.mark.parametrize(("version", "minimum", "expected"), [
    ("1.0.3.2510", "1.0.3", True),
    ("1.0.3.2510", "1.1", False),
    ("0.17.0.post1", "0.17.0", True),
    ("0.17.0", "0.17.0.post1", False),
    ("0.9.0rc1", "0.9.0", False),
    ("0.9.0rc1", "0.8.4", True),
    ("0.27.1+b1082979.nv26.8.62699174", "0.27.1", True),
    ("1.2.1", "1.3", False),
    ("1.3", "1.3.0", True),
])
def test_version_comparison(version: str, minimum: str, expected: bool) -> None:
    assert version_at_least(version, minimum) is expected


def test_a_non_version_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a version"):
        version_at_least("latest", "1.0")


def test_engine_backend_ships_with_every_known_trtllm_before_1_3() -> None:
    assert all(has_engine_backend(release(ngc)) for ngc in known_releases() if release(ngc).trtllm)
    assert not any(has_engine_backend(release(ngc)) for ngc in ("26.08", "26.09", "26.10", "26.11"))
    assert not has_engine_backend(Release("27.01", None, "1.3.0", None, "test"))


def test_llmapi_model_exists_from_trtllm_0_20() -> None:
    assert has_llmapi_model(release("25.06")) and has_llmapi_model(release("26.07"))
    assert not has_llmapi_model(release("25.05"))
    assert not has_llmapi_model(release("26.10"))


def test_lora_and_image_inputs_need_1_3() -> None:
    assert set(LLMAPI_TENSOR_SINCE) == {"lora_id", "lora_name", "lora_path", "lora_ckpt_source", "image_url"}
    assert llmapi_tensor_available("streaming", release("26.07"))
    assert not llmapi_tensor_available("lora_id", release("26.07"))
    assert llmapi_tensor_available("lora_id", Release("27.01", None, "1.3.0", None, "test"))


def test_llm_keys_of_1_2_are_accepted() -> None:
    assert {"model", "backend", "tensor_parallel_size", "kv_cache_config", "max_seq_len"} <= LLM_ARG_KEYS
    assert check_llm_key("max_num_tokens", release("26.07")) is None
    assert check_llm_key("kv_cache_config.free_gpu_memory_fraction", release("26.07")) is None


def test_unknown_and_newer_llm_keys_say_why() -> None:
    rel = release("26.07")
    assert check_llm_key("max_seq_lenn", rel) == "not an argument of tensorrt_llm.LLM in TRT-LLM 1.2.1"
    assert check_llm_key("kv_cache_config.disk_cache_size", rel) == \
        "needs TRT-LLM ≥ 1.3, the image of NGC 26.07 has 1.2.1"
    assert NEWER_LLM_KEYS["kv_cache_config.disk_cache_size"] == "1.3"
    assert check_llm_key("kv_cache_config.disk_cache_size", release("26.10")) is None
    assert check_llm_key("kv_cache_config.free_gpu_mem", rel) == \
        "not an argument of tensorrt_llm.llmapi.KvCacheConfig in TRT-LLM 1.2.1"


def test_closest_key() -> None:
    assert closest_key("max_seq_lenn") == "max_seq_len"
    assert closest_key("kv_cache_config.free_gpu_mem_fraction") == "free_gpu_memory_fraction"
    assert closest_key("zzzz") is None
    assert closest_key("gpu_memory_utilisation", vllm=True) == "gpu_memory_utilization"


def test_vllm_keys() -> None:
    assert check_vllm_key("disable_log_requests", release("25.09")) == \
        "removed in vLLM 0.10, the image of NGC 25.09 has 0.10.1.1"
    assert check_vllm_key("disable_log_requests", release("25.08")) is None
    assert check_vllm_key("enable_log_requests", release("25.08")) == \
        "needs vLLM ≥ 0.10, the image of NGC 25.08 has 0.9.2"
    assert check_vllm_key("gpu_memory_utilization", release("26.07")) is None
    assert check_vllm_key("gpu_mem", release("26.07")) == "not a common vLLM engine argument (AsyncEngineArgs)"


def test_everything_listed_in_all_exists() -> None:
    assert all(hasattr(releases, name) for name in releases.__all__)


def test_tensorrt_11_takes_no_precision_flag_and_an_unknown_version_is_not_judged() -> None:
    assert PRECISION_FLAGS == {"fp16": "--fp16", "bf16": "--bf16", "int8": "--int8"}
    assert releases.BUILDER_FLAGS == {"fp16": "FP16", "bf16": "BF16", "int8": "INT8"}
    assert takes_precision_flags("10.14.1.48") is True
    assert takes_precision_flags("11.0.0") is False and takes_precision_flags("11.4.0.106") is False
    assert takes_precision_flags(None) is None


def test_precision_removal_and_fix_quote_tensorrts_migration_guide() -> None:
    assert precision_removal("fp16").startswith("TensorRT 11 removed --fp16 (\"TensorRT 11.x removes all precision "
                                               "flags (--fp16, --int8, --bf16, --fp8, --int4, --best) because all "
                                               "networks are strongly typed.")
    assert "--calib" in precision_removal("int8")
    assert "--low_precision_type bf16 --keep_io_types" in precision_fix("bf16")
    assert precision_fix("fp16").endswith("set precision: strongly_typed")
    assert "Q/DQ" in precision_fix("int8")
    with pytest.raises(KeyError):
        precision_fix("strongly_typed")
    with pytest.raises(KeyError):
        precision_removal("fp32")
