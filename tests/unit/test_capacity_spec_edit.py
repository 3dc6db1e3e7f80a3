"""Writing a plan into a spec: values set, every comment and the layout kept, clear errors otherwise."""

from __future__ import annotations

import pytest
import yaml

from tritonkit.capacity import PlanError, SpecValues, edit_spec_text

VALUES = SpecValues(tensor_parallel_size=2, max_batch_size=48, free_gpu_memory_fraction=0.87,
                    max_tokens=424402)

SPEC = """\
# tritonkit spec for the chat service
triton: {version: "25.10"}
llms:
  - name: chat   # the chat model
    engine: {kind: tensorrt_llm, path: /engines/x, tensor_parallel_size: 1}   # built by CI
    max_batch_size: 8        # a guess
    max_input_len: 2048
    kv_cache:
      free_gpu_memory_fraction: 0.9   # keep a little back
      enable_reuse: false
    instance_group: [{kind: gpu, count: 1, gpus: [0]}]
# models follow
models: []
"""


def llm(text: str, index: int = 0) -> dict:
    return yaml.safe_load(text)["llms"][index]


def test_values_are_set_and_everything_else_is_kept() -> None:
    edit = edit_spec_text(SPEC, VALUES, path="spec.yaml")
    entry = llm(edit.text)
    assert entry["engine"] == {"kind": "tensorrt_llm", "path": "/engines/x", "tensor_parallel_size": 2}
    assert entry["max_batch_size"] == 48
    assert entry["kv_cache"] == {"free_gpu_memory_fraction": 0.87, "enable_reuse": False,
                                 "max_tokens": 424402}
    assert entry["instance_group"] == [{"kind": "gpu", "count": 1, "gpus": [0, 1]}]
    for comment in ("# tritonkit spec for the chat service", "# the chat model", "# built by CI", "# a guess",
                    "# keep a little back", "# models follow"):
        assert comment in edit.text
    old_lines, new_lines = SPEC.splitlines(), edit.text.splitlines()
    assert len(new_lines) == len(old_lines) + 1  # only max_tokens was added, on a line of its own
    assert "      max_tokens: 424402" in new_lines
    assert old_lines[6] == new_lines[6]  # max_input_len untouched
    keys = {change.key: (change.old, change.new, change.line) for change in edit.changes}
    assert keys["llms[chat].max_batch_size"] == ("8", "48", 6)
    assert keys["llms[chat].kv_cache.max_tokens"][0] is None


def test_a_second_edit_changes_nothing() -> None:
    once = edit_spec_text(SPEC, VALUES).text
    twice = edit_spec_text(once, VALUES)
    assert twice.text == once and twice.changes == ()


def test_missing_keys_are_added_in_block_and_flow_style() -> None:
    text = ("llms:\n- name: a\n  engine:\n    kind: tensorrt_llm\n    path: /e   # engine\n"
            "  max_output_len: 64")
    edit = edit_spec_text(text, VALUES)
    entry = llm(edit.text)
    assert entry["engine"]["tensor_parallel_size"] == 2
    assert entry["kv_cache"] == {"free_gpu_memory_fraction": 0.87, "max_tokens": 424402}
    assert entry["instance_group"] == [{"kind": "gpu", "count": 1, "gpus": [0, 1]}]
    assert "    path: /e   # engine\n    tensor_parallel_size: 2\n" in edit.text


def test_several_instance_groups_are_replaced_by_one() -> None:
    text = ("llms:\n- name: a\n  engine: {kind: tensorrt_llm}\n  instance_group:\n"
            "  - kind: gpu\n    gpus: [0]\n"
            "  - kind: gpu\n    gpus: [1]\n  max_batch_size: 4   # keep me\n")
    edit = edit_spec_text(text, VALUES)
    assert llm(edit.text)["instance_group"] == [{"kind": "gpu", "count": 1, "gpus": [0, 1]}]
    assert "max_batch_size: 48   # keep me" in edit.text


def test_pytorch_engine_gets_its_tensor_parallel_size_too() -> None:
    text = "llms:\n- name: a\n  engine: {kind: pytorch, model: m.gguf}\n"
    edit = edit_spec_text(text, VALUES)
    assert llm(edit.text)["engine"] == {"kind": "pytorch", "model": "m.gguf", "tensor_parallel_size": 2}


def test_llm_entry_is_chosen_by_name() -> None:
    text = ("llms:\n  - name: small\n    engine: {kind: tensorrt_llm}\n"
            "  - name: big\n    engine: {kind: tensorrt_llm}\n")
    with pytest.raises(PlanError) as caught:
        edit_spec_text(text, VALUES, path="s.yaml")
    assert caught.value.first.line == 1 and "small, big" in (caught.value.first.hint or "")
    edit = edit_spec_text(text, VALUES, llm="big")
    assert "max_batch_size" not in llm(edit.text, 0) and llm(edit.text, 1)["max_batch_size"] == 48
    with pytest.raises(PlanError, match="no llms: entry is named 'huge'"):
        edit_spec_text(text, VALUES, llm="huge")


@pytest.mark.parametrize(("text", "message", "line"), [
    ("models: []\n", "no llms: entries", 1),
    ("triton: {}\nllms: []\n", "no llms: entries", 2),
    ("llms:\n  - name: a\n    max_batch_size: 4\n", "no engine", 2),
    ("llms: [\n", "not valid YAML", 2),
    ("- just a list\n", "YAML mapping", 1),
])
def test_bad_specs_are_located(text: str, message: str, line: int) -> None:
    with pytest.raises(PlanError) as caught:
        edit_spec_text(text, VALUES, path="spec.yaml")
    problem = caught.value.first
    assert message in problem.message
    assert (problem.path, problem.line) == ("spec.yaml", line)


def test_llmapi_kind_gets_max_num_tokens_and_one_instance_per_replica(tmp_path) -> None:
    from pathlib import Path

    from tritonkit.write.generate import generate

    examples = Path(__file__).resolve().parents[2] / "examples"
    text = (examples / "trtllm_llmapi.yaml").read_text()
    values = SpecValues(tensor_parallel_size=2, max_batch_size=16384, free_gpu_memory_fraction=0.8,
                        max_tokens=200000, replicas=2)
    edit = edit_spec_text(text, values, path="trtllm_llmapi.yaml")
    entry = llm(edit.text)
    assert entry["engine"]["max_num_tokens"] == 16384 and entry["engine"]["tensor_parallel_size"] == 2
    assert entry["instance_group"] == [{"count": 2, "gpus": [0, 1, 2, 3]}]
    assert "# any other tensorrt_llm.LLM() argument" in edit.text
    (tmp_path / "spec.yaml").write_text(edit.text)
    generate(tmp_path / "spec.yaml", tmp_path)
    config = (tmp_path / "model_repository" / "llama" / "config.pbtxt").read_text()
    assert 'string_value: "0,1;2,3"' in config
