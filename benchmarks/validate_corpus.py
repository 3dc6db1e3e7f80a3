"""Figures of the validate corpus: size, how many the real server refused, how many validate flagged, agreement.

Run: .venv/bin/python benchmarks/validate_corpus.py [--workers N] [--no-server] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "corpus_cases", Path(__file__).parents[1] / "tests" / "corpus" / "corpus_cases.py")
assert _SPEC is not None and _SPEC.loader is not None
corpus = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("corpus_cases", corpus)
_SPEC.loader.exec_module(corpus)


def _figures(workers: int, with_server: bool) -> dict[str, object]:
    cases = corpus.load_cases()
    bad = [c for c in cases if c.group == "bad"]
    good = [c for c in cases if c.group != "bad"]
    started = time.monotonic()
    flagged = [c for c in bad if corpus.validate_agrees(c, corpus.validate_case(c))]
    passed = [c for c in good if corpus.validate_agrees(c, corpus.validate_case(c))]
    validate_s = time.monotonic() - started
    figures: dict[str, object] = {
        "bad_repositories": len(bad),
        "good_and_warn_repositories": len(good),
        "bad_judged_by_server": sum(c.server_judges for c in bad),
        "validate_flagged_bad": len(flagged),
        "validate_passed_good": len(passed),
        "validate_seconds": round(validate_s, 2),
    }
    if with_server:
        started = time.monotonic()
        verdicts = corpus.server_verdicts(cases, workers=workers)
        judged_bad = [v for v in verdicts if v.case.group == "bad"]
        agree = [v for v in verdicts if v.agrees and corpus.validate_agrees(v.case, corpus.validate_case(v.case))]
        figures.update({
            "server_refused_bad": sum(not v.loaded for v in judged_bad),
            "server_loaded_good": sum(v.loaded for v in verdicts if v.case.group != "bad"),
            "server_judged": len(verdicts),
            "agreement": f"{len(agree)}/{len(verdicts)}",
            "disagreements": [f"{v.case}: {v.detail}" for v in verdicts if v not in agree],
            "server_seconds": round(time.monotonic() - started, 1),
            "slowest_cases": [f"{v.case} {v.seconds:.1f}s" for v in sorted(verdicts, key=lambda v: -v.seconds)[:5]],
        })
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=3, help="servers started at a time")
    parser.add_argument("--no-server", action="store_true", help="validate only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = _figures(args.workers, not args.no_server)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    ok = figures["validate_flagged_bad"] == figures["bad_repositories"] and \
        figures["validate_passed_good"] == figures["good_and_warn_repositories"] and not figures.get("disagreements")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
