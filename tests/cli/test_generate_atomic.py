"""generate is atomic per repository: a SIGKILL at any write point, or a full disk, never leaves a mix.

The killed runs are real ``tritonkit generate`` processes on a real filesystem. They stop themselves with
SIGKILL at the N-th filesystem change below the output folder, found with a Python audit hook
(``sys.addaudithook``, PEP 578): the interpreter raises an event before every ``os.rename``/``os.replace``,
unlink, ``mkdir``, ``rmdir`` and ``open`` for writing, so the test sees every point the writer has, including
any a later change adds, and tritonkit itself carries no test hook.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonkit.cli import main
from tritonkit.write.generate import generate

# Runs tritonkit's own entry point (the console script's ``main``) under an audit hook that counts the
# filesystem changes below TK_OUT and sends SIGKILL to its own process just before the TK_KILL_AT-th.
KILLER = r"""
import os, signal, sys

out = os.path.realpath(os.environ["TK_OUT"]) + os.sep
stop = int(os.environ["TK_KILL_AT"])
seen = 0
CHANGES = {"os.rename", "os.remove", "os.rmdir", "os.mkdir"}


def below_out(path, dir_fd):
    if dir_fd not in (None, -1):  # fd-relative: shutil.rmtree of the staging folder
        return True
    return isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)).startswith(out)


def hook(event, args):
    global seen
    if event in CHANGES:
        change = below_out(args[0], args[-1])
    elif event == "open" and args[0] is not None and not isinstance(args[0], int):
        writes = (args[2] or 0) & (os.O_WRONLY | os.O_RDWR) or any(c in (args[1] or "") for c in "wxa+")
        change = bool(writes) and below_out(args[0], None)
    else:
        return
    if change:
        seen += 1
        if seen == stop:
            os.kill(os.getpid(), signal.SIGKILL)


sys.addaudithook(hook)
from tritonkit.cli import main

code = main(sys.argv[1:])
sys.stderr.write(f"write points: {seen}\n")
sys.exit(code)
"""

MODEL_PY = "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n    pass\n"


def model(name: str, batch: int, artifact: str = "m.py") -> str:
    return f"""\
  - name: {name}
    backend: python
    artifact: {artifact}
    max_batch_size: {batch}
    input: [{{name: X, data_type: FP32, dims: [2]}}]
    output: [{{name: Y, data_type: FP32, dims: [2]}}]
"""


def write_spec(folder: Path, *models: str) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text("models:\n" + "".join(models))
    return spec


def tree(root: Path) -> dict[str, bytes]:
    """Every file (its bytes) and folder (None) below ``root``: what Triton and the user see."""
    return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else ""): b"" if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def run_killed(spec: Path, out: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TK_OUT": str(out), "TK_KILL_AT": str(kill_at)}
    return subprocess.run([sys.executable, "-c", KILLER, "generate", str(spec), "-o", str(out), "-q"],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def old_and_new(tmp_path: Path) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    """A project whose repository is OLD (two runs: a model at versions 1 and 2, an ensemble-free pair,
    the user's own files inside), with a spec that makes it NEW: a third version of ``a`` (so version 1
    goes), model ``b`` removed, model ``c`` added. Returns the project and both trees."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "m.py").write_text(MODEL_PY)
    generate(write_spec(project, model("a", 8), model("b", 8)), project)
    generate(write_spec(project, model("a", 16), model("b", 8)), project)
    (project / "model_repository/a/NOTES.md").write_text("the user's own file\n")
    (project / "model_repository/mine/1").mkdir(parents=True)
    (project / "model_repository/mine/config.pbtxt").write_text('backend: "python"\n')
    write_spec(project, model("a", 32), model("c", 4))
    old = tree(project)  # the new spec is in place: what differs from here on is generate's doing
    reference = tmp_path / "reference"
    shutil.copytree(project, reference)
    generate(reference / "spec.yaml", reference)
    new = tree(reference)
    assert new != old and "model_repository/a/1/" in old and "model_repository/a/1/" not in new
    assert "model_repository/c/1/model.py" in new and "model_repository/b/" not in new
    assert new["model_repository/a/NOTES.md"] == old["model_repository/a/NOTES.md"]
    return project, old, new


