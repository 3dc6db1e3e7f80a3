"""The rules issue 14 added: model.py read with ast, ONNX files against the config, nested ensembles, backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonkit.errors import SpecError
from tritonkit.validate import validate_tree
from tritonkit.write.generate import generate

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402 -- after the skip: onnx is optional for this module

GOOD_PY = b"class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
IO = ('input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
      'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')


def _onnx(shape: tuple[object, ...] = ("batch", 4), name: str = "x") -> bytes:
    graph = helper.make_graph([helper.make_node("Identity", [name], ["y"])], "g",
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))])
    return bytes(helper.make_model(graph).SerializeToString())


def _onnx_repo(dims: str, model: bytes, mbs: int = 8) -> dict[str, object]:
    config = (f'backend: "onnxruntime"\nmax_batch_size: {mbs}\n'
              f'input [ {{ name: "x" data_type: TYPE_FP32 dims: {dims} }} ]\n'
              f'output [ {{ name: "y" data_type: TYPE_FP32 dims: {dims} }} ]\n')
    return {"net/config.pbtxt": config, "net/1/model.onnx": model}


def _messages(files: dict[str, object], **options: object) -> list[str]:
    return [p.message for p in validate_tree(files, **options).errors]  # type: ignore[arg-type]


def test_onnx_names_ranks_and_batch_dimension_follow_the_onnxruntime_backend() -> None:
    assert _messages(_onnx_repo("[ 4 ]", _onnx())) == []
    renamed = _onnx_repo("[ 4 ]", _onnx(name="X0"))
    assert _messages(renamed) == ["unexpected inference input 'x', allowed inputs are: X0"]
    (rank,) = _messages(_onnx_repo("[ -1, 4 ]", _onnx()))
    assert "the model expects 2 dimensions (shape [-1,4]) but the model configuration specifies 3" in rank
    (batch,) = _messages(_onnx_repo("[ 4 ]", _onnx(shape=(4,))))
    assert "the first dimension must be -1; but shape expected by the model is [4]" in batch
    assert _messages(_onnx_repo("[ 4 ]", _onnx(shape=(4,)), mbs=0)) == []


def test_a_config_without_tensors_is_left_to_onnx_auto_complete() -> None:
    files = {"net/config.pbtxt": 'backend: "onnxruntime"\nmax_batch_size: 8\n', "net/1/model.onnx": _onnx()}
    assert _messages(files) == []


def test_model_py_that_does_not_compile_is_located_in_the_file() -> None:
    files = {"m/config.pbtxt": f'backend: "python"\n{IO}', "m/1/model.py": b"class TritonPythonModel:\n  def f(:\n"}
    (problem,) = validate_tree(files).errors
    assert (problem.path, problem.line) == ("model_repository/m/1/model.py", 2)
    assert "does not compile" in problem.message


def test_model_py_may_bind_the_class_by_import() -> None:
    files = {"m/config.pbtxt": f'backend: "python"\n{IO}',
             "m/1/model.py": b"from impl import Model as TritonPythonModel\n"}
    assert _messages(files) == []


def test_missing_backends_are_exact_with_the_backend_list_and_a_warning_without() -> None:
    files = {"m/config.pbtxt": f'backend: "mine"\n{IO}', "m/1/model.mine": b""}
    report = validate_tree(files)
    assert not report.errors and "--backends" in (report.warnings[0].hint or "")
    from tritonkit.validate import validate_view
    from tritonkit.validate._view import MappingRepository

    strict = validate_view(MappingRepository(files), backends={"python"})
    assert strict.errors[0].message.startswith("unable to find backend library for backend 'mine'")


def test_generate_points_a_broken_model_py_at_the_artifact(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("class TritonPythonModel:\n    def execute(self, requests)\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("models:\n  - name: m\n    backend: python\n    artifact: m.py\n"
                    "    input: [{name: X, data_type: FP32, dims: [2]}]\n"
                    "    output: [{name: Y, data_type: FP32, dims: [2]}]\n")
    with pytest.raises(SpecError) as info:
        generate(spec, tmp_path / "out")
    (problem,) = info.value.problems
    assert problem.path is not None and problem.path.endswith("m.py") and problem.line == 2
    assert "model_repository/m/1/model.py)" in problem.message and "copied to" in problem.message
