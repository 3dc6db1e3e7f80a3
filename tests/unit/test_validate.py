"""validate's public API on repositories built in tmp_path and in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonkit.errors import RepositoryError
from tritonkit.validate import Report, validate_repository, validate_tree

MODEL_PY = b"class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
IO = ('input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
      'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')


def python_model(config: str, name: str = "m") -> dict[str, object]:
    return {f"{name}/config.pbtxt": config.encode(), f"{name}/1/model.py": MODEL_PY}


def write_tree(root: Path, files: dict[str, object]) -> Path:
    for rel, content in files.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else str(content).encode())
    return root


def located(report: Report) -> list[tuple[str, int, int]]:
    return [(p.path or "", p.line or 0, p.col or 0) for p in report.errors]


def test_a_clean_python_model_passes() -> None:
    report = validate_tree(python_model(f'backend: "python"\nmax_batch_size: 4\n{IO}'))
    assert report.ok and report.errors == [] and report.models == 1
    assert report.to_dict() == {"ok": True, "errors": [], "warnings": [], "notes": []}


def test_unknown_field_is_located_and_gets_a_suggestion() -> None:
    report = validate_tree(python_model(f'backend: "python"\n{IO}  max_batch_sise: 4\n'))
    (problem,) = report.errors
    assert (problem.path, problem.line, problem.col) == ("model_repository/m/config.pbtxt", 4, 3)
    assert 'no field named "max_batch_sise"' in problem.message
    assert problem.hint == "did you mean 'max_batch_size'?"
    assert problem.model == "m"


def test_unknown_enum_suggests_the_close_value() -> None:
    config = 'backend: "python"\ninput [ { name: "IN" data_type: TYPE_FP23 dims: [ 4 ] } ]\n'
    (problem,) = validate_tree(python_model(config)).errors
    assert problem.line == 2 and problem.hint == "did you mean TYPE_FP32?"


def test_placeholder_is_reported_once_at_its_column() -> None:
    report = validate_tree(python_model(f'backend: "python"\n{IO}max_batch_size: ${{mbs}}\n'))
    assert [(p.line, p.col) for p in report.errors] == [(4, 17)]
    assert "'${mbs}' was never filled in" in report.errors[0].message


def test_semantic_errors_point_at_the_offending_field() -> None:
    config = (f'backend: "python"\nmax_batch_size: 4\n{IO}'
              "dynamic_batching {\n  preferred_batch_size: [ 2, 16 ]\n}\n")
    (problem,) = validate_tree(python_model(config)).errors
    assert (problem.line, problem.col) == (6, 30)
    assert "preferred size must be <= max batch size" in problem.message


def test_ensemble_map_errors_point_at_the_map_entry() -> None:
    files = python_model(f'backend: "python"\nmax_batch_size: 4\n{IO}', name="a")
    files["e/config.pbtxt"] = (
        b'platform: "ensemble"\nmax_batch_size: 4\n'
        b'input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        b'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        b"ensemble_scheduling { step [ {\n"
        b'  model_name: "a" model_version: -1\n'
        b'  input_map { key: "IN" value: "X" }\n'
        b'  output_map { key: "OUTPUT" value: "Y" }\n'
        b"} ] }\n")
    files["e/1/"] = None
    (problem,) = validate_tree(files).errors
    assert (problem.path, problem.line, problem.col) == ("model_repository/e/config.pbtxt", 8, 3)
    assert "mapped from non-existing output OUTPUT in model a" in problem.message
    assert "OUT" in (problem.hint or "")


def test_an_ensemble_needs_a_version_folder_even_in_memory() -> None:
    ensemble = (b'platform: "ensemble"\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
                b'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]\nensemble_scheduling { step [ {'
                b' model_name: "a" model_version: -1 input_map { key: "IN" value: "X" }'
                b' output_map { key: "OUT" value: "Y" } } ] }\n')
    files = {**python_model(f'backend: "python"\n{IO}', name="a"), "e/config.pbtxt": ensemble}
    assert any("at least one version" in p.message for p in validate_tree(files).errors)
    assert validate_tree({**files, "e/1/": None}).ok


def test_disk_and_memory_give_the_same_report(tmp_path: Path) -> None:
    files = python_model(f'name: "other"\nbackend: "python"\nmax_batch_size: -2\n{IO}')
    files["m/backup/notes.txt"] = b"x"
    on_disk = validate_repository(write_tree(tmp_path / "model_repository", files))
    in_memory = validate_tree(files)
    assert on_disk == in_memory
    assert len(on_disk.errors) == 2 and len(on_disk.warnings) == 1


def test_gpu_ids_are_checked_only_against_a_known_gpu_count() -> None:
    config = f'backend: "python"\n{IO}instance_group [ {{ kind: KIND_GPU gpus: [ 0, 3 ] }} ]\n'
    files = python_model(config)
    unknown = validate_tree(files)
    assert unknown.ok and len(unknown.warnings) == 1  # no count written: Triton uses 1, no warning
    assert "needs a GPU" in unknown.warnings[0].message
    assert validate_tree(files, gpus=4).ok and not validate_tree(files, gpus=4).warnings
    (problem,) = validate_tree(files, gpus=2).errors
    assert "invalid or unsupported gpu id 3" in problem.message and (problem.line, problem.col) == (4, 46)
    assert "no GPUs are available" in validate_tree(
        python_model(f'backend: "python"\n{IO}instance_group [ {{ kind: KIND_GPU }} ]\n'), gpus=0).errors[0].message


def test_decoupled_step_makes_a_warning_about_the_ensemble_protocol() -> None:
    files = python_model(f'backend: "python"\n{IO}model_transaction_policy {{ decoupled: true }}\n', name="a")
    files["e/config.pbtxt"] = (
        b'platform: "ensemble"\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        b'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]\nensemble_scheduling { step [ {'
        b' model_name: "a" model_version: -1 input_map { key: "IN" value: "X" }'
        b' output_map { key: "OUT" value: "Y" } } ] }\n')
    files["e/1/"] = None
    report = validate_tree(files)
    assert report.ok
    assert any("makes the ensemble decoupled" in p.message for p in report.warnings)


def test_not_utf8_is_an_error_not_a_crash() -> None:
    report = validate_tree({"m/config.pbtxt": b"\xff\xfe backend", "m/1/model.py": MODEL_PY})
    assert not report.ok and "not UTF-8" in report.errors[0].message


def test_a_path_that_is_not_a_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="is not a folder"):
        validate_repository(tmp_path / "missing")


def test_problems_are_sorted_by_file_and_line() -> None:
    files = {**python_model(f'backend: "python"\nmax_batch_size: -1\n{IO}', name="b"),
             **python_model(f'name: "x"\nbackend: "python"\n{IO}', name="a")}
    assert located(validate_tree(files)) == sorted(located(validate_tree(files)))
    assert [p.model for p in validate_tree(files).errors] == ["a", "b"]


class _Source:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


def test_tree_values_may_be_str_or_readable_sources() -> None:
    config = f'backend: "python"\nmax_batch_size: -1\n{IO}'
    as_str = validate_tree({"m/config.pbtxt": config, "m/1/model.py": None})
    as_source = validate_tree({"m/config.pbtxt": _Source(config.encode()), "m/1/model.py": None})
    assert as_str == as_source and len(as_str.errors) == 1


def test_paths_start_at_the_repository_name_even_for_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = write_tree(tmp_path / "repo", python_model(f'name: "x"\nbackend: "python"\n{IO}'))
    monkeypatch.chdir(repo)
    (problem,) = validate_repository(".").errors
    assert problem.path == "repo/m/config.pbtxt"


def test_known_side_folders_are_not_reported_but_stray_ones_are() -> None:
    files = {**python_model(f'backend: "python"\n{IO}'), "m/configs/h100.pbtxt": b"", "m/warmup/x": b"",
             "m/__pycache__/a.pyc": b"", "m/v2/model.py": MODEL_PY, "README.md": b"x"}
    report = validate_tree(files)
    assert report.ok
    assert sorted((p.path or "") for p in report.warnings) == ["model_repository/README.md", "model_repository/m/v2"]
