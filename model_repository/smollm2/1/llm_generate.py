"""Batched token generation with a Hugging Face causal LM: one forward pass per step for every row.

Copied next to the PyTorch engine's ``model.py``; it knows nothing of Triton, so it can be tested alone.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

import llm_common


@dataclass
class Row:
    """One sequence being generated, with its own limits and sampling settings."""

    prompt: list[int]
    max_new_tokens: int
    end_ids: list[int]
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Optional[int] = None
    #: No end id ends the row before it has this many tokens (TensorRT-LLM's ``min_tokens``).
    min_tokens: int = 0
    #: Added to the logits before sampling (TensorRT-LLM's ``embedding_bias``, vocabulary-sized).
    embedding_bias: Optional[list[float]] = None
    #: Record the log probability of each chosen token (``token_logprobs``) and their sum (``cum_logprob``).
    logprobs: bool = False
    #: Also record, per step, this many most likely tokens with their log probabilities (``top``); implies logprobs.
    top_logprobs: int = 0
    #: Token id -> a value added to its logit before sampling (OpenAI's ``logit_bias``; -100 bans, 100 forces).
    logit_bias: dict[int, float] = field(default_factory=dict)
    #: The grammar the tokens must follow (an ``llm_grammar`` matcher), or None; the scheduler masks and advances it.
    grammar: Any = None
    tokens: list[int] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    #: Per step with ``top_logprobs``: the most likely (token id, log probability) pairs, most likely first.
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: Optional[str] = None
    #: The stop word (token ids) that ended the row, when one did.
    stop_word: Optional[list[int]] = None
    cum_logprob: float = 0.0
    generator: Optional[torch.Generator] = None


def pick_device(setting: str, device_id: Optional[int] = None) -> torch.device:
    """Map the spec's device (auto/cpu/cuda) and Triton's instance device id to a torch device."""
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device(f"cuda:{device_id or 0}")


def set_threads(setting: str) -> None:
    """Use ``setting`` CPU threads, or by default half the cores (at most 4).

    OpenMP threads spin while they wait; on a shared CPU, all cores per process made a step of
    SmolLM2-135M 20x slower here (1.7 s vs 0.09 s), so the default stays small.
    """
    count = int(setting) if setting else max(1, min(4, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(count)


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The compute dtype, unless the spec names one: float32 on CPU, bfloat16 (or float16) on CUDA.

    ``dtype: bfloat16`` on a CPU with AVX512-BF16 doubles SmolLM2's speed on this project's machines
    (12.5 -> 24.8 tok/s for one sequence, 67 -> 123 for 8), but its greedy answers then depend on which
    requests share the batch (seen: one of 16 concurrent streams differed from its answer alone), so
    float32 stays the CPU default.
    """
    if setting != "auto":
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[setting]
    if device.type == "cpu":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _convert_gguf(source: str, target_dir: Path) -> None:
    """Dequantise a GGUF once and store it as a plain safetensors checkpoint (transformers refuses to)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM

    folder, gguf = llm_common.split_gguf(source)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, local_files_only=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (target_dir / "config.json").write_text(json.dumps(config, indent=1))
    save_model(model, str(target_dir / "model.safetensors"))


def attention_for(device: torch.device) -> str:
    """Attention kernels for the engine's device.

    On an H200, SDPA called from the scheduler's thread cost 87 ms per decode step of SmolLM2-135M at
    batch 1 (205 ms at 32); eager attention cost 25 (58) ms, as fast as anything on the main thread
    (benchmarks/gpu/engine_steps.py). On CPU, SDPA is as fast or faster.
    """
    return "eager" if device.type == "cuda" else "sdpa"


def load_model(source: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False,
               name: str = "") -> Any:
    """Load a causal LM from a folder, or from a GGUF file through the conversion cache.

    Each slow step is reported on the server's output under the model's ``name`` (see ``report_step``).
    """
    from transformers import AutoModelForCausalLM

    folder, gguf = llm_common.split_gguf(source)
    if gguf is not None:
        target = llm_common.cache_root() / llm_common.cache_key(source, "model")
        if not (target / ".complete").exists():
            llm_common.report_step(name, f"converting {gguf} to a safetensors checkpoint (once; kept in "
                                         f"{target.parent})")
            llm_common.publish_dir(lambda tmp: _convert_gguf(source, tmp), target)
        folder = str(target)
    llm_common.report_step(name, f"loading weights on {device} ({str(dtype).removeprefix('torch.')})")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=trust_remote_code,
                                                 local_files_only=os.path.isdir(folder),
                                                 attn_implementation=attention_for(device))
    # transformers types .to() through a decorator that mypy reads as taking the model itself.
    return model.to(device).eval()  # type: ignore[arg-type]


def load_for_instance(params: dict[str, str], args: dict[str, Any]) -> Any:
    """The model a Triton instance serves: on its GPU for a ``KIND_GPU`` instance, else where ``device`` says.

    ``params`` are the model's config parameters (``model``, ``device``, ``dtype``, ``num_threads``,
    ``trust_remote_code``); ``args`` is what Triton passes to ``initialize``.
    """
    device_id = int(args.get("model_instance_device_id", 0) or 0)
    setting = "cuda" if args.get("model_instance_kind") == "GPU" else params.get("device", "auto")
    device = pick_device(setting, device_id)
    if device.type == "cpu":
        set_threads(params.get("num_threads", ""))
    source = llm_common.resolve_source(params["model"], args["model_repository"])
    trust = llm_common.parse_bool(params.get("trust_remote_code", ""))
    return load_model(source, device, pick_dtype(params.get("dtype", "auto"), device), trust,
                      str(args.get("model_name", "")))


def _penalise(logits: torch.Tensor, row: Row) -> None:
    if row.embedding_bias:
        width = min(len(row.embedding_bias), logits.shape[-1])
        logits[:width] += torch.tensor(row.embedding_bias[:width], dtype=logits.dtype, device=logits.device)
    if row.logit_bias:
        ids = torch.tensor(list(row.logit_bias), dtype=torch.long, device=logits.device)
        logits[ids] += torch.tensor(list(row.logit_bias.values()), dtype=logits.dtype, device=logits.device)
    if len(row.tokens) < row.min_tokens:
        # End ids, and the one-token stop words tritonkit uses for chat turn ends (``<|im_end|>``).
        ends = row.end_ids + [w[0] for w in row.stop_words if len(w) == 1]
        if ends:
            logits[torch.tensor(ends, device=logits.device)] = float("-inf")


def _filter_logits(logits: torch.Tensor, row: Row) -> torch.Tensor:
    _penalise(logits, row)
    for word in row.bad_words:
        # Ban the token that would complete a bad word whose other tokens were just generated.
        if len(word) == 1 or row.tokens[-(len(word) - 1):] == word[:-1]:
            logits[word[-1]] = float("-inf")
    if row.repetition_penalty != 1.0 and (row.prompt or row.tokens):
        seen = torch.tensor(sorted(set(row.prompt + row.tokens)), device=logits.device)
        values = logits[seen]
        logits[seen] = torch.where(values > 0, values / row.repetition_penalty, values * row.repetition_penalty)
    if (row.presence_penalty or row.frequency_penalty) and row.tokens:
        # OpenAI's definition: over the generated tokens, minus presence once and frequency per use.
        seen, counts = torch.unique(torch.tensor(row.tokens, device=logits.device), return_counts=True)
        logits[seen] -= row.presence_penalty + row.frequency_penalty * counts.to(logits.dtype)
    if row.temperature <= 0.0 or row.top_k == 1:
        return logits
    logits = logits / row.temperature
    if row.top_k > 0:
        kth = torch.topk(logits, min(row.top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if row.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) > row.top_p
        logits[order[drop]] = float("-inf")
    return logits


def _choose(logits: torch.Tensor, row: Row) -> int:
    raw = logits.float()
    wants = row.logprobs or row.top_logprobs > 0
    token = _sample(_filter_logits(raw.clone() if wants else raw, row), row)
    if wants:
        record_logprobs(row, raw, token)
    return token


def record_logprobs(row: Row, logits: torch.Tensor, token: int) -> None:
    """Record ``token``'s log probability under ``logits`` (and the step's most likely tokens, if asked).

    As vLLM's server reports them: the model's distribution before temperature, penalties and bias; a grammar's
    mask is applied before (the scheduler masks the logits first), so a token the grammar forbids has none.
    """
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    logprob = float(logprobs[token])
    row.cum_logprob += logprob
    row.token_logprobs.append(logprob)
    if row.top_logprobs > 0:
        values, ids = torch.topk(logprobs, min(row.top_logprobs, logprobs.shape[-1]))
        row.top.append(list(zip(ids.tolist(), values.tolist())))


def is_plain_greedy(row: Row) -> bool:
    """True when the row's next token is the argmax of its logits: no sampling, penalties or bans."""
    return ((row.temperature <= 0.0 or row.top_k == 1) and not row.bad_words and row.repetition_penalty == 1.0
            and not row.presence_penalty and not row.frequency_penalty and not row.logprobs
            and not row.top_logprobs and not row.embedding_bias and not row.logit_bias and row.grammar is None
            and len(row.tokens) >= row.min_tokens)


