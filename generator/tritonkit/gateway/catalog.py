"""Which LLMs a Triton server serves, read from its repository index and model configs, with their tokenizers.

An LLM is a READY model with a ``text_input`` input, unless it is the streaming side of another (its
``streaming_model`` parameter, else ``<name>_bls``). Each gets the two Triton models the gateway sends to:
one for whole answers and one for streams (the model itself when it is decoupled, else its streaming model
when served, else none).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tritonkit.triton.llmapi import TEMPLATE_INPUT, interface_of

__all__ = ["LLM", "Catalog", "Target", "backend_common", "load_tokenizer"]

_LOG = logging.getLogger("tritonkit.gateway")
#: Seconds between two re-reads of the index caused by requests for unknown models.
_REFRESH_EVERY_S = 2.0


@dataclass(frozen=True)
class Target:
    """One Triton model requests are sent to: its inputs (name -> (datatype, rank)) and batching."""

    name: str
    inputs: dict[str, tuple[str, int]]
    batched: bool
    decoupled: bool


@dataclass
class LLM:
    """One model the gateway lists under ``/v1/models``, with what it needs to talk to it."""

    name: str
    interface: str
    unary: Target
    streaming: Optional[Target]
    parameters: dict[str, str]
    #: Where the tokenizer parameters came from (the model, or its ``_preprocessing`` model).
    parameter_owner: str
    created: int = field(default_factory=lambda: int(time.time()))
    tokenizer: Any = None
    tokenizer_problem: Optional[str] = None

    @property
    def templates_itself(self) -> bool:
        """True when the model applies its tokenizer's chat template to ``text_input`` itself."""
        has_template = self.tokenizer is None or bool(getattr(self.tokenizer, "chat_template", None))
        return self.parameters.get("chat_template", "false").strip().lower() == "true" and has_template

    @property
    def template_switch(self) -> bool:
        """True when a request can turn the model's own templating off (``apply_chat_template: false``)."""
        targets = [self.unary] + ([self.streaming] if self.streaming is not None else [])
        return all(TEMPLATE_INPUT in target.inputs for target in targets)

    @property
    def templated_by_model(self) -> bool:
        """True when what the gateway sends is templated again by the model (it cannot be told not to)."""
        return self.templates_itself and not self.template_switch

    @functools.cached_property
    def spec_defaults(self) -> frozenset[str]:
        """The sampling fields whose defaults the spec set (the gateway leaves those to the model)."""
        text = self.parameters.get("spec_sampling_defaults", "")
        try:
            found = json.loads(text) if text else {}
        except ValueError:
            return frozenset()
        return frozenset(found) if isinstance(found, dict) else frozenset()

    def limit(self, name: str) -> Optional[int]:
        """An integer parameter such as ``max_input_len``, or None when the model does not say."""
        text = self.parameters.get(name, "")
        return int(text) if text.strip().isdigit() else None


def _datatype(config_type: str) -> str:
    name = config_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()}


def _target(config: dict[str, Any]) -> Target:
    inputs = {i["name"]: (_datatype(i.get("data_type", "TYPE_STRING")), len(i.get("dims", [])))
              for i in config.get("input", [])}
    batched = int(config.get("max_batch_size", 0) or 0) > 0
    decoupled = bool((config.get("model_transaction_policy") or {}).get("decoupled"))
    return Target(str(config["name"]), inputs, batched, decoupled)


def _streaming_name(name: str, configs: dict[str, dict[str, Any]]) -> str:
    """The model that streams for ``name``: as its ``streaming_model`` parameter says, else ``<name>_bls``."""
    return _parameters(configs[name]).get("streaming_model") or f"{name}_bls"


def _llm(name: str, configs: dict[str, dict[str, Any]]) -> LLM:
    unary = _target(configs[name])
    bls = configs.get(_streaming_name(name, configs))
    streaming = unary if unary.decoupled else (_target(bls) if bls and _target(bls).decoupled else None)
    own = _parameters(configs[name])
    owner = name if "tokenizer" in own else own.get("preprocessing_model") or f"{name}_preprocessing"
    parameters = _parameters(configs.get(owner, configs[name]))
    return LLM(name=name, interface=interface_of(frozenset(unary.inputs)), unary=unary, streaming=streaming,
               parameters=parameters, parameter_owner=owner)


@functools.cache
def backend_common() -> Any:
    """The backends' own helpers (``python_backends/llm_common.py``): the gateway reads, counts and cuts as they do."""
    return importlib.import_module("tritonkit.python_backends.llm_common")


def load_tokenizer(llm: LLM, repository: Optional[Path]) -> None:
    """Load ``llm``'s tokenizer from its ``tokenizer`` parameter; on failure, record why (``tokenizer_problem``).

    The parameter is a path relative to the model's folder, an absolute path, a Hugging Face folder or
    ``pkg:<distribution>/<file>``; the backends' own helper (``python_backends/llm_common.py``) reads it, so
    the gateway counts tokens with the very tokenizer the model uses.
    """
    value = llm.parameters.get("tokenizer", "")
    if not value:
        llm.tokenizer_problem = f"model '{llm.parameter_owner}' has no 'tokenizer' parameter"
        return
    common = backend_common()
    folder = str(repository / llm.parameter_owner) if repository is not None else "."
    source = common.resolve_source(value, folder)
    try:
        llm.tokenizer = common.load_tokenizer(source, common.parse_bool(llm.parameters.get("trust_remote_code", "")))
    except Exception as exc:
        where = "" if repository is not None else " (pass --model-repository to resolve relative paths)"
        llm.tokenizer_problem = f"tokenizer '{value}' of model '{llm.name}' could not be loaded{where}: {exc}"
        _LOG.warning("%s", llm.tokenizer_problem)


class Catalog:
    """The LLMs one Triton server serves, re-read when a request names one not seen yet."""

    def __init__(self, client: Any, repository: Optional[Path] = None) -> None:
        self.client = client
        self.repository = repository
        self.llms: dict[str, LLM] = {}
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Re-read the index and the configs of the READY models; load tokenizers of new LLMs (in a thread)."""
        async with self._lock:
            index = (await self.client.get_model_repository_index(as_json=True)).get("models", [])
            ready = sorted({m["name"] for m in index if m.get("state") == "READY"})
            configs = {}
            for name in ready:
                configs[name] = (await self.client.get_model_config(name, as_json=True))["config"]
            with_text = [n for n in ready if "text_input" in _parameters_free_inputs(configs[n])]
            # The streaming side of another (its BLS) is not an LLM of its own.
            streaming_sides = {_streaming_name(n, configs) for n in with_text}
            names = [n for n in with_text if n not in streaming_sides]
            llms = {}
            for name in names:
                known = self.llms.get(name)
                llms[name] = known if known is not None else _llm(name, configs)
                if known is None:
                    await asyncio.to_thread(load_tokenizer, llms[name], self.repository)
            self.llms = llms
            self._read_at = time.monotonic()

    async def find(self, name: str) -> Optional[LLM]:
        """The LLM called ``name``, re-reading the index (at most every 2 s) when it is not known."""
        if name not in self.llms and time.monotonic() - self._read_at > _REFRESH_EVERY_S:
            await self.refresh()
        return self.llms.get(name)


def _parameters_free_inputs(config: dict[str, Any]) -> set[str]:
    return {str(i.get("name")) for i in config.get("input", [])}
