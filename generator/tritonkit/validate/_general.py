"""Rules every model obeys: its name, its versions, its backend and model file, its tensors."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any, Optional, Union

from tritonkit.triton import ENSEMBLE, FILE_BACKENDS, NGC_BACKENDS, PLATFORM_BACKENDS, default_model_file
from tritonkit.validate._report import ModelEntry, Sink
from tritonkit.validate._tensors import batch_io_problems, tensor_problems

__all__ = ["check_backend_present", "check_general", "resolve_backend"]

_BACKEND_NAMES = "backend: \"python\" (or onnxruntime, tensorrt, pytorch ...), or platform: \"ensemble\""


def resolve_backend(entry: ModelEntry) -> str:
    """Return the backend Triton would pick for the model, ``"ensemble"``, or ``""`` if none."""
    config = entry.config
    if config is None:
        return _backend_from_files(entry)
    if config.platform == ENSEMBLE and not config.backend:
        return ENSEMBLE
    if config.backend:
        return str(config.backend)
    if config.platform:
        return PLATFORM_BACKENDS.get(config.platform, "")
    return FILE_BACKENDS.get(config.default_model_filename) or _backend_from_files(entry)


def _backend_from_files(entry: ModelEntry) -> str:
    latest = entry.available_versions()[-1:]
    files = set(entry.versions[latest[0]]) if latest else set()
    for filename, backend in FILE_BACKENDS.items():
        if filename in files:
            return backend
    if "." in entry.name:
        return str(entry.name.split(".", 1)[1])
    return ""


def check_general(entry: ModelEntry, sink: Sink) -> None:
    """Check name, versions, backend and platform, the model file, and every tensor."""
    if entry.config is None and not entry.has_config_file:
        if _check_no_config(entry, sink):
            _check_name_and_versions(entry, sink)
        return
    _check_name_and_versions(entry, sink)
    if entry.config is None:
        return
    if _check_backend(entry, sink):
        _check_model_file(entry, sink)
    if entry.config.max_batch_size < 0:
        sink.error(entry, ("max_batch_size",),
                   f"'max_batch_size' must be non-negative value for {entry.name} "
                   f"(got {entry.config.max_batch_size})",
                   hint="use 0 for a model without a batch dimension, or the largest batch it takes")
    for kind in ("input", "output"):
        for index, tensor in enumerate(getattr(entry.config, kind)):
            _check_tensor(entry, sink, kind, index, tensor)
    _warn_batch_dim(entry, sink)
    for field, index, message, hint in batch_io_problems(entry.config):
        sink.error(entry, (field, index), f"{message} for {entry.name}", hint=hint)


def check_backend_present(entry: ModelEntry, sink: Sink, backend: str, backends: Optional[Collection[str]]) -> None:
    """Whether the serving host has the model's backend: exact with ``backends``, else a warning for unusual ones."""
    if not backend or backend == ENSEMBLE:
        return
    message = f"unable to find backend library for backend '{backend}', try specifying runtime on the model " \
              "configuration."
    if backends is not None and backend not in backends:
        sink.error(entry, ("backend",), message, hint=f"the server has: {', '.join(sorted(backends))}")
    elif backends is None and backend not in NGC_BACKENDS:
        sink.warning(entry, ("backend",), f"backend '{backend}' is not one NGC's tritonserver images ship; where "
                                          f"the server lacks it, Triton says: {message}",
                     hint="pass --backends with the serving host's backends to check it exactly")


def _check_name_and_versions(entry: ModelEntry, sink: Sink) -> None:
    config = entry.config
    if config is not None and config.name and config.name != entry.name:
        sink.error(entry, ("name",),
                   f"unexpected directory name '{entry.name}' for model '{config.name}', "
                   "directory name must equal model name",
                   hint=f"set name: \"{entry.name}\", or rename the folder to '{config.name}'")
    if not entry.available_versions():
        found = sorted(entry.versions)
        detail = f" (version folders found: {', '.join(map(str, found))})" if found else ""
        sink.error(entry, ("version_policy",),
                   f"at least one version must be available under the version policy of model "
                   f"'{entry.name}'{detail}",
                   hint=f"create a numeric version folder such as {entry.folder}/1/ "
                        "(ensembles need one too, even empty)")


