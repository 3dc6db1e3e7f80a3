"""``tritonkit chat``: send a prompt to an LLM pipeline and stream its answer to the terminal."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Optional

import numpy as np
import typer

from tritonkit.cli._app import app, err_console
from tritonkit.errors import ClientError, Problem
from tritonkit.runtime.client import Client
from tritonkit.runtime.tensors import Array, ModelInfo, numpy_dtype
from tritonkit.triton.llmapi import REQUEST_NAMES, interface_of

_CONNECTION = "Connection"
_SAMPLING = "Sampling"


def _shaped(info: ModelInfo, name: str, value: Any) -> Array:
    """``value`` as a one-element tensor of the model's input ``name`` (with a batch dim when it batches)."""
    tensor = info.input(name)
    assert tensor is not None  # callers only pass inputs the model has
    array = np.array([value], dtype=numpy_dtype(tensor.datatype))
    return array.reshape((1,) * max(1, len(tensor.shape)))


def build_request(info: ModelInfo, prompt: str, sampling: dict[str, Any]) -> dict[str, Array]:
    """The LLM's inputs for ``prompt`` in its interface (LLM-API or ensemble); others are left out."""
    if info.input("text_input") is None:
        expects = ", ".join(t.describe() for t in info.inputs)
        raise ClientError(Problem(f"model '{info.name}' is not an LLM pipeline: it has no 'text_input' input "
                                  f"(it expects {expects})", model=info.name,
                                  hint="use `tritonkit infer` for other models"))
    values = {"text_input": _shaped(info, "text_input", prompt.encode("utf-8"))}
    names = REQUEST_NAMES[interface_of(frozenset(t.name for t in info.inputs))]
    if "sampling" in names:
        # vLLM: one JSON string of SamplingParams; the rest travels as tensors of its own.
        params = {k: v for k, v in sampling.items() if k not in ("stream",) and v is not None}
        sampling = {"stream": sampling.get("stream"), "sampling": json.dumps(params)}
    if "finish_reason" in names:
        sampling = {**sampling, "finish_reason": True}
    sampling = {**sampling, "answer_only": True}  # the answer, not the prompt in front of it (NVIDIA's default)
    for key, value in sampling.items():
        name = names.get(key, key)
        if value is not None and info.input(name) is not None:
            values[name] = _shaped(info, name, value)
    return values


def _text(outputs: dict[str, Array], name: str) -> Optional[str]:
    array = outputs.get(name)
    if array is None:
        return None
    return "".join(item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
                   for item in array.reshape(-1))


def _streaming_model(client: Client, model: str) -> Optional[ModelInfo]:
    """The decoupled model to stream from: MODEL if decoupled, else its streaming model (MODEL_bls) if served.

    MODEL is decoupled in the LLM-API layout (the default) with streaming on; ``layout: ensemble``
    streams from MODEL_bls (``tensorrt_llm_bls`` with NVIDIA's model names).
    """
    info = client.model(model)
    if info.decoupled:
        return info
    if info.streaming_model in client.models():
        return client.model(info.streaming_model)
    err_console.print(f"note: '{model}' answers once per request (not decoupled) and no '{info.streaming_model}' "
                      "model is served to stream from; answering without streaming", markup=False)
    return None


def _stream(client: Client, info: ModelInfo, prompt: str, sampling: dict[str, Any]) -> Optional[str]:
    finish = None
    for outputs in client.stream(info.name, build_request(info, prompt, {**sampling, "stream": True})):
        sys.stdout.write(_text(outputs, "text_output") or "")
        sys.stdout.flush()
        finish = _text(outputs, "finish_reason") or finish
    return finish


def _once(client: Client, model: str, prompt: str, sampling: dict[str, Any]) -> Optional[str]:
    info = client.model(model)
    outputs = client.infer(model, build_request(info, prompt, {**sampling, "stream": False}))
    sys.stdout.write(_text(outputs, "text_output") or "")
    return _text(outputs, "finish_reason")


@app.command()
def chat(
    model: Annotated[str, typer.Argument(help="LLM model: the llms: entry's name, e.g. smollm2 in the "
                                        "default example.", show_default=False)],
    prompt: Annotated[str, typer.Argument(help="The prompt.", show_default=False)],
    stream: Annotated[bool, typer.Option(
        "--stream/--no-stream", help="Stream tokens as they come: from MODEL itself when it is decoupled "
        "(the default layout with streaming on), else from MODEL_bls (layout: ensemble).")] = True,
    max_tokens: Annotated[int, typer.Option(
        "--max-tokens", help="Most tokens to generate.", rich_help_panel=_SAMPLING)] = 256,
    temperature: Annotated[Optional[float], typer.Option(
        "--temperature", help="Sampling temperature.",
        rich_help_panel=_SAMPLING)] = None,
    top_k: Annotated[Optional[int], typer.Option(
        "--top-k", help="Top-k sampling.", rich_help_panel=_SAMPLING)] = None,
    top_p: Annotated[Optional[float], typer.Option(
        "--top-p", help="Top-p sampling.", rich_help_panel=_SAMPLING)] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", help="Random seed.", rich_help_panel=_SAMPLING)] = None,
    url: Annotated[Optional[str], typer.Option(
        "--url", help="Server host:port (default: the protocol's default "
        "port on localhost).", rich_help_panel=_CONNECTION)] = None,
    protocol: Annotated[str, typer.Option(
        "--protocol", help="grpc or http (http cannot stream).",
        rich_help_panel=_CONNECTION)] = "grpc",
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds to wait for each response.",
        rich_help_panel=_CONNECTION)] = 300.0,
) -> int:
    """Send PROMPT to the LLM pipeline MODEL and print the answer (streamed by default).

    Example: tritonkit chat smollm2 "What is the capital of France?"
    """
    sampling = {"max_tokens": max_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                "seed": seed}
    if stream and protocol != "grpc":
        raise ClientError(Problem("streaming needs the gRPC protocol", hint="use --protocol grpc or --no-stream"))
    with Client(url, protocol=protocol, timeout_s=timeout) as client:
        target = _streaming_model(client, model) if stream else None
        finish = _stream(client, target, prompt, sampling) if target else _once(client, model, prompt, sampling)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if finish:
        err_console.print(f"[finish_reason: {finish}]", markup=False)
    return 0