def test_a_kill_at_every_write_point_leaves_the_old_or_the_new_repository(
        tmp_path: Path, old_and_new: tuple[Path, dict[str, bytes], dict[str, bytes]],
        capsys: pytest.CaptureFixture[str]) -> None:
    project, old, new = old_and_new
    whole = tmp_path / "whole"
    shutil.copytree(project, whole)
    done = run_killed(whole / "spec.yaml", whole, kill_at=0)  # never killed: counts the points
    assert done.returncode == 0, done.stderr
    points = int(done.stderr.rsplit("write points: ", 1)[1])
    assert tree(whole) == new
    assert points >= 10  # stage, commit, renames, removals, pruning, clean-up

    before_commit = after_commit = 0
    for kill_at in range(1, points + 1):
        out = tmp_path / f"kill{kill_at}"
        shutil.copytree(project, out)
        killed = run_killed(out / "spec.yaml", out, kill_at)
        assert killed.returncode == -9, (kill_at, killed.stderr)
        staging = out / ".tritonkit-staging"
        left = tree(out)
        seen = {p: b for p, b in left.items() if not p.startswith(".tritonkit-staging/")}  # beside the repository
        journal = staging / "journal.json"
        if not journal.exists():
            # Killed before the commit (or after the switch, while removing the staging folder).
            assert seen in (old, new), kill_at
            before_commit += seen == old
        else:
            after_commit += 1
            code = main(["validate", str(out / "model_repository")])
            err = capsys.readouterr()
            assert code == 1, kill_at
            assert "an interrupted generate left this repository half switched" in err.out
            assert "run tritonkit generate again" in err.out
            code = main(["generate", str(out / "spec.yaml"), "-o", str(out), "--check"])
            assert code == 1 and "interrupted generate" in capsys.readouterr().err
        # The next run finishes the switch (or does the whole write) and leaves nothing of its own behind.
        assert main(["generate", str(out / "spec.yaml"), "-o", str(out), "-q"]) == 0, kill_at
        capsys.readouterr()
        assert tree(out) == new, kill_at
        assert main(["generate", str(out / "spec.yaml"), "-o", str(out), "--check"]) == 0
        capsys.readouterr()
        shutil.rmtree(out)
    assert before_commit >= 5 and after_commit >= 5, (before_commit, after_commit)