def _check_no_config(entry: ModelEntry, sink: Sink) -> bool:
    """Report a model folder without config.pbtxt; return True when Triton can still pick a backend."""
    backend = _backend_from_files(entry)
    if backend:
        sink.warning(entry, (), "no config.pbtxt: Triton will derive the configuration from the model",
                     hint="write a config.pbtxt so that inputs, outputs and batching are explicit")
        return True
    sink.error(entry, (),
               f"Could not determine backend for model '{entry.name}' with no backend in model "
               "configuration (no config.pbtxt and no known model file)",
               hint=f"add {entry.folder}/config.pbtxt with {_BACKEND_NAMES}, or move the folder out of "
                    "the repository")
    return False


def _check_backend(entry: ModelEntry, sink: Sink) -> bool:
    """Check backend/platform; return True when the backend is known well enough to go on."""
    assert entry.config is not None
    config = entry.config
    if config.platform == ENSEMBLE and config.backend:
        sink.error(entry, ("backend",),
                   f"Ensemble model '{entry.name}' must have platform type 'ensemble' and empty "
                   "backend type", hint="remove the backend line")
        return False
    backend = resolve_backend(entry)
    if not backend:
        what = f"unexpected platform type '{config.platform}'" if config.platform else \
            f"Could not determine backend for model '{entry.name}' with no backend in model configuration"
        close = difflib.get_close_matches(config.platform, [*PLATFORM_BACKENDS, ENSEMBLE], n=1)
        sink.error(entry, ("platform",) if config.platform else (), what,
                   hint=f"did you mean '{close[0]}'?" if close else f"set {_BACKEND_NAMES}")
        return False
    paired = PLATFORM_BACKENDS.get(config.platform)
    if config.backend in set(PLATFORM_BACKENDS.values()) and config.platform and paired != config.backend:
        sink.error(entry, ("platform",),
                   f"unexpected 'platform' and 'backend' pair, got:{config.platform}, {config.backend}",
                   hint="remove the platform line; the backend alone is enough")
        return False
    return True


def _check_model_file(entry: ModelEntry, sink: Sink) -> None:
    assert entry.config is not None
    backend = resolve_backend(entry)
    filename = default_model_file(backend, entry.config.platform, entry.config.default_model_filename)
    if backend == ENSEMBLE or filename is None:
        return
    for version in entry.available_versions():
        if filename in entry.versions[version] or entry.config.cc_model_filenames:
            continue
        where = ("default_model_filename",) if entry.config.default_model_filename else ("backend",)
        sink.error(entry, where,
                   f"version {version} of model '{entry.name}' has no '{filename}', the file the "
                   f"{backend} backend loads", path=None,
                   hint=f"put the model file at {entry.folder}/{version}/{filename}, or set "
                        "default_model_filename to the file's name")


def _warn_batch_dim(entry: ModelEntry, sink: Sink) -> None:
    """Warn about an image-like [N, C, H, W] / [N, H, W, C] shape whose N looks like the batch dimension."""
    assert entry.config is not None
    limit = entry.config.max_batch_size
    for kind in ("input", "output"):
        for index, tensor in enumerate(getattr(entry.config, kind)):
            dims = list(tensor.dims)
            if limit > 0 and len(dims) == 4 and dims[0] in (-1, 1, limit) and (dims[1] in (1, 3) or dims[3] in (1, 3)):
                sink.warning(entry, (kind, index, "dims"),
                             f"{kind} '{tensor.name}' dims {dims} look like they include the batch dimension, "
                             f"but max_batch_size {limit} already adds one: the full shape is {[-1, *dims]}",
                             hint=f"drop the leading dimension (dims: {dims[1:]}), or set max_batch_size: 0")


def _check_tensor(entry: ModelEntry, sink: Sink, kind: str, index: int, tensor: Any) -> None:
    assert entry.config is not None
    if entry.auto_complete and tensor.name and not (tensor.data_type and tensor.dims):
        entry.left_to_auto_complete.append(f"{kind} '{tensor.name}' data_type and dims")
        return  # python_backend's add_input/add_output fill a declared tensor's missing type and dims
    for field, message, hint in tensor_problems(kind, tensor, entry.config):
        where: tuple[Union[str, int], ...] = (kind, index, field) if field else (kind, index)
        sink.error(entry, where, f"model {kind} {message} for {entry.name}", hint=hint)
