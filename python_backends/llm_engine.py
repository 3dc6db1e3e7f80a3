"""tritonkit's PyTorch engine: token ids in, token ids out, behind TensorRT-LLM's tensor contract.

Requests go to the in-flight scheduler (``llm_scheduler.py``): they join the running batch at the
next step and leave it when done. In decoupled mode a request with ``streaming`` set gets one
response per step; the others get one response when they finish. ``num_return_sequences`` runs as
that many rows, each answered with its ``sequence_index``. A decoupled engine takes a request with a batch
of prompts as TensorRT-LLM's backend does: each prompt is a request of its own, answered with its
``batch_index`` (the streaming layout's unary front sends its batch this way, one engine request per
``execute``). A request with ``stop`` set cancels the
live request that has the same request id, as TensorRT-LLM's backend does; a client that cancels
its own request (Triton's request cancellation) stops it too. Inputs this engine cannot honour
(beam search, LoRA, prompt tables, guided decoding, ...) get an error response naming the input and
the engine that supports it; tritonkit writes that list into the ``unsupported_inputs`` parameter.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, NamedTuple, Optional

import numpy as np
import triton_python_backend_utils as pb_utils

import llm_common
import llm_generate
import llm_scheduler
import llm_triton

#: Sampling inputs: (engine input, Row field, lowest allowed, highest allowed, whether the lowest is excluded).
_FLOATS = (("temperature", "temperature", 0.0, None, False), ("runtime_top_p", "top_p", 0.0, 1.0, False),
           ("repetition_penalty", "repetition_penalty", 0.0, None, True),
           ("presence_penalty", "presence_penalty", None, None, False),
           ("frequency_penalty", "frequency_penalty", None, None, False))
#: Values of unsupported inputs that ask for nothing: NVIDIA's preprocessing gives a decoder-only model one
#: decoder token (the pad id) and length 1 per prompt, and its clients pass them on.
_NEUTRAL = {"beam_width": 1, "decoder_input_lengths": 1}
#: ``guided_decoding_guide_type`` as TensorRT-LLM names it -> the grammar kind (llm_grammar) it asks for.
_GUIDE_KINDS = {"json": "json_object", "json_schema": "json_schema", "regex": "regex", "ebnf_grammar": "grammar"}


Inputs = dict[str, np.ndarray[Any, Any]]


class _Place(NamedTuple):
    """A row of a request: which prompt of its batch, which of that prompt's sequences, how it is answered."""

    batch_index: int
    sequence_index: int
    exclude_input: bool
    row: llm_generate.Row


def _text(inputs: Inputs, name: str) -> Optional[str]:
    value = llm_common.scalar(inputs, name)
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _is_neutral(name: str, array: np.ndarray[Any, Any]) -> bool:
    if array.size == 0:
        return True
    if name == "decoder_input_ids":
        return array.shape[-1] == 1
    if name in _NEUTRAL:
        return bool(np.all(array == _NEUTRAL[name]))
    return array.dtype == np.bool_ and not bool(array.any())


def check_unsupported(inputs: Inputs, unsupported: dict[str, str]) -> None:
    """Refuse a request that sets an input this engine cannot honour (to anything but its neutral value)."""
    for name, why in unsupported.items():
        array = inputs.get(name)
        if array is not None and not _is_neutral(name, array):
            raise llm_common.RequestError(f"input {name!r} is not supported by tritonkit's PyTorch engine: {why}")


def _number(inputs: Inputs, name: str, default: Any, low: Optional[float], high: Optional[float],
            above_low: bool = False) -> Any:
    value = llm_common.scalar(inputs, name, default)
    return None if value is None else llm_common.check_number(name, value, low, high, above_low=above_low)