def record_token(row: Row, token: int) -> None:
    """Record a token chosen outside ``choose_token`` (tokens, finish reason)."""
    _finish(row, token)


def choose_token(logits: torch.Tensor, row: Row) -> int:
    """Pick ``row``'s next token from its logits and record it (tokens, finish reason, log prob)."""
    token = _choose(logits, row)
    _finish(row, token)
    return token


def _sample(logits: torch.Tensor, row: Row) -> int:
    if row.temperature <= 0.0 or row.top_k == 1:
        return int(torch.argmax(logits))
    if row.generator is None:
        row.generator = torch.Generator(device=logits.device)
        if row.seed is not None:
            row.generator.manual_seed(int(row.seed))
        else:
            row.generator.seed()
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=row.generator))


def _finish(row: Row, token: int) -> None:
    if token in row.end_ids:
        row.finish_reason = "stop"
        return
    row.tokens.append(token)
    matched = next((w for w in row.stop_words if len(w) <= len(row.tokens) and row.tokens[-len(w):] == w), None)
    if matched is not None:
        row.finish_reason = "stop"
        row.stop_word = matched
    elif len(row.tokens) >= row.max_new_tokens:
        row.finish_reason = "length"


def _left_pad(rows: list[Row], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r.prompt) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row.prompt):] = torch.tensor(row.prompt, dtype=torch.long)
        mask[i, width - len(row.prompt):] = 1
    return ids.to(device), mask.to(device)


