"""validate's verdict on every repository of the corpus (tests/corpus/cases.yaml), without a server."""

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

CASES = corpus.load_cases()


def test_corpus_is_large_enough() -> None:
    bad = [c for c in CASES if c.group == "bad"]
    assert len(bad) >= 40
    assert sum(c.server_judges for c in bad) >= 0.9 * len(bad)
    assert len([c for c in CASES if c.group == "good"]) >= 5
    for case in CASES:
        assert case.path.is_dir(), f"{case} has no repository folder"
        assert case.server_judges or str(case.meta["server"]).startswith("cannot judge: "), case


@pytest.mark.parametrize("case", CASES, ids=str)
def test_validate_agrees_with_expectation(case: object) -> None:
    report = corpus.validate_case(case)
    shown = [p.format() for p in [*report.errors, *report.warnings]]
    assert corpus.validate_agrees(case, report), "\n".join(shown) or "no problem reported"


@pytest.mark.parametrize("case", [c for c in CASES if c.group == "bad"], ids=str)
def test_every_error_is_located_in_a_file(case: object) -> None:
    report = corpus.validate_case(case)
    for problem in report.errors:
        assert problem.path and problem.path.startswith(f"{case.name}/"), problem
        assert problem.message and problem.hint, problem
        if problem.path.endswith("config.pbtxt"):
            assert problem.line is not None and problem.line >= 1 and problem.col is not None, problem