def test_a_journal_never_overwrites_a_file_changed_after_the_kill(
        tmp_path: Path, old_and_new: tuple[Path, dict[str, bytes], dict[str, bytes]],
        capsys: pytest.CaptureFixture[str]) -> None:
    project, old, _ = old_and_new
    out = tmp_path / "out"
    for kill_at in range(1, 200):  # the first point after the commit: every rename still to do
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(project, out)
        assert run_killed(out / "spec.yaml", out, kill_at).returncode == -9
        if (out / ".tritonkit-staging/journal.json").exists():
            break
    steps = json.loads((out / ".tritonkit-staging/journal.json").read_text())["steps"]
    update = next(s["dst"] for s in steps if s["op"] == "put" and s["before"] is not None
                  and s["dst"].endswith("config.pbtxt"))
    (out / update).write_text("# edited by hand after the kill\n")
    code = main(["generate", str(out / "spec.yaml"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and f"{update}: this file was changed after generate planned to replace it" in err
    assert (out / update).read_text() == "# edited by hand after the kill\n"
    assert (out / ".tritonkit-staging/journal.json").exists()
    assert {p: b for p, b in tree(out).items() if not p.startswith(".tritonkit-staging")} == \
        {**old, update: b"# edited by hand after the kill\n"}


def test_stray_temp_files_of_an_older_writer_are_removed_and_no_others(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(MODEL_PY)
    spec = write_spec(tmp_path, model("a", 8))
    generate(spec, tmp_path)
    folder = tmp_path / "model_repository/a"
    (folder / ".config.pbtxt.k3j_9x2a.tmp").write_text("half a config")  # what a killed write_atomic left
    (folder / ".notes.k3j_9x2a.tmp").write_text("not a file tritonkit writes")
    (folder / ".config.pbtxt.mine.tmp").write_text("not write_atomic's pattern")
    generate(spec, tmp_path)
    assert not (folder / ".config.pbtxt.k3j_9x2a.tmp").exists()
    assert (folder / ".notes.k3j_9x2a.tmp").exists() and (folder / ".config.pbtxt.mine.tmp").exists()


def _mount_small_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    if shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 256 KiB tmpfs (needs root, as in CI); skipped elsewhere, failed in CI."""
    disk = tmp_path / "disk"
    if not _mount_small_tmpfs(disk, "256k"):
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs for the disk-full test (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_a_clear_error_and_leaves_the_old_repository_intact(tmp_path: Path, small_disk: Path) -> None:
    (tmp_path / "m.py").write_text(MODEL_PY)
    (tmp_path / "big.py").write_text(MODEL_PY + "# padding\n" * 40_000)  # 400 KB: more than the disk holds
    generate(write_spec(tmp_path, model("a", 8), model("b", 8)), small_disk)
    (small_disk / "model_repository/mine").mkdir()
    (small_disk / "model_repository/mine/config.pbtxt").write_text("the user's own\n")
    before = {p: (b, (small_disk / p).stat().st_mtime_ns) for p, b in tree(small_disk).items()}
    spec = write_spec(tmp_path, model("a", 16), model("big", 8, artifact="big.py"))
    script = Path(sys.executable).parent / "tritonkit"
    done = subprocess.run([str(script), "generate", str(spec), "-o", str(small_disk)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr and "bug" not in done.stderr
    assert "model_repository/big/1/model.py: no space left on device while writing it" in done.stderr
    assert "nothing was changed: the repository is as it was" in done.stderr
    assert re.search(rf"free space on the device that holds {re.escape(str(small_disk))} \(this run writes "
                     r"3\d\d KiB\), or use another -o folder; then run tritonkit generate again", done.stderr)
    assert {p: (b, (small_disk / p).stat().st_mtime_ns) for p, b in tree(small_disk).items()} == before
    assert not (small_disk / ".tritonkit-staging").exists()
    # Any other error while staging ends the same way: here a read-only filesystem.
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = subprocess.run([str(script), "generate", str(spec), "-o", str(small_disk)], capture_output=True,
                              text=True, timeout=120)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert done.returncode == 1 and "read-only file system while writing it; nothing was changed" in done.stderr
    assert {p: (b, (small_disk / p).stat().st_mtime_ns) for p, b in tree(small_disk).items()} == before
    # With the space back (a smaller spec), the same folder takes the new files.
    generate(write_spec(tmp_path, model("a", 16)), small_disk)
    assert (small_disk / "model_repository/a/2/model.py").exists()


def test_a_repository_on_another_filesystem_is_refused_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.py").write_text(MODEL_PY)
    spec = write_spec(tmp_path, model("a", 8))
    out = tmp_path / "out"
    out.mkdir()
    repo = out / "model_repository"
    if not _mount_small_tmpfs(repo, "1m"):
        if os.environ.get("CI"):
            pytest.fail("cannot mount a tmpfs (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        code = main(["generate", str(spec), "-o", str(out)])
        err = capsys.readouterr().err
        assert code == 1 and "invalid cross-device link while writing it; nothing was changed" in err
        assert "the output folder must be one filesystem" in err
        assert sorted(p.name for p in out.iterdir()) == ["model_repository"] and not any(repo.iterdir())
    finally:
        subprocess.run(["umount", str(repo)], check=False)
