"""Preprocessing of an LLM pipeline: text to token ids for the whole request batch in one tokenizer call.

The work itself is ``llm_prompt.Preprocessor`` (shared with the BLS, which tokenises in its own
process). A malformed request gets an error response of its own, naming the client's input and the
limit.
"""

from __future__ import annotations

import json
from typing import Any

import llm_common
import llm_prompt
import llm_triton


class TritonPythonModel:
    """The ``<name>_preprocessing`` model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the tokenizer and the limits written into config.pbtxt by tritonkit."""
        params = llm_common.read_parameters(json.loads(args["model_config"]))
        tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])
        self.pre = llm_prompt.Preprocessor(params, tokenizer, json.loads(params.get("unsupported_inputs") or "{}"))

    def execute(self, requests: list[Any]) -> list[Any]:
        """Tokenise the prompts of every request in one batched call, then answer each request."""
        results = self.pre.prepare([llm_triton.inputs(request) for request in requests])
        return [llm_triton.error(result) if isinstance(result, Exception) else llm_triton.response(result)
                for result in results]
