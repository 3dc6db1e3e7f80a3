"""validate on repositories people have (issue 27): NVIDIA's filled templates, template placeholders, model.py.

tests/fixtures/repos/nvidia_filled_templates reproduces, in tritonkit's own files, the structure of the five
models of NVIDIA's TensorRT-LLM templates (``all_models/inflight_batcher_llm``) after ``fill_template.py``
has filled them with the values of tensorrtllm_backend's README ("Modify the Model Configuration": max batch
size 4, one instance, decoupled false, FP32 logits; queue delay and size 0, fill_template.py's defaults):
a few tensors per model, every ``parameters`` entry of the templates, and the placeholders the README
leaves unfilled still in place.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tritonkit.validate import validate_repository, validate_tree

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402 -- after the skip

FILLED = Path(__file__).parents[1] / "fixtures" / "repos" / "nvidia_filled_templates"
IO = ('input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
      'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]\n')
PY = b"class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def _param(key: str, value: str) -> str:
    return f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'


def test_nvidia_templates_filled_as_documented_validate_with_at_most_one_warning_per_file() -> None:
    report = validate_repository(FILLED)
    assert report.errors == []
    per_file = Counter(p.path for p in report.warnings)
    assert per_file and max(per_file.values()) == 1, [p.format() for p in report.warnings]
    assert not any("placeholder" in p.message for p in report.warnings)
    notes = {p.path.split("/")[-2]: p.message for p in report.notes if p.path}
    assert set(notes) == {"preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls"}
    assert "41 optional parameters of NVIDIA's tensorrt_llm template" in notes["tensorrt_llm"]
    assert "gpu_device_ids" in notes["tensorrt_llm"] and "enable_trt_overlap" not in notes["tensorrt_llm"]
    assert notes["postprocessing"].startswith("1 optional parameter of NVIDIA's postprocessing template is left")


def test_a_mandatory_parameter_left_unfilled_in_nvidias_template_stays_a_warning() -> None:
    config = f'backend: "python"\nmax_batch_size: 4\n{IO}' + _param("tokenizer_dir", "${tokenizer_dir}") + \
        _param("add_special_tokens", "${add_special_tokens}") + _param("engine_dir", "${engine_dir}")
    report = validate_tree({"preprocessing/config.pbtxt": config, "preprocessing/1/model.py": PY})
    (warning,) = report.warnings
    assert warning.message == "template placeholder '${tokenizer_dir}' was never filled in"
    (note,) = report.notes
    assert "2 optional parameters of NVIDIA's preprocessing template" in note.message
    assert "add_special_tokens, engine_dir" in note.message


def test_placeholders_give_one_warning_per_file_and_none_in_comments() -> None:
    config = f'backend: "python"\nmax_batch_size: 4\n{IO}' + _param("a", "${first}") + _param("b", "x ${second}") + \
        '# parameters { key: "c" value: { string_value: "${commented}" } }\n'
    report = validate_tree({"m/config.pbtxt": config, "m/1/model.py": PY, "n/config.pbtxt": config,
                            "n/1/model.py": PY})
    assert [p.path for p in report.warnings] == ["model_repository/m/config.pbtxt", "model_repository/n/config.pbtxt"]
    message = report.warnings[0].message
    assert message == "2 template placeholders were never filled in: '${first}' (line 5), '${second}' (line 6)"
    assert report.warnings[0].line == 5 and report.notes == []


def test_a_users_own_parameter_named_like_nvidias_is_not_taken_for_optional() -> None:
    config = f'backend: "python"\nmax_batch_size: 4\n{IO}' + _param("gpu_device_ids", "${gpu_device_ids}")
    report = validate_tree({"m/config.pbtxt": config, "m/1/model.py": PY})
    assert len(report.warnings) == 1 and report.notes == []


def _graph(*inputs: tuple[str, int]) -> bytes:
    """An ONNX graph summing INT32 [batch, 1] inputs (the type of each may differ: it is never run)."""
    nodes, last = [], inputs[0][0]
    for index, (name, _) in enumerate(inputs[1:]):
        nodes.append(helper.make_node("Add", [last, name], [f"s{index}"]))
        last = f"s{index}"
    nodes.append(helper.make_node("Identity", [last], ["OUTPUT"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, ["batch", 1]) for n, t in inputs],
                              [helper.make_tensor_value_info("OUTPUT", TensorProto.INT32, ["batch", 1])])
    return bytes(helper.make_model(graph).SerializeToString())


def _sequence_repo(controls: str, graph: bytes, state: str = "") -> dict[str, object]:
    config = ('backend: "onnxruntime"\nmax_batch_size: 8\n'
              f'sequence_batching {{\n  control_input [ {controls} ]\n{state}}}\n'
              'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n')
    return {"acc/config.pbtxt": config, "acc/1/model.onnx": graph}


START = '{ name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] }'
END = '{ name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] }'
I32 = TensorProto.INT32


def _errors(files: dict[str, object]) -> list[str]:
    return [p.message for p in validate_tree(files).errors]


def test_onnx_inputs_count_the_sequence_controls_and_states_the_backend_adds() -> None:
    assert _errors(_sequence_repo(START, _graph(("INPUT", I32), ("START", I32)))) == []
    state = '  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    graph = _graph(("INPUT", I32), ("START", I32), ("END", I32), ("STATE_IN", I32))
    assert _errors(_sequence_repo(f"{START}, {END}", graph, state)) == []
    (extra,) = _errors(_sequence_repo(START, _graph(("INPUT", I32), ("START", I32), ("BIAS", I32))))
    assert extra.startswith("unable to load model 'acc', configuration expects 2 inputs, model provides 3")
    assert "counting 1 sequence control" in extra


def test_each_sequence_control_is_a_graph_input_of_its_type_as_the_onnxruntime_backend_checks() -> None:
    (missing,) = _errors(_sequence_repo(f"{START}, {END}", _graph(("INPUT", I32), ("START", I32))))
    assert missing == "configuration specified sequence control 'END', but model does not provide that input"
    floats = START.replace("int32_false_true", "fp32_false_true")
    (typed,) = validate_tree(_sequence_repo(floats, _graph(("INPUT", I32), ("START", I32)))).errors
    assert typed.message == ("unable to load model 'acc', sequence control 'START', the model expects data-type "
                             "INT32 but the model configuration specifies data-type TYPE_FP32")
    assert typed.hint is not None and "int32_false_true" in typed.hint
    corrid = '{ name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }'
    (corrid_type,) = _errors(_sequence_repo(corrid, _graph(("INPUT", I32), ("CORRID", TensorProto.INT64))))
    assert "sequence control 'CORRID', the model expects data-type INT64 but" in corrid_type


ITERATIVE = b'''class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        inputs = [{"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]}]
        for spec in inputs:
            config.add_input(spec)
        config.add_output({"name": "text_output", "data_type": "TYPE_STRING", "dims": [1]})
        config.set_model_transaction_policy({"decoupled": True})
        config.set_max_batch_size(8)
        return config

    def execute(self, requests):
        return []
'''


def test_what_a_readable_auto_complete_config_sets_is_checked_as_the_server_completes_it() -> None:
    files = {"gpt/config.pbtxt": 'backend: "python"\nsequence_batching { }\n', "gpt/1/model.py": ITERATIVE}
    report = validate_tree(files)
    assert report.errors == [] and report.warnings == []  # no "max_batch_size is 0" with sequence batching
    cached = {"gpt/config.pbtxt": 'backend: "python"\nresponse_cache { enable: true }\n', "gpt/1/model.py": ITERATIVE}
    (decoupled,) = validate_tree(cached).errors  # decoupled, from model.py, and a response cache: refused
    assert "Response Cache does not currently support model gpt with 'decoupled'" in decoupled.message
    clash = {"gpt/config.pbtxt": 'backend: "python"\ninput [ { name: "text_input" data_type: TYPE_INT32 '
                                 'dims: [ 1 ] } ]\n', "gpt/1/model.py": ITERATIVE}
    (error,) = validate_tree(clash).errors
    assert error.path == "model_repository/gpt/1/model.py" and error.line == 6
    assert error.message.endswith("unable to load model 'gpt', configuration expects datatype TYPE_INT32 for "
                                  "input 'text_input', model provides TYPE_STRING")


def test_an_unreadable_auto_complete_config_is_said_once_instead_of_missing_fields() -> None:
    model_py = ITERATIVE.replace(b"config.set_max_batch_size(8)", b"config.set_max_batch_size(len(inputs) * 8)")
    files = {"gpt/config.pbtxt": 'backend: "python"\nsequence_batching { }\ninput [ { name: "text_input" } ]\n',
             "gpt/1/model.py": model_py}
    report = validate_tree(files)
    assert report.errors == []
    (warning,) = report.warnings
    assert warning.path == "model_repository/gpt/1/model.py" and warning.line == 3
    assert "input 'text_input' data_type and dims, max_batch_size left to it" in warning.message
    without = {"gpt/config.pbtxt": 'backend: "python"\nsequence_batching { }\ninput [ { name: "text_input" } ]\n',
               "gpt/1/model.py": PY}
    assert [p.message for p in validate_tree(without).errors] == \
        ["model input 'text_input' must specify 'data_type' for gpt"]


UNDEFINED = b'''import json

LIMIT = 4


class TritonPythonModel:
    def initialize(self, args):
        self.config = json.loads(args["model_config"])
        if self.config.get("parameters"):
            self.mode = MODE
        self.limit = LIMT

    def execute(self, requests):
        return [np.zeros(LIMIT) for _ in requests]


if __name__ == "__main__":
    main()
'''


def test_undefined_names_are_errors_only_where_they_run_at_load() -> None:
    report = validate_tree({"m/config.pbtxt": f'backend: "python"\n{IO}', "m/1/model.py": UNDEFINED})
    (error,) = report.errors
    assert (error.path, error.line, error.col) == ("model_repository/m/1/model.py", 11, 22)
    assert "NameError: name 'LIMT' is not defined (in TritonPythonModel.initialize)" in error.message
    assert error.hint == "did you mean 'LIMIT'?"
    assert [(p.line, p.message.split(":")[0]) for p in report.warnings] == [
        (10, "model.py uses 'MODE', which it never defines"), (14, "model.py uses 'np', which it never defines"),
        (18, "model.py uses 'main', which it never defines")]
