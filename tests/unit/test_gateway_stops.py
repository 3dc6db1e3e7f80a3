"""The gateway cuts a stop string from an ensemble model's answer, streamed or whole, as OpenAI answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tritonkit.gateway.triton import Piece, without_stops


def _run(pieces: list[Piece], stops: list[str]) -> list[Piece]:
    async def source() -> AsyncIterator[Piece]:
        for piece in pieces:
            yield piece

    async def gather() -> list[Piece]:
        return [piece async for piece in without_stops(source(), stops)]

    return asyncio.run(gather())


def _streamed(texts: list[str], reason: str) -> list[Piece]:
    return [Piece((t,)) for t in texts[:-1]] + [Piece((texts[-1],), (reason,), final=True)]


@pytest.mark.parametrize("texts", [
    ["Monday, Tuesday, Wednesday, Thursday"],          # whole
    ["Monday, ", "Tuesday, ", "Wednesday, Thu", "rsday"],  # the stop string split across pieces
    ["Monday, ", "Tuesday, ", "Wednesday, ", "Th", "u", "r", "sday"],
])
def test_the_stop_string_is_cut_and_never_sent_first(texts: list[str]) -> None:
    out = _run(_streamed(texts, "stop"), ["Thursday"])
    assert "".join(p.text for p in out) == "Monday, Tuesday, Wednesday, "
    assert all("Th" not in p.text for p in out)  # held back while it could be the stop string's start
    assert out[-1].final and out[-1].finish_reason == "stop"


def test_a_held_start_that_was_not_the_stop_string_is_sent() -> None:
    out = _run(_streamed(["The Th", "eory of", " it"], "length"), ["Thursday"])
    assert [p.text for p in out] == ["The ", "Theory of", " it"]


def test_only_a_stop_ending_is_cut() -> None:
    # An answer cut by its length that happens to end with the stop string's text keeps it.
    out = _run(_streamed(["It is Thursday"], "length"), ["Thursday"])
    assert out[-1].text == "It is Thursday"


def test_each_sequence_is_cut_on_its_own() -> None:
    pieces = [Piece(("a, Thu", "b, c")), Piece(("rsday", ", END"), ("stop", "stop"), final=True)]
    out = _run(pieces, ["Thursday", "END"])
    assert [p.texts for p in out] == [("a, ", "b, c"), ("", ", ")]
