"""``tritonkit infer`` and ``tritonkit chat`` against a real server (fixture models, no real LLM)."""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tritonkit.cli import main
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, repo_builder: Callable[..., Path],
           triton_server_module: Callable[..., Server]) -> Iterator[Server]:
    repo = repo_builder(tmp_path_factory.mktemp("cli") / "repo", "basic", "llm",
                        models=["add_sub", "streamer", "tiny", "tiny_bls"])
    # simple: batched, with a BYTES input of dims [1] (shape [-1, 1]) beside an FP32 one of dims [16].
    shutil.copytree(FIXTURES / "bench" / "repo" / "simple", repo / "simple",
                    ignore=shutil.ignore_patterns("__pycache__"))
    yield triton_server_module(repo)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _successes(server: Server, model: str) -> int:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/stats", timeout=10) as reply:
        stats = json.loads(reply.read())
    return int(stats["model_stats"][0]["inference_stats"]["success"]["count"])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_prints_outputs_as_json(server: Server, capsys, tmp_path: Path, protocol: str) -> None:
    np.save(tmp_path / "b.npy", np.array([[10, 20, 30, 40]], dtype=np.float32))
    url = server.grpc_url if protocol == "grpc" else server.http_url
    code, out, err = _run(capsys, "infer", "add_sub", "--input", "INPUT0=[1, 2, 3, 4]",
                          "--input", f"INPUT1=@{tmp_path / 'b.npy'}", "--url", url, "--protocol", protocol, "--json")
    assert (code, err) == (0, "")
    body = json.loads(out)
    assert body["outputs"]["OUTPUT0"] == {"datatype": "float32", "shape": [1, 4], "data": [[11.0, 22.0, 33.0, 44.0]]}
    assert body["outputs"]["OUTPUT1"]["data"] == [[-9.0, -18.0, -27.0, -36.0]]


def test_infer_streams_every_response_of_a_decoupled_model(server: Server, capsys) -> None:
    code, out, _ = _run(capsys, "infer", "streamer", "--input", "COUNT=[2]", "--url", server.grpc_url)
    assert code == 0
    assert out.splitlines() == ["response 0:", "INDEX int32 [1]: [0]", 'WORD BYTES [1]: ["word0"]',
                                "response 1:", "INDEX int32 [1]: [1]", 'WORD BYTES [1]: ["word1"]']


def test_infer_unknown_model_lists_the_loaded_ones(server: Server, capsys) -> None:
    code, out, err = _run(capsys, "infer", "nope", "--input", "X=[1]", "--url", server.grpc_url)
    assert code == 1 and out == ""
    assert "model 'nope' is not served" in err and "ready models: add_sub, simple, streamer, tiny, tiny_bls" in err


def test_infer_unknown_model_says_did_you_mean(server: Server, capsys) -> None:
    code, _, err = _run(capsys, "infer", "add_subb", "--input", "X=[1]", "--url", server.grpc_url)
    assert code == 1 and err.rstrip().endswith("did you mean 'add_sub'?")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_a_string_input_gets_the_batch_dimension_like_a_number(server: Server, capsys,
                                                                      protocol: str) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    code, out, err = _run(capsys, "infer", "simple", "-i", "TAG=hello", "-i", f"INPUT0={[1.0] * 16}",
                          "--output-name", "TAG_OUT", "--url", url, "--protocol", protocol, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["outputs"] == {"TAG_OUT": {"datatype": "BYTES", "shape": [1, 1], "data": [["hello"]]}}


def test_infer_wrong_input_says_what_is_expected(server: Server, capsys) -> None:
    code, _, err = _run(capsys, "infer", "add_sub", "--input", "INPUT0=[1, 2, 3]", "--input", "INPUT1=[1, 2, 3]",
                        "--url", server.http_url, "--protocol", "http")
    assert code == 1
    assert "input 'INPUT0' of model 'add_sub' has shape [1, 3], the model expects [-1, 4]" in err


def test_infer_without_a_server_names_the_url(capsys) -> None:
    url = f"localhost:{free_ports(1)[0]}"
    code, _, err = _run(capsys, "infer", "add_sub", "--input", "INPUT0=[1]", "--url", url, "--timeout", "5")
    assert code == 1 and f"no Triton server answers at {url} (grpc)" in err


def test_infer_bad_input_option_is_a_usage_error(capsys) -> None:
    code, _, err = _run(capsys, "infer", "add_sub", "--input", "INPUT0")
    assert code == 2 and "NAME=@file.npy or NAME=JSON" in err


def test_chat_streams_from_the_bls_model(server: Server, capsys) -> None:
    before = _successes(server, "tiny")
    code, out, err = _run(capsys, "chat", "tiny", "hello big world", "--url", server.grpc_url)
    assert (code, out) == (0, "HELLO BIG WORLD\n")
    assert "[finish_reason: stop]" in err
    assert _successes(server, "tiny") == before  # the answer came from tiny_bls (decoupled: not in stats)


def test_chat_without_streaming_calls_the_ensemble(server: Server, capsys) -> None:
    before = _successes(server, "tiny")
    code, out, err = _run(capsys, "chat", "tiny", "hello big world", "--no-stream", "--max-tokens", "2",
                          "--temperature", "0.5", "--url", server.http_url, "--protocol", "http")
    assert (code, out) == (0, "T=0.5 HELLO\n")
    assert "[finish_reason: length]" in err
    assert _successes(server, "tiny") == before + 1


def test_chat_streaming_over_http_is_refused(capsys) -> None:
    code, _, err = _run(capsys, "chat", "tiny", "hi", "--protocol", "http")
    assert code == 1 and "streaming needs the gRPC protocol" in err and "--no-stream" in err
    # No spec or file is involved, so the message carries no location prefix (it once read "<spec>: ...").
    assert err == "streaming needs the gRPC protocol; use --protocol grpc or --no-stream\n"


def test_chat_on_a_model_that_is_no_llm(server: Server, capsys) -> None:
    code, _, err = _run(capsys, "chat", "add_sub", "hi", "--no-stream", "--url", server.grpc_url)
    assert code == 1 and "model 'add_sub' is not an LLM pipeline" in err and "INPUT0 FP32 [-1, 4]" in err
