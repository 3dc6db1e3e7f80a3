"""Find a Hugging Face model's ``config.json``: in the local Hugging Face cache, else on the hub.

``plan --model hf:<org>/<name>`` reads only this one file. The cache is read here, by its documented
layout, so a cached model plans without ``huggingface_hub``:

    <cache>/models--<org>--<name>/refs/main                     the commit ``main`` points at
    <cache>/models--<org>--<name>/snapshots/<commit>/config.json

``<cache>`` is ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
``~/.cache/huggingface/hub``, as ``huggingface_hub`` has it. Only a file the cache does not hold is
downloaded (``huggingface_hub.hf_hub_download``, into the same cache), and never with
``HF_HUB_OFFLINE`` set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from tritonkit.capacity.architecture import PlanError
from tritonkit.errors import Problem

__all__ = ["HF_PREFIX", "cache_folder", "config_path", "hub_cache_dir"]

#: The prefix that marks a Hugging Face hub id, as in an ``llms:`` entry's ``engine.model``.
HF_PREFIX = "hf:"

_CONFIG = "config.json"
_REVISION = "main"
# A hub id: a name or org/name, letters, digits, '-', '_' and '.', as the hub accepts them.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_TRUE = ("1", "on", "yes", "true")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache this process would use (the environment read now, not at import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def cache_folder(repo_id: str, cache: Optional[Path] = None) -> Path:
    """The cache folder of model ``repo_id``: ``<cache>/models--<org>--<name>``."""
    return (cache or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cached(folder: Path) -> Optional[Path]:
    """``config.json`` of the revision ``main`` in a model's cache folder, if the cache holds it."""
    revision = _REVISION
    ref = folder / "refs" / _REVISION
    if ref.is_file():
        revision = ref.read_text(encoding="utf-8").strip() or _REVISION
    path = folder / "snapshots" / revision / _CONFIG
    return path if path.is_file() else None


def _where_to_put(repo_id: str, folder: Path) -> str:
    return (f"put the model's config.json at {folder / 'snapshots' / _REVISION / _CONFIG} (the Hugging Face "
            "cache is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), or download it "
            f"anywhere and pass --model PATH/config.json; on a machine online, `hf download {repo_id} config.json` "
            "fills the cache")


def config_path(source: str) -> Path:
    """The local ``config.json`` of ``source`` (``hf:<org>/<name>``), downloaded into the cache if need be.

    Raises:
        PlanError: the id is malformed, or the file is neither cached nor obtainable from the hub
            (offline, unreachable, no such model, gated, or no config.json in it); the message says
            where to put the file.

    """
    repo_id = source[len(HF_PREFIX):] if source.startswith(HF_PREFIX) else source
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise PlanError(Problem(f"{source!r} is not a Hugging Face model id", path="--model",
                                hint="write hf:<org>/<name>, e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct"))
    cache = hub_cache_dir()
    folder = cache_folder(repo_id, cache)
    found = _cached(folder)
    if found is not None:
        return found
    if _offline():
        raise PlanError(Problem(f"{repo_id}'s config.json is not in the Hugging Face cache ({cache}), and "
                                "HF_HUB_OFFLINE is set, so the hub is not asked", path="--model",
                                hint=_where_to_put(repo_id, folder)))
    return _download(repo_id, cache, folder)


def _download(repo_id: str, cache: Path, folder: Path) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PlanError(Problem(f"{repo_id}'s config.json is not in the Hugging Face cache ({cache}), and "
                                "huggingface_hub, which would download it, is not installed", path="--model",
                                hint="pip install huggingface_hub (it comes with tritonkit[llm]), or "
                                     + _where_to_put(repo_id, folder))) from None
    try:  # huggingface_hub >= 0.25 keeps its exceptions here; older releases in .utils
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
        from huggingface_hub.utils import (  # type: ignore[attr-defined]
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    try:
        return Path(hf_hub_download(repo_id, _CONFIG, revision=_REVISION, cache_dir=str(cache)))
    except LocalEntryNotFoundError:  # the hub could not be reached (a subclass of EntryNotFoundError)
        message, hint = (f"{repo_id}'s config.json is not in the Hugging Face cache ({cache}), and the Hugging "
                         "Face hub cannot be reached", _where_to_put(repo_id, folder))
    except GatedRepoError:
        message, hint = (f"{repo_id} is gated on the Hugging Face hub",
                         "accept its terms on its hub page and log in (`hf auth login` or HF_TOKEN), or "
                         + _where_to_put(repo_id, folder))
    except RepositoryNotFoundError:
        message, hint = (f"no model {repo_id} on the Hugging Face hub (or it is private)",
                         "check the id; for a private model log in (`hf auth login` or HF_TOKEN)")
    except EntryNotFoundError:
        message, hint = (f"{repo_id} on the Hugging Face hub has no config.json",
                         "plan a .gguf file of it (--model PATH.gguf), or a preset")
    except Exception as exc:  # no connection, a proxy, an HTTP error: all end the same way
        reason = (str(exc).splitlines() or [""])[0]
        message, hint = (f"{repo_id}'s config.json is not in the Hugging Face cache ({cache}), and the hub did "
                         f"not give it ({type(exc).__name__}{': ' + reason if reason else ''})",
                         _where_to_put(repo_id, folder))
    raise PlanError(Problem(message, path="--model", hint=hint))
