"""validate --target dynamo-triton: where Dynamo's front door refuses or changes what Triton would serve."""

from __future__ import annotations

import pytest

from tritonkit.errors import Problem, RepositoryError
from tritonkit.triton import dynamo
from tritonkit.validate import Report, validate_tree

MODEL_PY = b"class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"


def python_model(name: str, body: str) -> dict[str, object]:
    return {f"{name}/config.pbtxt": f'name: "{name}"\nbackend: "python"\n{body}'.encode(),
            f"{name}/1/model.py": MODEL_PY}


def io(dtype_in: str, dtype_out: str) -> str:
    return (f'input [ {{ name: "IN" data_type: TYPE_{dtype_in} dims: [ 4 ] }} ]\n'
            f'output [ {{ name: "OUT" data_type: TYPE_{dtype_out} dims: [ 4 ] }} ]\n')


def dynamo_problems(report: Report) -> list[Problem]:
    return [p for p in [*report.errors, *report.warnings, *report.notes] if "Dynamo" in p.message]


def test_half_precision_tensors_of_a_model_clients_call_warn_once_with_dynamos_words() -> None:
    files = python_model("m", io("FP16", "BF16"))
    report = validate_tree(files, target="dynamo-triton")
    assert report.ok
    (warning,) = [p for p in report.warnings if "Dynamo" in p.message]
    assert (warning.path, warning.line, warning.col) == ("model_repository/m/config.pbtxt", 3, 22)
    assert warning.message.startswith("input 'IN' (FP16), output 'OUT' (BF16): through Dynamo's front door requests "
                                      "to this model fail")
    assert "\"Requests with half-precision input/output tensors are rejected (unknown variant 'Float16' / Invalid " \
           "data type)." in warning.message
    assert dynamo.HALF_PRECISION.source in warning.message
    assert "FP32" in (warning.hint or "")


def test_fp32_models_and_triton_targets_get_no_dynamo_warning() -> None:
    assert [p for p in validate_tree(python_model("m", io("FP32", "FP32")), target="dynamo-triton").warnings
            if "Dynamo" in p.message] == []
    assert dynamo_problems(validate_tree(python_model("m", io("FP16", "FP16")))) == []
    assert dynamo_problems(validate_tree(python_model("m", io("FP16", "FP16")), target="triton")) == []


def test_half_precision_inside_an_ensemble_stays_inside_triton() -> None:
    ensemble = (b'platform: "ensemble"\n' + io("FP32", "FP32").encode() +
                b'ensemble_scheduling { step [\n'
                b'  { model_name: "a" model_version: -1 input_map { key: "IN" value: "IN" }'
                b' output_map { key: "OUT" value: "half" } },\n'
                b'  { model_name: "b" model_version: -1 input_map { key: "IN" value: "half" }'
                b' output_map { key: "OUT" value: "OUT" } }\n'
                b"] }\n")
    files = {**python_model("a", io("FP32", "FP16")), **python_model("b", io("FP16", "FP32")),
             **python_model("direct", io("FP16", "FP32")), "e/config.pbtxt": ensemble, "e/1/": None}
    report = validate_tree(files, target="dynamo-triton")
    assert report.ok
    half = [p for p in report.warnings if "half-precision" in p.message]
    assert [p.model for p in half] == ["direct"]


def test_sequence_batching_warns_that_round_robin_can_split_a_sequence() -> None:
    files = python_model("stateful", io("FP32", "FP32") + "max_batch_size: 4\nsequence_batching { }\n")
    (warning,) = [p for p in validate_tree(files, target="dynamo-triton").warnings if "round-robin" in p.message]
    assert (warning.line, warning.col) == (6, 1)
    assert "\"KV-aware routing is LLM-oriented; tensor models use round-robin\"" in warning.message
    assert "one worker" in (warning.hint or "")


def test_several_loaded_versions_warn_that_a_version_request_gets_the_default() -> None:
    files = {**python_model("m", io("FP32", "FP32") + "version_policy: { all { } }\n"), "m/2/model.py": MODEL_PY}
    (warning,) = [p for p in validate_tree(files, target="dynamo-triton").warnings if "version" in p.message]
    assert warning.message.startswith("versions 1, 2 are loaded, but through Dynamo's front door a request naming "
                                      "a version gets the default one (2)")
    assert "\"Dynamo routes by model name only" in warning.message
    one = {**python_model("m", io("FP32", "FP32")), "m/2/model.py": MODEL_PY}  # latest 1: only 2 is loaded
    assert [p for p in validate_tree(one, target="dynamo-triton").warnings if "version" in p.message] == []


def test_an_llm_gets_a_note_that_kv_aware_routing_does_not_reach_it() -> None:
    body = ('input [ { name: "text_input" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
            'output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]\n')
    report = validate_tree(python_model("llm", body), target="dynamo-triton")
    (note,) = [p for p in report.notes if p.model == "llm"]
    assert "KV-aware routing does not apply" in note.message and "round-robin" in note.message


def test_the_front_door_note_is_said_once_per_repository() -> None:
    files = {**python_model("a", io("FP32", "FP32")), **python_model("b", io("FP32", "FP32"))}
    (note,) = [p for p in validate_tree(files, target="dynamo-triton").notes if p.model is None]
    assert note.path == "model_repository"
    assert "KServe gRPC only" in note.message and "Send tensors inline." in note.message


def test_an_unknown_target_is_refused() -> None:
    with pytest.raises(RepositoryError, match="unknown serving target 'dynamo'"):
        validate_tree(python_model("m", io("FP32", "FP32")), target="dynamo")


def test_every_limitation_names_a_public_page() -> None:
    for limitation in (dynamo.HALF_PRECISION, dynamo.ROUND_ROBIN, dynamo.MODEL_VERSION, dynamo.SHARED_MEMORY,
                       dynamo.FRONT_DOOR):
        assert limitation.source.startswith("https://") and limitation.words
    assert dynamo.TARGETS == ("triton", "dynamo-triton")
