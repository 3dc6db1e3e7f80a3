"""``llms:`` entries to the five models of TensorRT-LLM's ensemble layout, with their config messages.

``<name>`` (ensemble, text in, text out), ``<name>_preprocessing``, ``<name>_engine``,
``<name>_postprocessing`` and ``<name>_bls`` (decoupled, streaming). The engine speaks
TensorRT-LLM's backend contract, so ``engine.kind`` swaps it without touching the other four.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import Problem, SpecError
from tritonkit.locations import Loc
from tritonkit.model import llm_config
from tritonkit.model.classic import fill_version_policy
from tritonkit.model.llmapi import build_llmapi_unit, check_llmapi
from tritonkit.model.types import FileSource, ModelUnit, python_backend_files
from tritonkit.model.vllm import build_vllm_unit, check_vllm
from tritonkit.spec.llm import LLMSpec
from tritonkit.spec.load import LoadedSpec, suggest
from tritonkit.spec.schema import ParameterValue, VersionPolicy
from tritonkit.triton import inflight_batcher as contract
from tritonkit.triton import releases

__all__ = ["BACKEND_FILES", "LLM_VERSION_POLICY", "build_llm_units"]

#: Only the newest version loaded: each loaded version of an LLM holds its own weights and KV cache, so two
#: cost twice the (GPU) memory. The previous version's folder stays on disk for a rollback (write/versions.py).
LLM_VERSION_POLICY = VersionPolicy.model_validate({"latest": {"num_versions": 1}})

#: The python_backends file each Python model of the pipeline runs, and the helpers copied beside it.
BACKEND_FILES = {
    "preprocessing": ("llm_preprocessing.py", ("llm_common.py", "llm_prompt.py", "llm_triton.py")),
    "postprocessing": ("llm_postprocessing.py", ("llm_common.py", "llm_triton.py")),
    "bls": ("llm_bls.py", ("llm_common.py", "llm_prompt.py", "llm_request.py", "llm_triton.py")),
    "engine": ("llm_engine.py", ("llm_common.py", "llm_generate.py", "llm_grammar.py", "llm_kv.py",
                                 "llm_metrics.py", "llm_scheduler.py", "llm_sequence.py", "llm_slots.py",
                                 "llm_steps.py", "llm_triton.py")),
    "front": ("llm_unary.py", ("llm_common.py", "llm_prompt.py", "llm_request.py", "llm_triton.py")),
}


#: The models of the ensemble layout by role, as NVIDIA's TensorRT-LLM templates name them (model_names: nvidia).
NVIDIA_NAMES = {"ensemble": "ensemble", "preprocessing": "preprocessing", "engine": "tensorrt_llm",
                "postprocessing": "postprocessing", "bls": "tensorrt_llm_bls"}


def _backend_files(role: str) -> dict[str, FileSource]:
    return python_backend_files(*BACKEND_FILES[role])


def model_names(llm: LLMSpec) -> dict[str, str]:
    """The ensemble layout's model names by role: ``<name>``, ``<name>_engine``, ... or NVIDIA's."""
    if llm.model_names == "nvidia":
        return dict(NVIDIA_NAMES)
    return {role: llm.name if role == "ensemble" else f"{llm.name}_{role}" for role in NVIDIA_NAMES}


class _Builder:
    """Builds the units of one ``llms:`` entry, collecting every problem before raising."""

    def __init__(self, loaded: LoadedSpec, index: int, repository_dir: Optional[Path]) -> None:
        self.loaded = loaded
        self.llm: LLMSpec = loaded.spec.llms[index]
        self.loc: Loc = ("llms", index)
        self.repository_dir = (repository_dir or loaded.base_dir / "model_repository").resolve()
        self.problems: list[Problem] = []
        self.names = model_names(self.llm)

    def problem(self, key: Loc, message: str, hint: Optional[str] = None) -> None:
        self.problems.append(self.loaded.problem((*self.loc, *key), message, hint, model=self.llm.name))

    # -- paths ---------------------------------------------------------------------------------

    def local_path(self, value: str, key: Loc, model: str, must_exist: bool) -> str:
        """A path parameter: ``pkg:`` verbatim, a project path relative to the model folder, else absolute."""
        if value.startswith(("pkg:", "hf:")):
            return value.removeprefix("hf:")
        path = Path(value).expanduser()
        resolved = path if path.is_absolute() else (self.loaded.base_dir / path).resolve()
        if not resolved.exists():
            if must_exist:
                self.problem(key, f"names {value!r}, which does not exist ({resolved})",
                             "give a path relative to the spec file, an absolute path, "
                             "pkg:<distribution>/<file>, or hf:<org>/<model> for a Hugging Face hub id")
            # Not here: a hub id, or a path as the serving container sees it; passed on unchanged.
            return value
        if not path.is_absolute() and resolved.is_relative_to(self.loaded.base_dir.resolve()):
            return os.path.relpath(resolved, self.repository_dir / model)
        return str(resolved)

    def tokenizer_source(self) -> str:
        llm = self.llm
        model = self.names["preprocessing"]
        if llm.tokenizer:
            return self.local_path(llm.tokenizer, ("tokenizer",), model, llm.engine.kind == "pytorch")
        if llm.engine.kind == "pytorch" and llm.engine.model:
            return self.local_path(llm.engine.model, ("engine", "model"), model, False)
        if llm.engine.checkpoint:
            return str(llm.engine.checkpoint)
        self.problem((), "needs `tokenizer:` for engine kind tensorrt_llm",
                     "name the Hugging Face tokenizer folder as the server sees it, or set engine.checkpoint")
        return ""

    # -- checks --------------------------------------------------------------------------------

    def check(self) -> None:
        llm, engine = self.llm, self.llm.engine
        if engine.kind == "pytorch":
            for key in ("tensor_parallel_size", "pipeline_parallel_size"):
                if getattr(engine, key) > 1:
                    self.problem(("engine", key), f"is {getattr(engine, key)}, but the pytorch engine runs on one "
                                 "device per instance", "set it to 1, or use engine kind tensorrt_llm")
            if engine.device == "cpu" and any(g.kind == "gpu" or g.gpus for g in llm.instance_group):
                self.problem(("instance_group",), "places the engine on GPUs, but engine.device is cpu",
                             "remove the gpus / kind: gpu, or set engine.device to auto or cuda")
            self.check_context()
        elif engine.kind == "tensorrt_llm":
            self.check_trtllm()
        if engine.kind == "vllm" or llm.layout == "vllm":
            check_vllm(self)
        elif llm.resolved_layout == "llmapi":
            check_llmapi(self)
        elif engine.kind == "tensorrt_llm_api":
            self.problem(("layout",), "is ensemble, but engine kind tensorrt_llm_api serves only the LLM-API layout",
                         "remove layout (llmapi is the default), or use engine kind pytorch or tensorrt_llm")
        if llm.sampling.top_k < 0:
            self.problem(("sampling", "top_k"), "must be >= 0")
        self.check_names()

    def check_names(self) -> None:
        """NVIDIA's model names belong to the ensemble layout, and to one entry of a repository."""
        llm = self.llm
        if llm.model_names != "nvidia":
            return
        if llm.resolved_layout != "ensemble":
            self.problem(("model_names",), f"is nvidia, but the {llm.resolved_layout} layout has one model, named "
                         "after the entry", "add layout: ensemble, or remove model_names")
        first = next(i for i, other in enumerate(self.loaded.spec.llms) if other.model_names == "nvidia")
        if first != self.loc[1]:
            self.problem(("model_names",), f"is nvidia, as llms entry '{self.loaded.spec.llms[first].name}' is: "
                         "two pipelines cannot both be called ensemble, tensorrt_llm, ...",
                         "keep model_names: nvidia on one entry only")

    def check_context(self) -> None:
        """max_input_len + max_output_len must fit the model's context, when its config.json says it."""
        model = self.llm.engine.model or ""
        config = (self.loaded.base_dir / model / "config.json") if not model.startswith("pkg:") else None
        if config is None or not config.is_file():
            return
        context = json.loads(config.read_text()).get("max_position_embeddings")
        total = self.llm.max_input_len + self.llm.max_output_len
        if isinstance(context, int) and total > context:
            self.problem(("max_output_len",), f"plus max_input_len is {total}, beyond the model's context of "
                         f"{context} tokens", f"lower max_input_len or max_output_len to fit {context}")

    def check_trtllm(self) -> None:
        engine = self.llm.engine
        version = self.loaded.spec.triton.version
        if version in releases.known_releases() and not releases.has_engine_backend(releases.release(version)):
            rel, last = releases.release(version), releases.last_engine_release()
            why = releases.trtllm_image_gap(rel) or f"its TensorRT-LLM {rel.trtllm} no longer has it"
            self.problem(("engine", "kind"), f"is tensorrt_llm (the C++ engine backend), which NGC {version}'s images "
                         f"do not ship: {why}; the last release with the backend is {last.ngc} "
                         f"(TensorRT-LLM {last.trtllm})", f"set triton.version to \"{last.ngc}\" or older, or use "
                         "engine kind tensorrt_llm_api on a release that ships it")
        ranks = engine.tensor_parallel_size * engine.pipeline_parallel_size
        for i, group in enumerate(self.llm.instance_group):
            if group.gpus is not None and len(group.gpus) != ranks:
                self.problem(("instance_group", i, "gpus"), f"lists {len(group.gpus)} GPU(s), but the engine needs "
                             f"tensor_parallel_size x pipeline_parallel_size = {ranks} per instance",
                             f"list exactly {ranks} GPU ids")
        for key, value in engine.parameters.items():
            if key not in contract.TRTLLM_PARAMETERS:
                close = suggest(key, contract.TRTLLM_PARAMETERS)
                self.problem(("engine", "parameters", key), "is not a parameter of the tensorrtllm backend",
                             f"did you mean {close!r}?" if close else "see docs/llm.md for the list")
            elif "${" in str(value):
                self.problem(("engine", "parameters", key), f"still holds a template placeholder {value!r}",
                             "write the value itself")

    # -- units ---------------------------------------------------------------------------------

    def base(self, name: str, backend: str) -> pb.ModelConfig:
        config = pb.ModelConfig(name=name, max_batch_size=self.llm.max_batch_size)
        if backend == "ensemble":
            config.platform = "ensemble"
        else:
            config.backend = backend
        return config

    def unit(self, config: pb.ModelConfig, files: dict[str, FileSource]) -> ModelUnit:
        fill_version_policy(config, self.llm.version_policy, LLM_VERSION_POLICY)
        return ModelUnit(name=config.name, config=config, version_files=files, spec_loc=self.loc, origin="llms")

    def python_model(self, suffix: str, count: int, params: Mapping[str, ParameterValue],
                     batching: bool, name: Optional[str] = None) -> ModelUnit:
        config = self.base(name or self.names[suffix], "python")
        llm_config.add_tensors(config, suffix)
        if batching:
            # With a delay of 0 (the default) a request never waits for company, and requests that queue
            # while the instance is busy still go in one batch; ragged inputs let them batch at any length.
            config.dynamic_batching.SetInParent()
            config.dynamic_batching.max_queue_delay_microseconds = self.llm.max_queue_delay_microseconds
        llm_config.add_instances(config, "KIND_CPU", count)
        llm_config.set_parameters(config, params)
        return self.unit(config, _backend_files(suffix))

    def prompt_parameters(self, tokenizer: str) -> dict[str, ParameterValue]:
        """What ``llm_prompt.Preprocessor`` reads: preprocessing's and the BLS's (which tokenises itself)."""
        llm = self.llm
        return {"tokenizer": tokenizer, "chat_template": llm.chat_template, "system_prompt": llm.system_prompt or "",
                "max_input_len": llm.max_input_len, "max_output_len": llm.max_output_len,
                "stop_words": json.dumps(llm.stop_words), "trust_remote_code": llm.trust_remote_code,
                "spec_sampling_defaults": llm_config.spec_sampling_defaults(llm),
                **({"tool_parser": llm.tool_parser} if llm.tool_parser else {})}

    def preprocessing(self, tokenizer: str) -> ModelUnit:
        llm = self.llm
        params = self.prompt_parameters(tokenizer)
        params["unsupported_inputs"] = json.dumps(contract.PREPROCESSING_UNSUPPORTED, sort_keys=True)
        return self.python_model("preprocessing", llm.instances.preprocessing, params, True)

    def postprocessing(self, tokenizer: str) -> ModelUnit:
        params: dict[str, ParameterValue] = {"tokenizer": tokenizer, "trust_remote_code": self.llm.trust_remote_code}
        return self.python_model("postprocessing", self.llm.instances.postprocessing, params, True)

    def front_parameters(self, tokenizer: str) -> dict[str, ParameterValue]:
        """What ``llm_prompt.Router`` reads: the BLS's and the unary front's (both tokenise in-process)."""
        llm = self.llm
        params = self.prompt_parameters(tokenizer)
        params.update({
            "engine_model": self.names["engine"], "max_concurrency": 2 * llm.max_batch_size,
            "unsupported_inputs": json.dumps(contract.BLS_UNSUPPORTED, sort_keys=True),
            "preprocessing_unsupported_inputs": json.dumps(contract.PREPROCESSING_UNSUPPORTED, sort_keys=True),
            "preprocessing_inputs": json.dumps(contract.bls_routes()["preprocessing"], sort_keys=True),
            "engine_inputs": json.dumps(contract.bls_routes()["engine"], sort_keys=True)})
        return params

    def bls(self, tokenizer: str) -> ModelUnit:
        llm = self.llm
        params = self.front_parameters(tokenizer)
        params.update({"engine_kind": llm.engine.kind, "engine_decoupled": llm.streaming})
        # Decoupled with a decoupled engine; without one it answers each request once, as NVIDIA's BLS with
        # decoupled_mode false does, so HTTP infer reaches it (NVIDIA's end_to_end_test --test-bls).
        unit = self.python_model("bls", llm.instances.bls, params, True)
        unit.config.model_transaction_policy.decoupled = llm.streaming
        return unit

    def engine(self, tokenizer: str) -> ModelUnit:
        llm = self.llm
        if llm.engine.kind == "tensorrt_llm":
            config = self.base(self.names["engine"], "tensorrtllm")
            llm_config.fill_trtllm_engine(config, llm)
            return self.unit(config, {})
        config = self.base(self.names["engine"], "python")
        llm_config.add_tensors(config, "engine")
        # The scheduler batches in flight (requests join between steps), so Triton need not hold any back.
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.max_queue_delay_microseconds = llm.max_queue_delay_microseconds
        config.model_transaction_policy.decoupled = llm.streaming
        llm_config.add_pytorch_instances(config, llm)
        source = self.local_path(llm.engine.model or "", ("engine", "model"), config.name, True)
        # The tokenizer compiles guided-decoding grammars against the model's vocabulary.
        params = {**llm_config.pytorch_parameters(llm, source), "tokenizer": tokenizer}
        llm_config.set_parameters(config, params)
        return self.unit(config, _backend_files("engine"))

    def front(self, tokenizer: str) -> ModelUnit:
        """``<name>`` of a decoupled engine: a Python model that tokenises, calls the engine and decodes."""
        params = {**self.front_parameters(tokenizer), **self.neighbours()}
        return self.python_model("front", 1, params, True, name=self.names["ensemble"])

    def ensemble(self) -> ModelUnit:
        names = self.names
        config = self.base(names["ensemble"], "ensemble")
        llm_config.fill_ensemble(config, names["preprocessing"], names["engine"], names["postprocessing"])
        llm_config.set_parameters(config, self.neighbours())
        return self.unit(config, {})

    def neighbours(self) -> dict[str, ParameterValue]:
        """Where a client of ``<name>`` finds the rest of the pipeline: the streaming model and the tokenizer's."""
        return {"streaming_model": self.names["bls"], "preprocessing_model": self.names["preprocessing"]}


