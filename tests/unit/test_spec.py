"""The spec loader: strict keys, every error in one pass, each located at file:line:col with a hint."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from tritonkit.errors import SpecError
from tritonkit.spec import load_spec


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return [p.format() for p in info.value.problems]


def test_every_error_is_reported_in_one_pass_sorted_by_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
models:
  - name: m
    backend: pythn
    max_batch_size: -3
    instance_group: [{kind: cpu, count: 0}]
    dynamic_batching: {preferred_batch_sizes: [4]}
""")
    lines = errors_of(path)
    assert len(lines) == 4
    numbers = [int(line.split(":")[1]) for line in lines]
    assert numbers == sorted(numbers) == [3, 4, 5, 6]
    for line in lines:
        assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: .+; .+$", line), line


def test_misspelled_key_gets_did_you_mean_at_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: m\n    backend: python\n    max_batch_sise: 4\n")
    (line,) = errors_of(path)
    assert ":4:5: unknown key 'max_batch_sise' in models.m" in line
    assert "did you mean 'max_batch_size'?" in line


def test_misspelled_enum_value_gets_did_you_mean(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: m\n    backend: onnxruntim\n")
    (line,) = errors_of(path)
    assert ":3:14: models.m.backend is 'onnxruntim'" in line
    assert "did you mean 'onnxruntime'?" in line


def test_negative_number_names_value_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: m\n    backend: python\n    max_batch_size: -1\n")
    (line,) = errors_of(path)
    assert ":4:21: models.m.max_batch_size: must be >= 0 (got -1)" in line
    assert "remove the key to use the default" in line


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "models: []\nmodels: []\n")
    (line,) = errors_of(path)
    assert ":2:1: duplicate key 'models'" in line


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: [unclosed\n")
    (line,) = errors_of(path)
    assert "not valid YAML" in line and f"{path}:3:" in line


def test_missing_file_says_how_to_start(tmp_path: Path) -> None:
    (line,) = errors_of(tmp_path / "nope.yaml")
    assert "spec file not found" in line and "tritonkit init" in line


def test_data_types_accept_triton_and_short_names(tmp_path: Path) -> None:
    path = write(tmp_path, """\
models:
  - name: m
    backend: python
    input: [{name: a, data_type: fp32, dims: [1]}, {name: b, data_type: BYTES, dims: [-1]}]
    output: [{name: c, data_type: TYPE_INT64, dims: [2, 3]}]
""")
    model = load_spec(path).spec.models[0]
    assert [t.data_type for t in model.input + model.output] == ["TYPE_FP32", "TYPE_STRING", "TYPE_INT64"]


def test_zero_dim_and_gpus_on_cpu_group_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, """\
models:
  - name: m
    backend: python
    input: [{name: a, data_type: fp32, dims: [0]}]
    instance_group: [{kind: cpu, gpus: [0]}]
""")
    lines = errors_of(path)
    assert any("dimension 0 is not allowed" in line for line in lines)
    assert any("gpus cannot be listed for kind 'cpu'" in line for line in lines)


def test_spec_models_are_frozen(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - {name: m, backend: python}\n")
    model = load_spec(path).spec.models[0]
    with pytest.raises(pydantic.ValidationError):
        model.max_batch_size = 3  # type: ignore[misc]
