"""Where a repository served through Dynamo's front door (Dynamo-Triton) behaves unlike Triton's own endpoints.

Nothing here is an error: the repository loads the same in the ``dynamo.triton`` worker. Each warning
names a request the frontend refuses or answers differently, in Dynamo's own words with their source
(:mod:`tritonkit.triton.dynamo`), at the config field that causes it.
"""

from __future__ import annotations

from collections.abc import Mapping

from tritonclient.grpc import model_config_pb2 as pb

from tritonkit.errors import Problem
from tritonkit.triton.dynamo import (
    FRONT_DOOR,
    HALF_PRECISION,
    HALF_PRECISION_TYPES,
    MODEL_VERSION,
    ROUND_ROBIN,
    SHARED_MEMORY,
    Limitation,
)
from tritonkit.validate._report import ModelEntry, Sink

__all__ = ["check_dynamo"]

#: The input every LLM interface Triton serves declares (ensemble, BLS, LLM-API, vLLM).
_LLM_INPUT = "text_input"


def _quote(limitation: Limitation) -> str:
    return f"Dynamo: \"{limitation.words}\" ({limitation.source})"


def check_dynamo(models: Mapping[str, ModelEntry], sink: Sink, root_name: str) -> None:
    """Warn where Dynamo's frontend refuses or changes what Triton's endpoints would serve for these models."""
    steps = {step.model_name for entry in models.values() if entry.config is not None
             for step in entry.config.ensemble_scheduling.step}
    for entry in models.values():
        if entry.config is None:
            continue
        reached = entry.name not in steps  # a step's tensors stay inside Triton when clients call the ensemble
        if reached:
            _check_half_precision(entry, sink)
        _check_sequences(entry, sink)
        _check_versions(entry, sink)
        if reached and any(tensor.name == _LLM_INPUT for tensor in entry.config.input):
            sink.add(Problem(f"model '{entry.name}' takes '{_LLM_INPUT}': through Dynamo's front door it is a tensor "
                             f"model, so Dynamo's KV-aware routing does not apply to it; {_quote(ROUND_ROBIN)}",
                             path=entry.config_path, line=1, col=1, model=entry.name, severity="note",
                             hint="for KV-aware routing, serve the LLM with Dynamo's own vLLM or TensorRT-LLM "
                                  "worker"))
    if models:
        sink.add(Problem(f"served through Dynamo's front door, clients reach these models over KServe gRPC only, "
                         f"inline tensors only: {_quote(FRONT_DOOR)}; {_quote(SHARED_MEMORY)}", path=root_name,
                         severity="note", hint="point gRPC clients at the frontend's port; HTTP clients and "
                                               "shared-memory regions keep to Triton's own endpoints"))


def _check_half_precision(entry: ModelEntry, sink: Sink) -> None:
    config = entry.config
    assert config is not None
    found: list[tuple[str, int, str, str]] = []
    for kind, tensors in (("input", config.input), ("output", config.output)):
        for index, tensor in enumerate(tensors):
            type_name = pb.DataType.Name(tensor.data_type)
            if type_name in HALF_PRECISION_TYPES:
                found.append((kind, index, tensor.name, type_name.removeprefix("TYPE_")))
    if not found:
        return
    kind, index, _, _ = found[0]
    listed = ", ".join(f"{k} '{name}' ({dtype})" for k, _, name, dtype in found)
    sink.warning(entry, (kind, index, "data_type"),
                 f"{listed}: through Dynamo's front door requests to this model fail; {_quote(HALF_PRECISION)}",
                 hint="give the model FP32 tensors at its edge (cast inside it, or in an ensemble step), or keep "
                      "its clients on Triton's own endpoints")


def _check_sequences(entry: ModelEntry, sink: Sink) -> None:
    config = entry.config
    assert config is not None
    if not config.HasField("sequence_batching"):
        return
    sink.warning(entry, ("sequence_batching",),
                 "sequence_batching keeps a sequence's state in the server that started it, and Dynamo's frontend "
                 "sends each request to the next worker in turn, so with more than one dynamo.triton worker a "
                 f"sequence's requests can reach different servers (reading); {_quote(ROUND_ROBIN)}",
                 hint="serve stateful models from one worker, or keep their clients on Triton's own endpoints")


def _check_versions(entry: ModelEntry, sink: Sink) -> None:
    versions = entry.available_versions()
    if len(versions) < 2:
        return
    default = versions[-1]
    sink.warning(entry, ("version_policy",),
                 f"versions {', '.join(map(str, versions))} are loaded, but through Dynamo's front door a request "
                 f"naming a version gets the default one ({default}); {_quote(MODEL_VERSION)}",
                 hint="load one version per model name (version_policy: latest { num_versions: 1 }), or give "
                      "each version a model of its own")