def cache_argument(model: Any) -> str:
    """Return the name under which ``model.forward`` takes and returns the KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and goes away
    in 5.40); older releases know only ``past_key_values``.
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


#: Called after each step with the rows that got a token (or finished) in that step.
StepCallback = Callable[[list[tuple[int, Row, list[int]]]], None]


@torch.inference_mode()
def generate(model: Any, rows: list[Row], pad_id: int, on_step: StepCallback,
             should_stop: Callable[[int], bool] = lambda index: False) -> None:
    """Generate for all rows together: left padding, an attention mask, and one KV cache for the batch.

    ``on_step`` receives ``(index, row, new_tokens)`` for every row that advanced or finished in
    the step; ``should_stop(index)`` cancels a row between steps (finish reason ``cancelled``).
    """
    device = next(model.parameters()).device
    ids, mask = _left_pad(rows, pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache_name = cache_argument(model)
    past = None
    while True:
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    **{cache_name: past})
        past = getattr(out, cache_name)
        last = out.logits[:, -1, :]
        events: list[tuple[int, Row, list[int]]] = []
        next_ids = []
        for index, row in enumerate(rows):
            token = pad_id
            if row.finish_reason is None and should_stop(index):
                row.finish_reason = "cancelled"
                events.append((index, row, []))
            elif row.finish_reason is None:
                token = _choose(last[index], row)
                _finish(row, token)
                events.append((index, row, [] if token in row.end_ids else [token]))
            next_ids.append(token)
        on_step(events)
        if all(r.finish_reason is not None for r in rows):
            return
        ids = torch.tensor(next_ids, dtype=torch.long, device=device).unsqueeze(1)
        mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
        positions = positions[:, -1:] + 1
