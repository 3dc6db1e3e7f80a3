"""The start-up progress read from a server's output, and where the model cache lives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tritonkit.python_backends import llm_common
from tritonkit.runtime.logs import LogPump
from tritonkit.runtime.progress import LoadEvent, LoadProgress

# What tritonserver 2.51 and a tritonkit backend print while the default example loads (shortened).
_OUTPUT = (
    b'I1207 13:19:26.848151 7226 model_lifecycle.cc:472] "loading: smollm2:1"\n'
    b'I1207 13:19:26.848619 7226 model_lifecycle.cc:472] "loading: add_sub:1"\n'
    b'I1207 13:19:28.803933 7226 model_lifecycle.cc:839] "successfully loaded \'add_sub\'"\n'
    b"tritonkit: model 'smollm2': converting SmolLM2.gguf to a safetensors checkpoint\n"
    b"\rConverting GGUF tensors...:   0%|          | 0/272 [00:00<?, ?it/s]"
    b"\rConverting GGUF tensors...:   1%|          | 3/272 [00:00<00:30, 9.1it/s]"
    b"\rConverting GGUF tensors...:  12%|#2        | 33/272 [00:01<00:09, 25.0it/s]"
    b"\rConverting GGUF tensors...:  15%|#5        | 41/272 [00:01<00:09, 25.0it/s]"
    b"\rConverting GGUF tensors...: 100%|##########| 272/272 [00:09<00:00, 28.0it/s]\n"
    b'I1207 13:19:49.849709 7226 model_lifecycle.cc:839] "successfully loaded \'smollm2\'"\n'
)


def _pump(data: bytes) -> tuple[list[str], list[LoadEvent]]:
    events: list[LoadEvent] = []
    progress = LoadProgress(events.append)
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    pump = LogPump(process.stdout, watch=progress.feed)
    process.stdin.write(data)
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    pump.join(10)
    return pump.lines(), events


def test_each_model_step_and_every_tenth_of_a_bar_is_an_event() -> None:
    lines, events = _pump(_OUTPUT)
    assert [(e.model, e.state, e.detail) for e in events] == [
        ("smollm2", "loading", ""), ("add_sub", "loading", ""), ("add_sub", "ready", ""),
        ("smollm2", "step", "converting SmolLM2.gguf to a safetensors checkpoint"),
        ("smollm2", "progress", "Converting GGUF tensors: 0%"),
        ("smollm2", "progress", "Converting GGUF tensors: 12%"),
        ("smollm2", "progress", "Converting GGUF tensors: 100%"),
        ("smollm2", "ready", ""),
    ]
    # Only whole lines are kept (the bar's last state ends its line); the redrawn pieces are not.
    assert len(lines) == 6
    assert lines[4].startswith("Converting GGUF tensors...: 100%")


def test_a_model_still_loading_is_named_with_its_last_step() -> None:
    progress = LoadProgress()
    for line in _OUTPUT.decode().splitlines()[:4]:
        progress.feed(line)
    assert progress.unfinished() == {"smollm2": "converting SmolLM2.gguf to a safetensors checkpoint"}
    assert progress.silent_for_s() < 5


@pytest.mark.parametrize(("env", "expected"), [
    ({"TRITONKIT_CACHE_DIR": "/srv/cache", "XDG_CACHE_HOME": "/xdg"}, "/srv/cache"),
    ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/tritonkit/models"),
    ({"XDG_CACHE_HOME": "relative/ignored"}, "HOME/.cache/tritonkit/models"),
    ({}, "HOME/.cache/tritonkit/models"),
])
def test_the_model_cache_follows_tritonkit_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     env: dict[str, str], expected: str) -> None:
    for name in ("TRITONKIT_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert llm_common.cache_root() == Path(expected.replace("HOME", str(tmp_path)))
    assert os.environ["HOME"] == str(tmp_path)
