"""The PyTorch engine behind tritonkit's LLM-API model: prompts in, text deltas and outputs back.

Copied next to ``llm_api.py``; configured by the model's ``parameters`` (written by tritonkit).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import numpy as np

import llm_common
import llm_generate

Respond = Callable[..., None]


def _strings(*values: str) -> np.ndarray[Any, Any]:
    return np.array([v.encode("utf-8") for v in values], dtype=np.object_)


class LocalEngine:
    """Tokenizer, model and limits of one model instance."""

    def __init__(self, params: dict[str, str], args: dict[str, Any]) -> None:
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        setting = "cuda" if args.get("model_instance_kind") == "GPU" else params.get("device", "auto")
        device = llm_generate.pick_device(setting, device_id)
        if device.type == "cpu":
            llm_generate.set_threads(params.get("num_threads", ""))
        repository = args["model_repository"]
        source = llm_common.resolve_source(params["model"], repository)
        trust = llm_common.parse_bool(params.get("trust_remote_code", ""))
        dtype = llm_generate.pick_dtype(params.get("dtype", "auto"), device)
        self.model = llm_generate.load_model(source, device, dtype, trust)
        self.tokenizer = llm_common.tokenizer_from_parameters(params, repository)
        self.chat = llm_common.parse_bool(params.get("chat_template", "true"), True) and bool(
            getattr(self.tokenizer, "chat_template", None))
        self.system_prompt = params.get("system_prompt", "")
        self.max_input_len = int(params.get("max_input_len") or 2048)
        self.max_output_len = int(params.get("max_output_len") or 512)
        self.default_stops: list[str] = json.loads(params.get("stop_words") or "[]")
        self.end_ids = llm_common.end_ids(self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else (self.end_ids[0] if self.end_ids else 0)
        self.defaults = {"temperature": float(params.get("temperature") or 0.0),
                         "top_k": int(params.get("top_k") or 0), "top_p": float(params.get("top_p") or 1.0),
                         "repetition_penalty": float(params.get("repetition_penalty") or 1.0),
                         "seed": int(params["seed"]) if params.get("seed") else None}
        self.cancelled: set[int] = set()

    def _format(self, text: str) -> str:
        if not self.chat:
            return text
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": text})
        return str(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def prepare(self, job: Any) -> Any:
        """Tokenise the prompt and check it against the limits; raises RequestError naming the input."""
        if not job.prompt.strip():
            raise llm_common.RequestError("input 'text_input' is empty")
        ids = [int(t) for t in self.tokenizer.encode(self._format(job.prompt), add_special_tokens=not self.chat)]
        if len(ids) > self.max_input_len:
            raise llm_common.RequestError(f"input 'text_input' has {len(ids)} tokens; the limit (max_input_len) "
                                          f"is {self.max_input_len}")
        if job.max_tokens < 0:
            raise llm_common.RequestError(f"sampling_param_max_tokens must be at least 1 (got {job.max_tokens})")
        temperature = job.settings.get("temperature", self.defaults["temperature"])
        if temperature < 0 or not 0.0 < job.settings.get("top_p", 1.0) <= 1.0:
            raise llm_common.RequestError("sampling_param_temperature must be >= 0 and sampling_param_top_p in (0, 1]")
        job.ids = ids
        return job

    def _row(self, job: Any) -> llm_generate.Row:
        wanted = job.max_tokens or self.max_output_len
        settings = {**self.defaults, **job.settings}
        return llm_generate.Row(
            prompt=job.ids, max_new_tokens=min(wanted, self.max_output_len), end_ids=list(self.end_ids),
            stop_words=llm_common.encode_words(self.tokenizer, self.default_stops + job.stop_words),
            temperature=float(settings["temperature"]), top_k=int(settings["top_k"]), top_p=float(settings["top_p"]),
            repetition_penalty=float(settings["repetition_penalty"]),
            presence_penalty=float(settings.get("presence_penalty", 0.0)),
            frequency_penalty=float(settings.get("frequency_penalty", 0.0)), seed=settings["seed"],
            logprobs="return_cumulative_logprob" in job.want)

    def cancel(self, job: Any) -> None:
        """Stop ``job`` at the next step (finish reason ``cancelled``)."""
        self.cancelled.add(id(job))

    def run(self, jobs: list[Any], respond: Respond) -> None:
        """Generate for ``jobs`` together, streaming deltas and sending each job's final outputs."""
        _Run(self, jobs, respond).go()


class _Run:
    """One batched generation and the responses it sends."""

    def __init__(self, engine: LocalEngine, jobs: list[Any], respond: Respond) -> None:
        self.engine, self.jobs, self.respond = engine, jobs, respond
        self.decoders = [llm_common.IncrementalDecoder(engine.tokenizer) for _ in jobs]
        self.steps = 0

    def go(self) -> None:
        rows = [self.engine._row(job) for job in self.jobs]
        now = time.time_ns()
        for job in self.jobs:
            job.first_scheduled_ns = now
        llm_generate.generate(self.engine.model, rows, self.engine.pad_id, self._on_step, self._should_stop)

    def _should_stop(self, index: int) -> bool:
        job = self.jobs[index]
        if id(job) in self.engine.cancelled:
            self.engine.cancelled.discard(id(job))
            return True
        return job.sender is not None and self.steps % 4 == 0 and job.sender.is_cancelled()

    def _on_step(self, events: list[tuple[int, llm_generate.Row, list[int]]]) -> None:
        self.steps += 1
        for index, row, new_tokens in events:
            job, decoder = self.jobs[index], self.decoders[index]
            if new_tokens and not job.first_token_ns:
                job.first_token_ns = time.time_ns()
            delta = decoder.push(new_tokens) if job.streaming else ""
            if row.finish_reason is None:
                if delta:
                    self.respond(job, {"text_output": _strings(self._with_prompt(job, delta))}, False)
                continue
            self.respond(job, self._final(job, row, decoder, delta), True)

    def _with_prompt(self, job: Any, text: str) -> str:
        """The prompt goes in front of the first text when the request asked to keep it."""
        if job.exclude_input or job.prompt_sent:
            return text
        job.prompt_sent = True
        return job.prompt + text

    def _final(self, job: Any, row: llm_generate.Row, decoder: llm_common.IncrementalDecoder,
               delta: str) -> dict[str, Any]:
        tokens = row.tokens
        stop_text = ""
        if row.stop_word is not None:
            # Like TensorRT-LLM, the stop string is not part of the answer.
            stop_text = llm_common.decode_text(self.engine.tokenizer, row.stop_word).strip()
            tokens = tokens[: len(tokens) - len(row.stop_word)]
        whole = llm_common.decode_text(self.engine.tokenizer, tokens)
        text = delta + decoder.flush() if job.streaming else whole
        outputs: dict[str, Any] = {"text_output": _strings(self._with_prompt(job, text))}
        if "return_finish_reason" in job.want:
            outputs["finish_reason"] = _strings(row.finish_reason or "")
        if "return_stop_reason" in job.want:
            outputs["stop_reason"] = _strings(stop_text)
        if "return_cumulative_logprob" in job.want:
            outputs["cumulative_logprob"] = np.array([row.cum_logprob], dtype=np.float32)
        if "sampling_param_return_perf_metrics" in job.want:
            times = (("arrival_time_ns", job.arrival_ns), ("first_scheduled_time_ns", job.first_scheduled_ns),
                     ("first_token_time_ns", job.first_token_ns), ("last_token_time_ns", time.time_ns()))
            for name, value in times:
                outputs[name] = np.array([value], dtype=np.int64)
        return outputs

