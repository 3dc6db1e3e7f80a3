"""The real tritonserver and ``tritonkit validate`` agree on every corpus repository the server can judge.

Each judged case gets its own tritonserver (free ports, --exit-on-error, strict readiness), three at a
time: bad repositories must never become ready, good and warn ones must. validate must flag every bad
case, including those the local server cannot judge, and pass every good one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "corpus_cases", Path(__file__).parents[1] / "corpus" / "corpus_cases.py")
assert _SPEC is not None and _SPEC.loader is not None
corpus = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("corpus_cases", corpus)
_SPEC.loader.exec_module(corpus)


@pytest.mark.triton
@pytest.mark.timeout(400)
def test_server_and_validate_agree_on_the_corpus() -> None:
    cases = corpus.load_cases()
    verdicts = corpus.server_verdicts(cases, workers=3)
    wrong_server = [f"{v.case}: server {'loaded' if v.loaded else 'refused'} it ({v.detail})"
                    for v in verdicts if not v.agrees]
    wrong_validate = [f"{c}: validate disagrees" for c in cases
                      if not corpus.validate_agrees(c, corpus.validate_case(c))]
    assert not wrong_server + wrong_validate, "\n".join(wrong_server + wrong_validate)
    bad = [v for v in verdicts if v.case.group == "bad"]
    assert len(bad) >= 40
    assert all(not v.loaded for v in bad)
    assert all(v.loaded for v in verdicts if v.case.group != "bad")
