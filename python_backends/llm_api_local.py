"""The PyTorch engine behind tritonkit's LLM-API model: prompts in, text deltas and outputs back.

Requests go to the in-flight scheduler (``llm_scheduler.py``): they join the running batch at the
next step and leave it when done. The scheduler's thread only hands each step's tokens over; one
sender thread detokenises them and sends the responses while the GPU computes the next step (at
concurrency 64 on an H200, responses sent from the scheduler's thread doubled the time between tokens).

Copied next to ``llm_api.py``; configured by the model's ``parameters`` (written by tritonkit).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any, Callable, Optional

import numpy as np

import llm_common
import llm_generate
import llm_request
import llm_scheduler

Respond = Callable[..., None]
#: What a request may set each sampling value to: (lowest, highest, whether the lowest is excluded).
_SAMPLING_RANGES: dict[str, tuple[Optional[float], Optional[float], bool]] = {
    "temperature": (0.0, None, False), "top_p": (0.0, 1.0, True), "top_k": (0, 2**31 - 1, False),
    "frequency_penalty": (None, None, False), "presence_penalty": (None, None, False), "seed": (0, 2**64 - 1, False)}


class _Sender:
    """One thread that turns queued tokens into responses, stream by stream in order.

    When it falls behind (many streams, each step's responses taking longer than the step), the
    tokens one stream got meanwhile go out in one response: one detokenisation and one send
    instead of several, so the engine never waits for its responses.
    """

    def __init__(self) -> None:
        self.work: queue.SimpleQueue[Optional[tuple[_Stream, Any, list[int], bool]]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="llm-responses", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            items = [self.work.get()]
            while not self.work.empty():
                items.append(self.work.get_nowait())
            merged: dict[tuple[_Stream, Any], tuple[list[int], bool]] = {}
            for item in items:
                if item is None:
                    self._send_all(merged)
                    return
                stream, request, tokens, final = item
                seen = merged.get((stream, request))
                merged[(stream, request)] = ((seen[0] if seen else []) + tokens, final)
            self._send_all(merged)

    @staticmethod
    def _send_all(merged: dict[tuple[_Stream, Any], tuple[list[int], bool]]) -> None:
        for (stream, request), (tokens, final) in merged.items():
            try:
                stream.send(request, tokens, final)
            except Exception as exc:  # one broken response must not stop every other stream
                print(f"tritonkit engine: a response failed: {exc!r}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self.work.put(None)
        self.thread.join(timeout=10)


class LocalEngine:
    """Tokenizer, model, limits and in-flight scheduler of one model instance."""

    def __init__(self, params: dict[str, str], args: dict[str, Any]) -> None:
        self.model = llm_generate.load_for_instance(params, args)
        self.tokenizer = llm_common.tokenizer_from_parameters(params, args["model_repository"])
        self.chat = llm_common.parse_bool(params.get("chat_template", "true"), True) and bool(
            getattr(self.tokenizer, "chat_template", None))
        self.system_prompt = params.get("system_prompt", "")
        self.max_input_len = int(params.get("max_input_len") or 2048)
        self.max_output_len = int(params.get("max_output_len") or 512)
        self.default_stops: list[str] = json.loads(params.get("stop_words") or "[]")
        self.token_bytes = llm_common.longest_token_bytes(self.tokenizer)
        self.token_texts = llm_common.TokenTexts(self.tokenizer)
        #: The logits' width: the model's vocabulary (often padded past the tokenizer's).
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.max_batch = int(params.get("max_batch_size") or 8)
        self._grammars: Any = None
        self.end_ids = llm_common.end_ids(self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else (self.end_ids[0] if self.end_ids else 0)
        self.defaults = {"temperature": float(params.get("temperature") or 0.0),
                         "top_k": int(params.get("top_k") or 0), "top_p": float(params.get("top_p") or 1.0),
                         "repetition_penalty": float(params.get("repetition_penalty") or 1.0),
                         "seed": int(params["seed"]) if params.get("seed") else None}
        self.scheduler = llm_scheduler.engine_from_parameters(
            self.model, self.pad_id, params, self.max_batch, self.max_input_len + self.max_output_len)
        self.sender = _Sender()
        # The scheduler's and the sender's threads take turns on the GIL: without a shorter switch
        # interval than Python's 5 ms, one waits that long for the other in the middle of a step.
        sys.setswitchinterval(0.0005)

    def _format(self, text: str, chat: bool) -> str:
        if not chat:
            return text
        return llm_common.render_chat(self.tokenizer, self.system_prompt, text)

    def prepare(self, job: Any) -> Any:
        """Check the request, then tokenise its prompt; raises RequestError naming the input at fault.

        Everything that can be checked without the tokenizer is checked first, and a prompt that cannot fit
        by its size in bytes is refused without tokenising it: a malformed request costs milliseconds.
        """
        llm_common.check_prompt_present(job.prompt)
        if job.max_tokens < 0:
            raise llm_common.RequestError(
                f"input 'sampling_param_max_tokens' must be at least 1 (got {job.max_tokens})")
        self._check_sampling(job.settings)
        if job.n > self.max_batch:
            raise llm_common.RequestError(
                f"input 'sampling_param_n' is {job.n}; this model runs at most {self.max_batch} sequences at once "
                f"(max_batch_size), so n may be at most {self.max_batch}")
        outside = sorted(t for t in job.logit_bias if t >= self.vocab_size)
        if outside:
            raise llm_common.RequestError(f"input 'sampling_param_logit_bias' names token id {outside[0]}, outside "
                                          f"the vocabulary (ids 0 to {self.vocab_size - 1})")
        if job.guide is not None:  # compiled here, on the request's thread: never on the scheduler's
            job.grammar = self.grammars().compile(*job.guide)
        llm_common.check_prompt_bytes(job.prompt, self.max_input_len, self.token_bytes)
        # A request may turn the template off (the gateway templates whole conversations itself), never on
        # for a tokenizer that has none.
        chat = self.chat if job.chat_template is None else job.chat_template and self.chat
        text = self._format(job.prompt, chat)
        special = not chat and llm_common.adds_special_tokens(self.tokenizer, text)
        ids = [int(t) for t in self.tokenizer.encode(text, add_special_tokens=special)]
        llm_common.check_prompt_tokens(len(ids), self.max_input_len)
        job.ids = ids
        return job

    @staticmethod
    def _check_sampling(settings: dict[str, Any]) -> None:
        """Each sampling value a request sets is finite and in range (a NaN temperature would poison the batch)."""
        for key, (low, high, above_low) in _SAMPLING_RANGES.items():
            if key in settings:
                settings[key] = llm_common.check_number(f"sampling_param_{key}", settings[key], low, high,
                                                        above_low=above_low)

    def grammars(self) -> Any:
        """The grammar compiler for this model's tokenizer (made at the first guided request)."""
        if self._grammars is None:
            import llm_grammar  # copied next to the engine; the grammar library loads only when a request needs it

            self._grammars = llm_grammar.GrammarCompiler(self.tokenizer, self.end_ids)
        return self._grammars

    def _row(self, job: Any, index: int = 0) -> llm_generate.Row:
        wanted = job.max_tokens or self.max_output_len
        settings = {**self.defaults, **job.settings}
        seed = settings["seed"]
        if seed is not None and index:  # each of n sequences its own stream of samples, reproducible
            seed = (int(seed) + index) % 2**64
        return llm_generate.Row(
            prompt=job.ids, max_new_tokens=min(wanted, self.max_output_len), end_ids=list(self.end_ids),
            stop_words=llm_common.encode_words(self.tokenizer, self.default_stops + job.stop_words),
            temperature=float(settings["temperature"]), top_k=int(settings["top_k"]), top_p=float(settings["top_p"]),
            repetition_penalty=float(settings["repetition_penalty"]),
            presence_penalty=float(settings.get("presence_penalty", 0.0)),
            frequency_penalty=float(settings.get("frequency_penalty", 0.0)), seed=seed,
            logprobs="return_cumulative_logprob" in job.want or job.logprobs is not None,
            top_logprobs=job.logprobs or 0, logit_bias=dict(job.logit_bias),
            grammar=job.grammar.matcher(self.end_ids) if job.grammar is not None else None)

    def stop(self) -> None:
        """End the scheduler's and the sender's threads (the model is unloading)."""
        self.scheduler.stop()
        self.sender.stop()

    def cancel(self, job: Any) -> None:
        """Stop ``job``'s sequences at the next step (finish reason ``cancelled``)."""
        for request in job.engine_requests:
            self.scheduler.cancel(request)

    def run(self, jobs: list[Any], respond: Respond) -> None:
        """Hand ``jobs`` to the in-flight scheduler; without response senders, wait until they are done.

        A job asking for ``n`` sequences is ``n`` engine requests of one prompt, submitted together: they are
        prefilled in one step, the prompt computed once (``llm_steps``), and answered as one response stream.
        """
        streams = []
        for job in jobs:
            stream = _Stream(self, job, respond)
            streams.append(stream)
            job.engine_requests = [llm_scheduler.Request(self._row(job, i), stream.on_tokens) for i in range(job.n)]
            stream.requests = list(job.engine_requests)
            job.first_scheduled_ns = time.time_ns()
            try:
                for request in job.engine_requests:
                    self.scheduler.submit(request)
            except (llm_scheduler.QueueFullError, ValueError) as exc:
                for request in job.engine_requests:
                    self.scheduler.cancel(request)
                job.engine_requests = []
                stream.answered.set()
                respond(job, None, True, error=llm_common.error_text(exc))
        for job, stream in zip(jobs, streams):
            if job.sender is None:
                stream.answered.wait()


class _Stream:
    """Turns one request's tokens into responses: text deltas while streaming, the outputs at the end.

    Each output holds one element per sequence (``n`` of them; one unless the request set
    ``sampling_param_n``). A streamed response carries the sequences that got text ("" for the others);
    the final response comes once every sequence is done, with each one's finish reason.
    """

    def __init__(self, engine: LocalEngine, job: Any, respond: Respond) -> None:
        self.engine, self.job, self.respond = engine, job, respond
        #: The job's engine requests, sequence 0 first.
        self.requests: list[Any] = []
        self.decoders = [llm_common.IncrementalDecoder(engine.tokenizer) for _ in range(job.n)]
        #: Per sequence: the text still to send with the final response, once it finished.
        self.finished: dict[int, str] = {}
        #: Per sequence: whether its prompt went out (``exclude_input_from_output`` false), how many logprobs did.
        self.prompt_sent = [False] * job.n
        self.logged = [0] * job.n
        #: Per sequence, while streaming: tokens held back (they may be the start of a stop word), and how
        #: many went to the decoder.
        self.held: list[list[int]] = [[] for _ in range(job.n)]
        self.released = [0] * job.n
        self.count = 0
        self.final_queued: set[int] = set()
        #: Set once the final response (or error) went out.
        self.answered = threading.Event()

    def on_tokens(self, request: Any, new_tokens: list[int]) -> None:
        """Called on the scheduler's thread: queue the tokens for the sender (whether they end the row)."""
        if new_tokens and not self.job.first_token_ns:
            self.job.first_token_ns = time.time_ns()
        final = request.row.finish_reason is not None
        if final:
            if id(request) in self.final_queued:  # the scheduler's closing call after the last token's own
                return
            self.final_queued.add(id(request))
        self.engine.sender.work.put((self, request, list(new_tokens), final))

    def send(self, request: Any, new_tokens: list[int], final: bool) -> None:
        """On the sender's thread: a text delta while streaming, the outputs (or the error) at the end.

        A row is not touched by the scheduler once finished, so the final call reads it whole.
        """
        if self.answered.is_set():  # answered already (an error in another of its sequences)
            return
        job, index = self.job, self._index(request)
        self.count += 1
        if not final and job.sender is not None and self.count % 4 == 0 and job.sender.is_cancelled():
            self.engine.cancel(job)
        delta = self._release(index, request.row, new_tokens, final) if job.streaming else ""
        if not final:
            if delta:
                self._respond_delta(index, self._with_prompt(index, delta), request.row)
            return
        try:
            if request.error:
                self.engine.cancel(job)
                self._answer(None, error=request.error)
                return
            self.finished[index] = self._last_text(index, request.row, delta)
            if len(self.finished) < len(self.requests):
                if job.streaming and self.finished[index]:  # sent now; the final response waits for the others
                    self._respond_delta(index, self.finished[index], request.row)
                    self.finished[index] = ""
                return
            self._answer(self._final())
        except Exception as exc:  # the client still gets its final response, an error
            self._answer(None, error=llm_common.tag_error(llm_common.ENGINE_ERROR,
                                                          f"the response could not be built: {exc}"))

    def _index(self, request: Any) -> int:
        for index, mine in enumerate(self.requests):
            if mine is request:
                return index
        return 0

    def _answer(self, outputs: Optional[dict[str, Any]], error: Optional[str] = None) -> None:
        try:
            if error is not None:
                self.respond(self.job, None, True, error=error)
            else:
                self.respond(self.job, outputs, True)
        finally:
            self.answered.set()  # a request without a response sender waits for this

    def _release(self, index: int, row: llm_generate.Row, new_tokens: list[int], final: bool) -> str:
        """The text of a streamed sequence's tokens that can go out now.

        A stop word is not part of the answer, streamed or whole (as in vLLM and TensorRT-LLM's LLM API): the
        tokens that may be the start of one are held back until the next token tells, and dropped if they were.
        """
        held = self.held[index]
        held.extend(new_tokens)
        if final:
            if row.stop_word is not None:  # its first tokens were held: they were the start of a stop word
                del held[max(0, len(held) - len(row.stop_word)):]
            kept = 0
        else:
            kept = llm_common.stop_start(held, row.stop_words)
        out = held[: len(held) - kept]
        self.held[index] = held[len(held) - kept:]
        self.released[index] += len(out)
        return self.decoders[index].push(out) if out else ""

    def _respond_delta(self, index: int, text: str, row: llm_generate.Row) -> None:
        texts = [""] * len(self.requests)
        texts[index] = text
        outputs: dict[str, Any] = {"text_output": llm_request.strings(*texts)}
        if self.job.logprobs is not None:
            outputs["logprobs"] = self._logprobs({index: row}, upto={index: self.released[index]})
        self.respond(self.job, outputs, False)

    def _with_prompt(self, index: int, text: str) -> str:
        """The prompt goes in front of a sequence's first text when the request asked to keep it."""
        if self.job.exclude_input or self.prompt_sent[index]:
            return text
        self.prompt_sent[index] = True
        return self.job.prompt + text

    def _last_text(self, index: int, row: llm_generate.Row, delta: str) -> str:
        """A finished sequence's text still to send: the rest of the stream, or the whole answer."""
        if self.job.streaming:
            return self._with_prompt(index, delta + self.decoders[index].flush())
        tokens = row.tokens
        if row.stop_word is not None:  # like TensorRT-LLM, the stop string is not part of the answer
            tokens = tokens[: len(tokens) - len(row.stop_word)]
        return self._with_prompt(index, llm_common.decode_text(self.engine.tokenizer, tokens))

    def _logprobs(self, rows: dict[int, llm_generate.Row], upto: dict[int, int]) -> np.ndarray[Any, Any]:
        """``logprobs``: per sequence, a JSON list of OpenAI's token entries not sent yet ("" for the others)."""
        texts = [""] * len(self.requests)
        top = self.job.logprobs or 0
        for index, row in rows.items():
            end = min(upto[index], len(row.token_logprobs))
            entries = []
            for step in range(self.logged[index], end):
                entry = self.engine.token_texts.entry(row.tokens[step], row.token_logprobs[step])
                entry["top_logprobs"] = [self.engine.token_texts.entry(t, lp) for t, lp in row.top[step][:top]] \
                    if top and step < len(row.top) else []
                entries.append(entry)
            self.logged[index] = max(self.logged[index], end)
            texts[index] = json.dumps(entries, separators=(",", ":"))
        return llm_request.strings(*texts)

    def _final(self) -> dict[str, Any]:
        job = self.job
        rows = [r.row for r in self.requests]
        outputs: dict[str, Any] = {"text_output": llm_request.strings(*(self.finished[i] for i in range(len(rows))))}
        if "return_finish_reason" in job.want:
            outputs["finish_reason"] = llm_request.strings(*(row.finish_reason or "" for row in rows))
        if "return_stop_reason" in job.want:
            outputs["stop_reason"] = llm_request.strings(*(
                llm_common.decode_text(self.engine.tokenizer, row.stop_word).strip() if row.stop_word else ""
                for row in rows))
        if "return_cumulative_logprob" in job.want:
            outputs["cumulative_logprob"] = np.array([row.cum_logprob for row in rows], dtype=np.float32)
        if job.logprobs is not None:
            kept = {i: len(row.tokens) - (len(row.stop_word) if row.stop_word else 0) for i, row in enumerate(rows)}
            outputs["logprobs"] = self._logprobs(dict(enumerate(rows)), kept)
        if "sampling_param_return_perf_metrics" in job.want:
            times = (("arrival_time_ns", job.arrival_ns), ("first_scheduled_time_ns", job.first_scheduled_ns),
                     ("first_token_time_ns", job.first_token_ns), ("last_token_time_ns", time.time_ns()))
            for name, value in times:
                outputs[name] = np.array([value], dtype=np.int64)
        return outputs