def build_llm_units(loaded: LoadedSpec, index: int, repository_dir: Optional[Path] = None) -> list[ModelUnit]:
    """Return the models of ``loaded.spec.llms[index]``.

    The LLM-API layout is one model named after the entry (``model/llmapi.py``); the ensemble layout
    is five: ensemble, preprocessing, engine, postprocessing, bls.

    With ``streaming`` (a decoupled engine) ``<name>`` is not an ensemble: Triton marks an ensemble
    decoupled when any step is, and a decoupled model refuses HTTP ``infer`` and unary gRPC. So
    ``<name>`` is a Python model (``llm_unary.py``) with the ensemble's inputs and outputs that
    tokenises, calls the engine and decodes: the one hop before the engine (an ensemble around it
    would add another).

    Args:
        loaded: the validated spec.
        index: which ``llms:`` entry.
        repository_dir: where the repository will be written (default ``<spec folder>/model_repository``);
            project paths are written relative to each model's folder in it.

    Raises:
        SpecError: located problems with the entry (bad combinations, missing files).

    """
    builder = _Builder(loaded, index, repository_dir)
    builder.check()
    if builder.llm.resolved_layout in ("llmapi", "vllm"):
        if builder.problems:
            raise SpecError(builder.problems)
        unit = build_llmapi_unit(builder) if builder.llm.resolved_layout == "llmapi" else build_vllm_unit(builder)
        if builder.problems:
            raise SpecError(builder.problems)
        return [unit]
    tokenizer = builder.tokenizer_source()
    front = builder.front(tokenizer) if builder.llm.streaming else builder.ensemble()
    units = [front, builder.preprocessing(tokenizer), builder.engine(tokenizer),
             builder.postprocessing(tokenizer),
             builder.bls(tokenizer)]
    if builder.problems:
        raise SpecError(builder.problems)
    return units