class TritonPythonModel:
    """The ``<name>_engine`` model of an LLM pipeline with ``engine.kind: pytorch``."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the model (through the GGUF conversion cache) and read the sampling defaults."""
        config = json.loads(args["model_config"])
        params = llm_common.read_parameters(config)
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)
        self.model = llm_generate.load_for_instance(params, args)
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.vocab_size = int(self.model.get_input_embeddings().weight.shape[0])
        self.default_end_ids = [int(params["end_id"])] if params.get("end_id") else []
        self.default_pad_id = int(params.get("pad_id") or 0)
        self.exclude_input = llm_common.parse_bool(params.get("exclude_input_in_output", ""), False)
        self.unsupported: dict[str, str] = json.loads(params.get("unsupported_inputs") or "{}")
        self.defaults = {
            "temperature": float(params.get("temperature") or 0.0),
            "runtime_top_k": int(params.get("top_k") or 0),
            "runtime_top_p": float(params.get("top_p") or 1.0),
            "repetition_penalty": float(params.get("repetition_penalty") or 1.0),
            "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "seed": int(params["seed"]) if params.get("seed") else None,
        }
        self.max_batch = int(config.get("max_batch_size") or 8)
        self.scheduler = llm_scheduler.engine_from_parameters(
            self.model, self.default_pad_id, params, self.max_batch, self.max_context_or(4096))
        self._params, self._repository = params, args["model_repository"]
        self._grammars: Any = None
        self._grammar_lock = threading.Lock()
        #: Live requests by Triton request id, for the ``stop`` input.
        self.live = llm_triton.LiveRequests()
        self.metrics = llm_triton.engine_metrics(self.scheduler.stats, args, params)

    def max_context_or(self, default: int) -> int:
        """The model's context length, or ``default`` when its config does not say."""
        return self.max_context or default

    def read_prompt(self, inputs: Inputs) -> list[int]:
        """The prompt's token ids (``input_ids`` cut to ``input_lengths``) of a batch of one."""
        ids = inputs.get("input_ids")
        if ids is None:
            raise llm_common.RequestError("input 'input_ids' is missing")
        length = llm_common.scalar(inputs, "input_lengths", ids.shape[-1])
        if not 0 < int(length) <= ids.reshape(-1).size:
            raise llm_common.RequestError(f"input 'input_lengths' must be between 1 and the {ids.reshape(-1).size} "
                                          f"ids of input_ids (got {length})")
        prompt = [int(t) for t in ids.reshape(-1)[: int(length)]]
        self.check_ids("input_ids", prompt)
        if self.max_context and len(prompt) >= self.max_context:
            raise llm_common.RequestError(f"input 'input_ids' has {len(prompt)} tokens; the model's context is "
                                          f"{self.max_context}")
        return prompt

    def guide(self, inputs: Inputs, end_ids: list[int]) -> Any:
        """The request's guided-decoding grammar (``guided_decoding_guide_type`` and ``_guide``), or None.

        Compiled here, on the request's thread, with the tokenizer and grammar library loaded at the first
        guided request; each row gets its own matcher from it.
        """
        kind = _text(inputs, "guided_decoding_guide_type")
        if not kind:
            return None
        if kind not in _GUIDE_KINDS:
            raise llm_common.RequestError(
                f"input 'guided_decoding_guide_type' is {kind!r}; tritonkit's PyTorch engine takes "
                f"{', '.join(sorted(_GUIDE_KINDS))} (structural_tag needs TensorRT-LLM)", llm_common.UNSUPPORTED
                if kind == "structural_tag" else llm_common.INVALID_ARGUMENT)
        text = _text(inputs, "guided_decoding_guide") or ""
        if kind != "json" and not text.strip():
            raise llm_common.RequestError(f"input 'guided_decoding_guide' is empty; guide type {kind!r} needs the "
                                          "text the answer must follow")
        with self._grammar_lock:
            if self._grammars is None:
                import llm_grammar  # copied next to the engine; the grammar library loads only when a request needs it

                tokenizer = llm_common.tokenizer_from_parameters(self._params, self._repository)
                self._grammars = llm_grammar.GrammarCompiler(tokenizer, llm_common.end_ids(tokenizer))
        return self._grammars.compile(_GUIDE_KINDS[kind], text)

    def check_ids(self, name: str, ids: list[int]) -> None:
        """Every id of input ``name`` is a token of the model: an id past the embedding would fail the whole batch."""
        outside = [t for t in ids if not 0 <= t < self.vocab_size]
        if outside:
            raise llm_common.RequestError(f"input {name!r} holds token id {outside[0]}, outside the model's "
                                          f"vocabulary (ids 0 to {self.vocab_size - 1})")

    def _max_new(self, inputs: Inputs, prompt: list[int]) -> int:
        limit = (self.max_context - len(prompt)) if self.max_context else 1 << 20
        wanted = llm_common.scalar(inputs, "request_output_len")
        if wanted is None or int(wanted) <= 0:
            raise llm_common.RequestError(f"input 'request_output_len' must be at least 1 (got {wanted})")
        return min(int(wanted), limit)

    def rows(self, inputs: Inputs) -> list[_Place]:
        """The rows one request generates, with their batch and sequence indices, every setting checked first.

        Each prompt of the request's batch makes ``num_return_sequences`` rows. A batch of several prompts
        needs a decoupled engine (each prompt is answered on its own), as in TensorRT-LLM's backend.
        """
        ids = inputs.get("input_ids")
        batch = 1 if ids is None or ids.ndim < 2 else int(ids.shape[0])
        if batch > 1 and not self.decoupled:
            raise llm_common.RequestError(f"input 'input_ids' has a batch of {batch} prompts; a batch of more than "
                                          "one needs the decoupled engine (streaming: true), as in TensorRT-LLM's "
                                          "backend")
        places = []
        for index in range(batch):
            one = {name: array[index:index + 1] for name, array in inputs.items()} if batch > 1 else inputs
            exclude = bool(llm_common.scalar(one, "exclude_input_in_output", self.exclude_input))
            places += [_Place(index, sequence, exclude, row) for sequence, row in enumerate(self._prompt_rows(one))]
        return places

    def _prompt_rows(self, inputs: Inputs) -> list[llm_generate.Row]:
        check_unsupported(inputs, self.unsupported)
        prompt = self.read_prompt(inputs)
        max_new = self._max_new(inputs, prompt)
        count = int(_number(inputs, "num_return_sequences", 1, 1, self.max_batch))
        end_id = llm_common.scalar(inputs, "end_id")
        stop, bad = inputs.get("stop_words_list"), inputs.get("bad_words_list")
        for name, words in (("stop_words_list", llm_common.list_to_words(stop)),
                            ("bad_words_list", llm_common.list_to_words(bad))):
            self.check_ids(name, [t for word in words for t in word])
        if end_id is not None and int(end_id) >= 0:  # a negative end id only never matches
            self.check_ids("end_id", [int(end_id)])
        bias = inputs.get("embedding_bias")
        _number(inputs, "len_penalty", 1.0, None, None)  # beam search only: no effect at beam_width 1
        settings = {field: _number(inputs, name, self.defaults[name], low, high, above)
                    for name, field, low, high, above in _FLOATS}
        if settings["top_p"] == 0.0:  # TensorRT-LLM reads top_p 0 (NVIDIA's clients' default) as top-p off
            settings["top_p"] = 1.0
        top_k = int(_number(inputs, "runtime_top_k", self.defaults["runtime_top_k"], 0, None))
        seed = llm_common.scalar(inputs, "seed", self.defaults["seed"])
        end_ids = [int(end_id)] if end_id is not None else list(self.default_end_ids)
        grammar = self.guide(inputs, end_ids)
        return [llm_generate.Row(
            prompt=prompt, max_new_tokens=max_new,
            end_ids=list(end_ids), grammar=grammar.matcher(end_ids) if grammar is not None else None,
            stop_words=llm_common.list_to_words(stop), bad_words=llm_common.list_to_words(bad),
            top_k=top_k, seed=None if seed is None else int(seed) + index,
            min_tokens=int(_number(inputs, "min_tokens", 0, 0, None)),
            embedding_bias=bias.reshape(-1).tolist() if bias is not None and bias.size else None,
            logprobs=bool(llm_common.scalar(inputs, "return_log_probs", False)), **settings) for index in range(count)]

    def execute(self, requests: list[Any]) -> None:
        """Hand every valid request to the in-flight scheduler and return; malformed ones get an error of their own.

        Responses go out on each request's sender: as tokens come (decoupled), or once, whole, when the
        request is done (not decoupled; a model that is not decoupled may answer this way since Triton
        24.07). Either way ``execute`` returns at once, so a request that arrives while others are
        being generated joins them in the running batch instead of waiting for the whole batch.
        """
        for request in requests:
            try:
                inputs = llm_triton.inputs(request)
                if llm_common.scalar(inputs, "stop", False):
                    response = self.stop(request)
                else:
                    _Job(self, request, inputs)
                    continue
            except (llm_common.RequestError, ValueError, TypeError, llm_scheduler.QueueFullError) as exc:
                response = llm_triton.error(exc)
            llm_triton.send(request.get_response_sender(), response)

    def stop(self, request: Any) -> Any:
        """``stop: true``: cancel the live request with this request's id; answer with an empty response."""
        request_id = request.request_id()
        if not request_id:
            raise llm_common.RequestError("input 'stop' needs a request id naming the request to stop")
        self.live.cancel(request_id, _Job.cancel)
        return llm_triton.response()

    def register(self, job: _Job, add: bool) -> None:
        """Track (or forget) a live job under its request id."""
        if add:
            self.live.add(job.request_id, job)
        else:
            self.live.discard(job.request_id, job)

    def finalize(self) -> None:
        """Stop the scheduler's and the metrics' threads."""
        self.scheduler.stop()
        if self.metrics is not None:
            self.metrics.stop()


