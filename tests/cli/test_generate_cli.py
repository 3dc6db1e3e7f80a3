"""The generate and init commands: exit codes, the status lines, and the error format."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tritonkit.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_then_generate_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "init", str(tmp_path), "--template", "classic")
    assert code == 0 and "create" in err
    spec = str(tmp_path / "tritonkit.yaml")
    code, out, err = run(capsys, "generate", spec, "-o", str(tmp_path))
    assert code == 0 and out == ""
    assert re.search(r"^\s+create model_repository/add_sub/config.pbtxt$", err, re.M)
    code, _, err = run(capsys, "generate", spec, "-o", str(tmp_path))
    statuses = {line.split()[0] for line in err.splitlines() if line.strip()}
    assert code == 0 and statuses == {"same"}
    code, _, err = run(capsys, "generate", spec, "-o", str(tmp_path), "--check")
    assert code == 0 and "up to date" in err


def test_init_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tritonkit.yaml").write_text("mine\n")
    code, _, err = run(capsys, "init", str(tmp_path))
    assert code == 1 and "already exists" in err
    assert (tmp_path / "tritonkit.yaml").read_text() == "mine\n"


def test_check_exits_3_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "init", str(tmp_path), "--template", "classic")
    code, _, err = run(capsys, "generate", str(tmp_path / "tritonkit.yaml"), "-o", str(tmp_path), "--check")
    assert code == 3 and "would create" in err
    assert not (tmp_path / "model_repository").exists()


def test_spec_error_exits_1_in_compiler_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("models:\n  - name: m\n    backend: pythn\n    max_batch_sise: 2\n")
    code, out, err = run(capsys, "generate", str(spec), "-o", str(tmp_path))
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{spec}:3:14: models.m.backend is 'pythn'") and "did you mean 'python'?" in lines[0]
    assert lines[1].startswith(f"{spec}:4:5: unknown key 'max_batch_sise'")
    assert not (tmp_path / "model_repository").exists()


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "generate", "--no-such-flag")
    assert code == 2 and "No such option" in err


def test_conflict_exits_1_and_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "init", str(tmp_path), "--template", "classic")
    theirs = tmp_path / "model_repository" / "scale" / "config.pbtxt"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("# someone else's\n")
    code, _, err = run(capsys, "generate", str(tmp_path / "tritonkit.yaml"), "-o", str(tmp_path))
    assert code == 1
    assert "model_repository/scale/config.pbtxt: exists but was not written by tritonkit" in err
    assert theirs.read_text() == "# someone else's\n"


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "init", str(tmp_path), "--template", "classic")
    code, _, err = run(capsys, "generate", str(tmp_path / "tritonkit.yaml"), "-o", str(tmp_path), "--dry-run")
    assert code == 0 and "create" in err and "nothing written" in err
    assert not (tmp_path / "model_repository").exists()


def test_console_script_runs_as_a_real_process(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tritonkit"
    done = subprocess.run([str(script), "generate", str(tmp_path / "missing.yaml")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "missing.yaml: spec file not found; check the path" in done.stderr
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "generate" in done.stdout


def _classic_project(folder: Path, spec_name: str = "tritonkit.yaml") -> Path:
    assert main(["init", str(folder), "--template", "classic"]) == 0
    spec = folder / "tritonkit.yaml"
    if spec_name != spec.name:
        spec = spec.rename(folder / spec_name)
    return spec


def test_default_output_is_the_specs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = _classic_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = run(capsys, "generate", str(spec))
    assert code == 0, err
    assert (tmp_path / "project" / "model_repository" / "add_sub" / "config.pbtxt").is_file()
    assert list(elsewhere.iterdir()) == []
    code, out, _ = run(capsys, "generate", "--help")
    assert "Default: the spec file's own folder" in " ".join(re.sub("[│╭╮╰╯─]", " ", out).split())


def test_another_spec_never_takes_over_a_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_a = _classic_project(tmp_path, "a.yaml")
    assert main(["generate", str(spec_a)]) == 0
    spec_b = tmp_path / "b.yaml"
    spec_b.write_text(spec_a.read_text().replace("name: add_then_scale", "name: other_pipeline"))
    capsys.readouterr()
    for extra in ([], ["--dry-run"], ["--check"]):
        code, _, err = run(capsys, "generate", str(spec_b), *extra)
        assert code == 1, (extra, err)
        assert "was generated from another spec, a.yaml" in err
        assert "another folder with -o" in err and f"remove {tmp_path / 'model_repository'}" in err
        assert "remove " + "model_repository/add_then_scale" not in err  # no removal is planned
    assert (tmp_path / "model_repository" / "add_then_scale" / "config.pbtxt").is_file()
    assert main(["generate", str(spec_b), "-o", str(tmp_path / "b")]) == 0  # the fix works
    assert main(["generate", str(spec_a)]) == 0  # and spec A still owns its repository


def test_same_file_name_in_another_folder_is_another_spec(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _classic_project(tmp_path / "one"), _classic_project(tmp_path / "two")
    out = tmp_path / "deploy"
    assert main(["generate", str(first), "-o", str(out)]) == 0
    assert main(["generate", str(first), "-o", str(out)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "generate", str(second), "-o", str(out))
    assert code == 1 and "was generated from another spec, ../one/tritonkit.yaml" in err


def test_a_lost_manifest_is_named_as_the_likely_cause(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _classic_project(tmp_path)
    assert main(["generate", str(spec)]) == 0
    (tmp_path / "model_repository" / ".tritonkit-manifest.json").unlink()
    with (tmp_path / "model_repository" / "scale" / "config.pbtxt").open("a") as handle:
        handle.write("# edited\n")
    capsys.readouterr()
    code, _, err = run(capsys, "generate", str(spec))
    assert code == 1
    assert "model_repository/scale/config.pbtxt: exists but was not written by tritonkit" in err
    assert "there is no model_repository/.tritonkit-manifest.json" in err
    assert "restore model_repository/.tritonkit-manifest.json" in err
