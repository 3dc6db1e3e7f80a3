"""``tritonkit build``: build the TensorRT engines of a spec's models on this GPU host, without Docker.

Does what the ``engine-build`` service of ``docker/docker-compose.yml`` does for ONNX models marked
``build: {tensorrt: ...}``, through TensorRT's Python API (``pip install 'tritonkit[tensorrt]'``).
TensorRT-LLM engines are built by that service only.
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from tritonkit.cli._app import EXIT_OK, app, err_console, out_console
from tritonkit.errors import EngineBuildError, Problem
from tritonkit.triton import BACKEND_FILES, releases
from tritonkit.write.files import write_atomic

if TYPE_CHECKING:
    from tritonkit.model.deploy import TensorRTStep

_PLAN = BACKEND_FILES["tensorrt"]
_FLAGS = releases.BUILDER_FLAGS
#: TensorRT 11 builds every network strongly typed; TensorRT 10 does when asked with this creation flag.
_STRONGLY_TYPED = "STRONGLY_TYPED"


def _load_tensorrt() -> tuple[Optional[ModuleType], Optional[Problem]]:
    try:
        return importlib.import_module("tensorrt"), None
    except ImportError as exc:
        return None, Problem(f"the TensorRT Python package is not installed ({exc})",
                             hint="on a GPU host: pip install 'tritonkit[tensorrt]' (or use the engine-build "
                                  "service of docker/docker-compose.yml)")


def _gpu_problem() -> Optional[Problem]:
    """None when the NVIDIA driver answers and sees at least one GPU."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return Problem("no NVIDIA driver here (libcuda.so.1 not found), so there is no GPU to build for",
                       hint="run tritonkit build on the GPU host that will serve the engine")
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return Problem("the NVIDIA driver sees no GPU", hint="check nvidia-smi and CUDA_VISIBLE_DEVICES")
    return None


def _version_dir(repo: Path, model: str) -> Path:
    folder = repo / model
    versions = sorted(int(p.name) for p in folder.glob("*") if p.is_dir() and p.name.isdigit())
    if not versions:
        raise EngineBuildError(Problem(f"no version folder for model {model!r}", path=str(folder),
                                       hint="run tritonkit generate with the same spec and -o first", model=model))
    return folder / str(versions[-1])


def _network(trt: Any, builder: Any, step: TensorRTStep) -> Any:
    # TensorRT 11 removed EXPLICIT_BATCH (always on); STRONGLY_TYPED is always on there, asked for on 10.
    names = ["EXPLICIT_BATCH", *([_STRONGLY_TYPED] if step.precision == "strongly_typed" else [])]
    flags = [getattr(trt.NetworkDefinitionCreationFlag, name, None) for name in names]
    network = builder.create_network(sum(1 << int(flag) for flag in flags if flag is not None))
    parser = trt.OnnxParser(network, trt.Logger(trt.Logger.WARNING))
    if not parser.parse(step.source.read()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(Problem(f"TensorRT could not parse the ONNX file: {errors}",
                                       path=str(step.source.path), model=step.model))
    return network


def _precision_flag(trt: Any, step: TensorRTStep) -> Any:
    """The builder flag of the step's precision; TensorRT 11 has none, and says what it takes instead."""
    flag = getattr(trt.BuilderFlag, _FLAGS[step.precision], None)
    if flag is None:
        version = getattr(trt, "__version__", "?")
        raise EngineBuildError(Problem(f"TensorRT {version} has no BuilderFlag.{_FLAGS[step.precision]}: "
                                       f"{releases.precision_removal(step.precision)}", path=str(step.source.path),
                                       hint=releases.precision_fix(step.precision), model=step.model))
    return flag


def build_engine(trt: Any, step: TensorRTStep) -> bytes:
    """Build one serialized engine with the step's precision, workspace and optimisation profile.

    Raises:
        EngineBuildError: TensorRT could not parse the ONNX file or build the engine.

    """
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = _network(trt, builder, step)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, step.workspace_mb << 20)
    if step.precision in _FLAGS:
        config.set_flag(_precision_flag(trt, step))
    if step.shapes:
        profile = builder.create_optimization_profile()
        for shape in step.shapes:
            profile.set_shape(shape.name, shape.min, shape.opt, shape.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(Problem("TensorRT failed to build the engine (see its messages above)",
                                       path=str(step.source.path), model=step.model))
    return bytes(serialized)


@app.command()
def build(
    spec: Annotated[Path, typer.Argument(help="The spec file (YAML).", show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="The folder given to tritonkit generate (holds model_repository/). Default: "
                               "the spec file's own folder, as for generate.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild engines that exist already.")] = False,
) -> int:
    r"""Build model.plan for each model of SPEC marked build: {tensorrt: ...}, on this GPU host.

    Each engine goes into its model's newest version folder. Needs an NVIDIA GPU and the TensorRT
    Python package (pip install 'tritonkit\[tensorrt]'); says plainly which is missing.
    """
    from tritonkit.model import build_repository  # heavy: protobuf, pydantic
    from tritonkit.model.deploy import build_deployment
    from tritonkit.spec.load import load_spec

    loaded = load_spec(spec)
    deployment = build_deployment(loaded, build_repository(loaded).units)
    if deployment.llm_steps:
        err_console.print("TensorRT-LLM engines are built by the engine-build service of docker/docker-compose.yml")
    if not deployment.trt_steps:
        err_console.print("nothing to build: no model has build: {tensorrt: ...}")
        return EXIT_OK
    repo = (output if output is not None else spec.parent) / "model_repository"
    todo = [(step, _version_dir(repo, step.model) / _PLAN) for step in deployment.trt_steps]
    todo = [(step, path) for step, path in todo if force or not path.exists()]
    for _step, path in _skipped(deployment.trt_steps, todo, repo):
        err_console.print(f"    same {path}  (exists; --force rebuilds it)")
    if not todo:
        return EXIT_OK
    trt, missing = _load_tensorrt()
    problems = [p for p in (_gpu_problem(), missing) if p is not None]
    if problems or trt is None:
        raise EngineBuildError(problems)
    for step, path in todo:
        err_console.print(f"building {step.model} ({step.precision}) ...")
        write_atomic(path, build_engine(trt, step))
        out_console.print(str(path))
    return EXIT_OK


def _skipped(steps: tuple[TensorRTStep, ...], todo: list[tuple[TensorRTStep, Path]],
             repo: Path) -> list[tuple[TensorRTStep, Path]]:
    building = {step.model for step, _ in todo}
    return [(step, _version_dir(repo, step.model) / _PLAN) for step in steps if step.model not in building]