def _time_ns() -> int:
    return time.time_ns()


class _Job:
    """One client request: its rows in the scheduler, and the responses they make."""

    def __init__(self, engine: TritonPythonModel, request: Any, inputs: Inputs) -> None:
        """``inputs``: the request's input arrays by name, read once by ``execute``."""
        self.engine = engine
        self.sender = request.get_response_sender()
        self.streaming = engine.decoupled and bool(llm_common.scalar(inputs, "streaming", False))
        self.perf = bool(llm_common.scalar(inputs, "return_perf_metrics", False))
        self.request_id = request.request_id()
        self.times = {"arrival_time_ns": _time_ns()}
        places = engine.rows(inputs)
        self.lock = threading.Lock()
        self.requests = [llm_scheduler.Request(place.row, self.on_tokens) for place in places]
        #: id of a scheduler request -> its place in the client's request.
        self.places = {id(item): place for item, place in zip(self.requests, places)}
        self.left = len(self.requests)
        #: Rows whose final response is made (the scheduler may report a finished row twice).
        self.closed: set[int] = set()
        self.steps = 0
        engine.register(self, True)
        try:
            for item in self.requests:
                engine.scheduler.submit(item)
        except (ValueError, llm_scheduler.QueueFullError):
            self.cancel()
            engine.register(self, False)
            raise
        self.times["first_scheduled_time_ns"] = _time_ns()

    def cancel(self) -> None:
        for item in self.requests:
            self.engine.scheduler.cancel(item)

    def _client_cancelled(self) -> bool:
        self.steps += 1
        if self.steps % 4:
            return False
        return bool(self.sender.is_cancelled())

    def _tensors(self, item: Any, new_tokens: list[int], done: bool) -> dict[str, np.ndarray[Any, Any]]:
        row, place = item.row, self.places[id(item)]
        tokens = new_tokens if self.streaming else row.tokens
        if not self.streaming and not place.exclude_input:
            tokens = row.prompt + tokens
        out = {"output_ids": np.array(tokens, dtype=np.int32).reshape(1, 1, -1),
               "sequence_length": np.array([[len(tokens)]], dtype=np.int32),
               "batch_index": np.array([[place.batch_index]], dtype=np.int32),
               "sequence_index": np.array([[place.sequence_index]], dtype=np.int32)}
        if row.logprobs:
            chosen = row.token_logprobs[:len(row.tokens)]
            part = chosen[len(chosen) - len(new_tokens):] if self.streaming else chosen
            out["cum_log_probs"] = np.array([[sum(chosen)]], dtype=np.float32)
            out["output_log_probs"] = np.array(part, dtype=np.float32).reshape(1, 1, -1)
        if done:
            out["finish_reason"] = np.array([[(row.finish_reason or "stop").encode()]], dtype=np.object_)
        if self.perf:
            now = _time_ns()
            self.times.setdefault("first_token_time_ns", now)
            out.update({key: np.array([[value]], dtype=np.int64) for key, value in self.times.items()})
            out["last_token_time_ns"] = np.array([[now]], dtype=np.int64)
            blocks = np.array([[item.blocks]], dtype=np.int32)
            none = np.zeros((1, 1), dtype=np.int32)
            # No speculative decoding here: NVIDIA's clients read these three anyway.
            out.update(kv_cache_alloc_new_blocks=blocks, kv_cache_alloc_total_blocks=blocks,
                       kv_cache_reused_blocks=none, acceptance_rate=np.zeros((1, 1), dtype=np.float32),
                       total_accepted_draft_tokens=none, total_draft_tokens=none)
        return out

    def on_tokens(self, item: Any, new_tokens: list[int]) -> None:
        done = item.row.finish_reason is not None
        if done:
            with self.lock:
                if id(item) in self.closed:
                    return
                self.closed.add(id(item))
        elif self._client_cancelled():
            self.cancel()
        if not self.engine.decoupled:
            if done:
                self._finish_unary(item)
            return
        if item.error:
            response: Any = llm_triton.error(item.error)
        elif self.streaming and (new_tokens or done):
            response = llm_triton.response(self._tensors(item, new_tokens, done))
        elif done:
            response = llm_triton.response(self._tensors(item, [], True))
        else:
            return
        self._send(response, done)

    def _send(self, response: Any, done: bool) -> None:
        with self.lock:
            if done:
                self.left -= 1
            last = self.left == 0
        self._deliver(response, last)

    def _deliver(self, response: Any, last: bool) -> None:
        llm_triton.send(self.sender, response, last)
        if last:
            self.engine.register(self, False)

    def _finish_unary(self, item: Any) -> None:
        with self.lock:
            self.left -= 1
            if self.left:
                return
        errors = [r.error for r in self.requests if r.error]
        if errors:
            response = llm_triton.error(errors[0])
        else:
            parts = [self._tensors(r, [], True) for r in self.requests]
            merged = llm_common.merge_sequences(parts, self.engine.default_pad_id)
            response = llm_triton.response(merged)
        self._deliver(response, True)

