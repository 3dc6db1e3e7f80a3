"""How a Problem prints: a location only where a file is involved."""

from __future__ import annotations

import pytest

from tritonkit.errors import Problem, ServerError


@pytest.mark.parametrize(("problem", "text"), [
    (Problem("tritonserver is not installed", hint="pip install 'tritonkit[serve]'"),
     "tritonserver is not installed; pip install 'tritonkit[serve]'"),
    (Problem("no key set", severity="warning"), "warning: no key set"),
    (Problem("unknown key 'x'", path="spec.yaml", line=3, col=5, hint="did you mean 'y'?"),
     "spec.yaml:3:5: unknown key 'x'; did you mean 'y'?"),
    (Problem("no config.pbtxt", path="repo/add_sub", severity="warning"), "repo/add_sub: warning: no config.pbtxt"),
    (Problem("bad field", path="", line=2), "2: bad field"),
])
def test_format(problem: Problem, text: str) -> None:
    assert problem.format() == text


def test_an_error_without_a_file_reads_as_its_message() -> None:
    error = ServerError("port 8000 is in use")
    assert str(error) == "port 8000 is in use"
    assert error.first.where() == ""
