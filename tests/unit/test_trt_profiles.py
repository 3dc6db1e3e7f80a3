"""Optimisation-profile shapes of TensorRT engines built from ONNX models."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.model.deploy import TensorRTStep, TensorShapes, profile_shapes
from tritonkit.model.types import FileSource
from tritonkit.spec.deploy import TensorRTBuild


def _config(max_batch_size: int, **inputs: list[int]) -> pb.ModelConfig:
    config = pb.ModelConfig(name="m", max_batch_size=max_batch_size)
    for name, dims in inputs.items():
        config.input.add(name=name, dims=dims)
    return config


def _build(**data: object) -> TensorRTBuild:
    return TensorRTBuild.model_validate(data)


def test_batch_dim_runs_from_one_to_max_and_is_tuned_for_the_largest_preferred_size() -> None:
    shapes = profile_shapes(_config(32, x=[3, 8]), _build(), preferred=[4, 16, 8])
    assert shapes == (TensorShapes("x", (1, 3, 8), (16, 3, 8), (32, 3, 8)),)


def test_without_preferred_sizes_the_engine_is_tuned_for_max_batch_size() -> None:
    (shape,) = profile_shapes(_config(8, x=[5]), _build())
    assert (shape.min, shape.opt, shape.max) == ((1, 5), (8, 5), (8, 5))


def test_opt_batch_size_wins_and_may_not_exceed_max_batch_size() -> None:
    (shape,) = profile_shapes(_config(8, x=[5]), _build(opt_batch_size=2), preferred=[8])
    assert shape.opt == (2, 5)
    with pytest.raises(ValueError, match="above max_batch_size 8"):
        profile_shapes(_config(8, x=[5]), _build(opt_batch_size=9))


def test_variable_dims_take_the_given_ranges_and_fixed_dims_stay() -> None:
    build = _build(shapes={"img": {"min": [3, 64, 64], "opt": [3, 224, 224], "max": [3, 512, 512]}})
    shapes = profile_shapes(_config(4, img=[3, -1, -1], scale=[1]), build)
    assert shapes[0] == TensorShapes("img", (1, 3, 64, 64), (4, 3, 224, 224), (4, 3, 512, 512))
    assert shapes[1] == TensorShapes("scale", (1, 1), (4, 1), (4, 1))


def test_no_batch_dim_when_the_model_does_not_batch() -> None:
    build = _build(shapes={"tokens": {"min": [1, 1], "opt": [1, 128], "max": [1, 512]}})
    (shape,) = profile_shapes(_config(0, tokens=[1, -1]), build)
    assert (shape.min, shape.opt, shape.max) == ((1, 1), (1, 128), (1, 512))


def test_a_variable_dim_without_a_range_is_an_error_naming_the_key_to_add() -> None:
    with pytest.raises(ValueError, match=r"build\.tensorrt\.shapes\.img"):
        profile_shapes(_config(4, img=[3, -1, -1]), _build())


def test_ranges_must_fit_the_input() -> None:
    wrong_rank = _build(shapes={"img": {"min": [3, 1], "opt": [3, 2], "max": [3, 4]}})
    with pytest.raises(ValueError, match="have 2 dims, but the input has 3"):
        profile_shapes(_config(4, img=[3, -1, -1]), wrong_rank)
    changes_fixed = _build(shapes={"img": {"min": [1, 8], "opt": [3, 8], "max": [3, 8]}})
    with pytest.raises(ValueError, match="dim 0, which is fixed at 3"):
        profile_shapes(_config(4, img=[3, -1]), changes_fixed)
    unknown = _build(shapes={"image": {"min": [1], "opt": [1], "max": [1]}})
    with pytest.raises(ValueError, match=r"\['image'\]"):
        profile_shapes(_config(4, img=[3]), unknown)


def test_a_range_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        _build(shapes={"x": {"min": [8], "opt": [4], "max": [16]}})


def test_trtexec_arguments_carry_every_input_and_the_precision() -> None:
    shapes = (TensorShapes("a", (1, 3), (8, 3), (16, 3)), TensorShapes("b", (1, 2), (8, 2), (16, 2)))
    step = TensorRTStep("m", FileSource(data=b""), "int8", 1024, shapes)
    args = step.trtexec_args("/src/m.onnx")
    assert args == ["--onnx=/src/m.onnx", "--memPoolSize=workspace:1024", "--int8",
                    "--minShapes=a:1x3,b:1x2", "--optShapes=a:8x3,b:8x2", "--maxShapes=a:16x3,b:16x2"]
    assert "--fp16" not in TensorRTStep("m", FileSource(data=b""), "fp32", 1024, shapes).trtexec_args("x")
