"""Request checks shared by the LLM models, and the error codes the gateway maps to HTTP statuses."""

from __future__ import annotations

import sys
from importlib import resources

import numpy as np
import pytest

from tritonkit.gateway.triton import model_error

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common


@pytest.mark.parametrize(("value", "low", "high", "above", "needle"), [
    (float("nan"), 0.0, None, False, "must be a finite number (got nan)"),
    (float("inf"), 0.0, 1.0, True, "must be a finite number (got inf)"),
    (np.float32("-inf"), None, None, False, "must be a finite number (got -inf)"),
    (-0.5, 0.0, None, False, "must be at least 0 (got -0.5)"),
    (0.0, 0.0, 1.0, True, "must be in (0, 1] (got 0.0)"),
    (1.5, 0.0, 1.0, True, "must be in (0, 1] (got 1.5)"),
    ("hot", 0.0, None, False, "must be a number (got 'hot')"),
    (True, 0.0, None, False, "must be a number (got True)"),
])
def test_check_number_refuses_what_would_poison_a_batch(value: object, low: float | None, high: float | None,
                                                        above: bool, needle: str) -> None:
    with pytest.raises(llm_common.RequestError) as caught:
        llm_common.check_number("temperature", value, low, high, above_low=above)
    assert str(caught.value) == f"[invalid_argument] input 'temperature' {needle}"
    assert caught.value.code == "invalid_argument"


@pytest.mark.parametrize("value", [0.0, 0.7, 2, np.float32(1.0), np.int32(3)])
def test_check_number_passes_finite_values_in_range(value: object) -> None:
    assert llm_common.check_number("x", value, 0.0, 5.0) == value


def test_an_error_keeps_the_code_it_was_given_across_models() -> None:
    first = llm_common.RequestError("too long", llm_common.CONTEXT_LENGTH_EXCEEDED)
    again = llm_common.RequestError(str(first))  # the BLS re-raises preprocessing's message
    assert str(again) == "[context_length_exceeded] too long" and again.code == "context_length_exceeded"
    assert llm_common.error_text(OverflowError("int too big")) == "[invalid_argument] int too big"
    assert llm_common.error_text(RuntimeError("CUDA out of memory")) == "[engine_error] CUDA out of memory"


@pytest.mark.parametrize(("message", "status", "code"), [
    ("[invalid_argument] input 'sampling_param_temperature' must be a finite number (got nan)", 400, None),
    ("[context_length_exceeded] input 'text_input' has 2000 tokens", 400, "context_length_exceeded"),
    ("[unsupported] input 'lora_id' is not supported", 400, "unsupported"),
    ("[overloaded] 256 requests are waiting already", 503, "overloaded"),
    ("[engine_error] generation failed: CUDA error", 500, "engine_error"),
    # A message without a code (another backend's) is the model refusing the request: its text is not read.
    ("generation failed: tokens over the limit", 400, None),
])
def test_the_gateway_maps_codes_not_message_text(message: str, status: int, code: str | None) -> None:
    error = model_error("smollm2", message)
    assert (error.status, error.code) == (status, code)
    assert message in error.message
    assert ("Retry-After" in error.headers) == (status == 503)


def _tokenizer_that_adds_a_bos() -> object:
    """A real fast tokenizer (word level) whose encode() puts <s> in front, as Llama's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "<unk>": 1, "The": 2, "capital": 3, "user": 4, "hi": 5}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", unk_token="<unk>")


def test_a_text_that_starts_with_the_bos_gets_no_second_one() -> None:
    tokenizer = _tokenizer_that_adds_a_bos()
    raw, templated = "The capital", "<s> user hi"  # a completion prompt; a conversation a chat template wrote
    assert llm_common.adds_special_tokens(tokenizer, raw) and not llm_common.adds_special_tokens(tokenizer, templated)
    ids = [tokenizer.encode(text, add_special_tokens=llm_common.adds_special_tokens(tokenizer, text))
           for text in (raw, templated)]
    assert ids == [[0, 2, 3], [0, 4, 5]]
    assert tokenizer.encode(templated) == [0, 0, 4, 5]  # what always adding them gave: two
