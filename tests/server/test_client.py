"""tritonkit.client against a real server: HTTP and gRPC, sync and asyncio, streaming, and each error."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from tritonkit.client import AsyncClient, Client
from tritonkit.errors import ClientError
from tritonkit.runtime import Server
from tritonkit.runtime.process import free_ports

pytestmark = pytest.mark.triton

PROTOCOLS = ["grpc", "http"]
A = np.array([[1, 2, 3, 4]], dtype=np.float32)
B = np.array([[10, 20, 30, 40]], dtype=np.float32)


def _url(server: Server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_infer_batched_model_and_ensemble(basic_server: Server, protocol: str) -> None:
    with Client(_url(basic_server, protocol), protocol=protocol) as client:
        assert client.is_server_ready()
        assert client.is_model_ready("add_sub")
        out = client.infer("add_sub", {"INPUT0": A, "INPUT1": B})
        assert out["OUTPUT0"].tolist() == [[11, 22, 33, 44]] and out["OUTPUT1"].tolist() == [[-9, -18, -27, -36]]
        assert out["OUTPUT0"].dtype == np.float32
        twice = client.infer("add_sub_twice", {"A": A, "B": B}, outputs=["TWICE_B"])
        assert list(twice) == ["TWICE_B"] and twice["TWICE_B"].tolist() == (2 * B).tolist()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_infer_converts_python_values_with_the_models_dtypes(basic_server: Server, protocol: str) -> None:
    with Client(_url(basic_server, protocol), protocol=protocol) as client:
        out = client.infer("add_sub", {"INPUT0": [[1, 2, 3, 4], [5, 6, 7, 8]], "INPUT1": [[1, 1, 1, 1]] * 2})
        assert out["OUTPUT0"].tolist() == [[2, 3, 4, 5], [6, 7, 8, 9]]
        info = client.model("streamer")
        assert info.decoupled and [t.name for t in info.inputs] == ["COUNT", "DELAY_S"]
        assert info.input("DELAY_S") is not None and info.input("DELAY_S").optional  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_infer(basic_server: Server, protocol: str) -> None:
    async def run() -> list[list[float]]:
        async with AsyncClient(_url(basic_server, protocol), protocol=protocol) as client:
            assert await client.is_server_ready()
            results = await asyncio.gather(*(client.infer("add_sub", {"INPUT0": A * i, "INPUT1": B})
                                             for i in range(8)))
            return [r["OUTPUT0"][0].tolist() for r in results]

    sums = asyncio.run(run())
    assert sums == [(A[0] * i + B[0]).tolist() for i in range(8)]


def test_stream_from_a_decoupled_model(basic_server: Server) -> None:
    with basic_server.client("grpc") as client:
        responses = list(client.stream("streamer", {"COUNT": np.array([4], np.int32)}))
    assert [r["INDEX"].tolist() for r in responses] == [[0], [1], [2], [3]]
    assert [r["WORD"].tolist() for r in responses] == [[b"word0"], [b"word1"], [b"word2"], [b"word3"]]


def test_async_stream_from_a_decoupled_model(basic_server: Server) -> None:
    async def run() -> list[int]:
        async with AsyncClient(basic_server.grpc_url) as client:
            return [int(r["INDEX"][0]) async for r in client.stream("streamer", {"COUNT": np.array([5], np.int32)})]

    assert asyncio.run(run()) == [0, 1, 2, 3, 4]


def test_leaving_a_stream_early_cancels_the_request(basic_server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    inputs = {"COUNT": np.array([200], np.int32), "DELAY_S": np.array([0.05], np.float32)}
    started = time.monotonic()
    with basic_server.client("grpc") as client:
        for response in client.stream("streamer", inputs, parameters={"cancel_marker": str(marker)}):
            if response["INDEX"][0] == 2:
                break
        deadline = time.monotonic() + 5
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the model never saw the cancellation"
        assert int(marker.read_text()) < 50
        assert time.monotonic() - started < 200 * 0.05
        assert client.infer("add_sub", {"INPUT0": A, "INPUT1": B})["OUTPUT0"].tolist() == [[11, 22, 33, 44]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_not_running_names_the_url(protocol: str) -> None:
    url = f"localhost:{free_ports(1)[0]}"
    with pytest.raises(ClientError) as caught, Client(url, protocol=protocol, timeout_s=5) as client:
        client.infer("add_sub", {"INPUT0": A, "INPUT1": B})
    assert f"no Triton server answers at {url} ({protocol})" in str(caught.value)
    assert "tritonkit serve" in (caught.value.first.hint or "")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model_lists_the_loaded_ones(basic_server: Server, protocol: str) -> None:
    with pytest.raises(ClientError) as caught, Client(_url(basic_server, protocol), protocol=protocol) as client:
        client.infer("add_subb", {"INPUT0": A})
    assert "model 'add_subb' is not served" in str(caught.value)
    assert "ready models: add_sub, add_sub_twice, sleeper, streamer" in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_inputs_say_what_the_model_expects(basic_server: Server, protocol: str) -> None:
    with Client(_url(basic_server, protocol), protocol=protocol) as client:
        with pytest.raises(ClientError, match=r"no input named 'INPUT9'; the model expects INPUT0 FP32 \[-1, 4\]"):
            client.infer("add_sub", {"INPUT0": A, "INPUT9": B})
        with pytest.raises(ClientError, match=r"needs input 'INPUT1'"):
            client.infer("add_sub", {"INPUT0": A})
        with pytest.raises(ClientError, match=r"'INPUT1' of model 'add_sub' is FP32, got numpy <U"):
            client.infer("add_sub", {"INPUT0": A, "INPUT1": [["a", "b", "c", "d"]]})
        with pytest.raises(ClientError, match=r"has shape \[4\], the model expects \[-1, 4\]") as caught:
            client.infer("add_sub", {"INPUT0": A, "INPUT1": B[0]})
        assert caught.value.first.hint == "add a leading batch dimension"
        with pytest.raises(ClientError, match=r"has shape \[1, 3\]"):
            client.infer("add_sub", {"INPUT0": A, "INPUT1": B[:, :3]})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout_is_reported_as_one(basic_server: Server, protocol: str) -> None:
    with Client(_url(basic_server, protocol), protocol=protocol, timeout_s=0.5) as client, \
            pytest.raises(ClientError, match=r"request to model 'sleeper' .* timed out after 0.5 s"):
        client.infer("sleeper", {"SECONDS": np.array([1.5], np.float32)})
    # The sleeper's one instance takes this request only once the timed-out one is done, so the next test
    # finds the server idle; and a client's timeout left the model serving.
    with Client(_url(basic_server, protocol), protocol=protocol, timeout_s=30) as client:
        assert client.infer("sleeper", {"SECONDS": np.array([0.0], np.float32)})["SLEPT"].tolist() == [0.0]


def test_streaming_over_http_is_refused_plainly(basic_server: Server) -> None:
    with basic_server.client("http") as client, pytest.raises(ClientError, match="streaming needs the gRPC"):
        next(iter(client.stream("streamer", {"COUNT": np.array([1], np.int32)})))
