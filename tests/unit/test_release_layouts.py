"""Releases after 26.07: the layouts their images ship, and TensorRT 11's precision rules, in generate and validate."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tritonkit.errors import SpecError
from tritonkit.model import build_repository
from tritonkit.model.deploy import build_deployment
from tritonkit.pipeline import build_spec
from tritonkit.render.docker import render_docker
from tritonkit.spec.load import load_spec
from tritonkit.triton import releases
from tritonkit.validate import validate_tree

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENGINE_CONFIG = (b'name: "tensorrt_llm"\nbackend: "tensorrtllm"\nmax_batch_size: 8\n'
                 b'input [ { name: "input_ids" data_type: TYPE_INT32 dims: [ -1 ] } ]\n'
                 b'output [ { name: "output_ids" data_type: TYPE_INT32 dims: [ -1, -1 ] } ]\n')
TRT_MODEL = """\
models:
  - name: classifier
    backend: tensorrt
    artifact: tiny.onnx
    max_batch_size: 8
    build:
      tensorrt:
        precision: {precision}
        shapes: {{INPUT: {{min: [3, 8, 8], opt: [3, 16, 16], max: [3, 32, 32]}}}}
"""
LLMAPI = """\
llms:
  - name: llama
    engine: {kind: tensorrt_llm_api, model: nvidia/Llama-3.1-8B-Instruct}
"""


def _spec(tmp_path: Path, text: str) -> Path:
    shutil.copy(EXAMPLES / "models" / "tiny_classifier.onnx", tmp_path / "tiny.onnx")
    (tmp_path / "spec.yaml").write_text(text)
    return tmp_path / "spec.yaml"


def _script(spec: Path) -> str:
    loaded = load_spec(spec)
    data = render_docker(build_deployment(loaded, build_repository(loaded).units))["docker/engine-build.sh"]
    assert isinstance(data, bytes)
    return data.decode()


# -- layouts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("ngc", ["26.08", "26.09", "26.10", "26.11"])
def test_the_cpp_engine_after_26_07_is_refused_naming_the_last_release_with_it(tmp_path: Path, ngc: str) -> None:
    spec = (EXAMPLES / "trtllm.yaml").read_text().replace('version: "25.10"', f'version: "{ngc}"')
    with pytest.raises(SpecError) as caught:
        build_spec(_spec(tmp_path, spec))
    (problem,) = caught.value.problems
    assert problem.message.startswith(f"llms.chat.engine.kind is tensorrt_llm (the C++ engine backend), which NGC "
                                      f"{ngc}'s images do not ship: NGC {ngc} documents no -trtllm-python-py3 image")
    assert "\"The Triton TensorRT-LLM Backend container image is not included in this release.\"" in problem.message
    assert problem.message.endswith("the last release with the backend is 26.07 (TensorRT-LLM 1.2.1)")
    assert 'set triton.version to "26.07"' in (problem.hint or "")


def test_the_cpp_engine_on_26_07_generates(tmp_path: Path) -> None:
    spec = (EXAMPLES / "trtllm.yaml").read_text().replace('version: "25.10"', 'version: "26.07"')
    assert build_spec(_spec(tmp_path, spec)).repository.units


def test_the_llmapi_kind_needs_a_documented_trtllm_image_or_one_of_your_own(tmp_path: Path) -> None:
    base = (EXAMPLES / "trtllm_llmapi.yaml").read_text()
    with pytest.raises(SpecError) as caught:
        build_spec(_spec(tmp_path, base.replace('version: "26.04"', 'version: "26.09"')))
    (problem,) = caught.value.problems
    assert problem.message.startswith("llms.llama.engine.kind is tensorrt_llm_api, which runs in NGC's "
                                      "-trtllm-python-py3 image, but NGC 26.09 documents no -trtllm-python-py3 image")
    assert problem.hint == 'set triton.version to "26.07" (TensorRT-LLM 1.2.1), or set deploy.image to a ' \
                           "TensorRT-LLM image you build"
    own = base.replace('version: "26.04"', 'version: "26.09"').replace("deploy:\n", "deploy:\n  image: my/trtllm:1.3\n")
    assert build_spec(_spec(tmp_path, own)).repository.units


def test_validate_warns_on_the_engine_backend_where_the_target_release_lacks_it() -> None:
    files = {"tensorrt_llm/config.pbtxt": ENGINE_CONFIG, "tensorrt_llm/1/": None}

    def engine_warnings(version: str | None) -> list[str]:
        report = validate_tree(files, triton_version=version)
        return [p.format() for p in report.warnings if "C++ engine layout" in p.message]

    (warning,) = engine_warnings("26.08")
    assert warning.startswith("model_repository/tensorrt_llm/config.pbtxt:2:1: warning: backend 'tensorrtllm' is "
                              "TensorRT-LLM's C++ engine layout, which NGC 26.08's images do not ship")
    assert "the last release with the backend is 26.07 (TensorRT-LLM 1.2.1); serve it with NGC 26.07's" in warning
    assert engine_warnings("26.07") == [] and engine_warnings(None) == []


def test_validate_warns_on_the_llmapi_model_where_no_trtllm_image_is_documented() -> None:
    files = {"tensorrt_llm/config.pbtxt": b'name: "tensorrt_llm"\nbackend: "python"\n'
                                          b'input [ { name: "text_input" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
                                          b'output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]\n',
             "tensorrt_llm/1/model.py": b"class TritonPythonModel:\n    pass\n",
             "tensorrt_llm/1/model.yaml": b"model: m\ntriton_config:\n  max_batch_size: 0\n  decoupled: false\n"}
    (warning,) = [p for p in validate_tree(files, triton_version="26.11").warnings if "llmapi" in p.message]
    assert (warning.path, warning.line) == ("model_repository/tensorrt_llm/1/model.yaml", 1)
    assert warning.hint == "serve it with NGC 26.07's image (TensorRT-LLM 1.2.1), or with a TensorRT-LLM image " \
                           "you build"
    assert not [p for p in validate_tree(files, triton_version="26.07").warnings if "llmapi model runs" in p.message]


# -- TensorRT precision ------------------------------------------------------------------------------

def test_precision_flags_are_written_behind_a_check_of_the_images_trtexec(tmp_path: Path) -> None:
    script = _script(_spec(tmp_path, 'triton: {version: "26.09"}\n' + TRT_MODEL.format(precision="fp16")))
    assert 'TRTEXEC_HELP="$("$TRTEXEC" --help 2>&1 || true)"' in script
    assert "if ! has_flag --fp16; then" in script and " --fp16 " in script
    assert "--low_precision_type fp16 --keep_io_types" in script and "precision: strongly_typed" in script


def test_strongly_typed_passes_the_flag_only_where_trtexec_has_it(tmp_path: Path) -> None:
    script = _script(_spec(tmp_path, 'triton: {version: "26.09"}\n' + TRT_MODEL.format(precision="strongly_typed")))
    assert "if has_flag --stronglyTyped; then typed=\"--stronglyTyped\"; fi" in script
    assert '${typed:+"$typed"} --saveEngine=' in script
    assert "--fp16" not in script.replace("(--fp16, --bf16, --int8)", "")


def test_fp32_needs_no_check(tmp_path: Path) -> None:
    script = _script(_spec(tmp_path, 'triton: {version: "26.09"}\n' + TRT_MODEL.format(precision="fp32")))
    assert "has_flag" not in script and "TRTEXEC_HELP" not in script


def test_a_documented_tensorrt_11_image_refuses_a_precision_flag_at_generate(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path, 'triton: {version: "26.07"}\n' + TRT_MODEL.format(precision="bf16") + LLMAPI)
    build_spec(spec)  # the trtllm image of 26.07 has TensorRT 10.14.1.48: the flag is fine
    real = releases.release
    monkeypatch.setattr(releases, "release", lambda ngc: dataclasses.replace(real(ngc), tensorrt="11.3.0"))
    with pytest.raises(SpecError) as caught:
        build_spec(spec)
    (problem,) = caught.value.problems
    assert problem.line == 9 and problem.message.startswith(
        "models.classifier.build.tensorrt.precision is bf16, but NGC 26.07's image has TensorRT 11.3.0: TensorRT 11 "
        "removed --bf16 (\"TensorRT 11.x removes all precision flags")
    assert "--low_precision_type bf16" in (problem.hint or "")


# -- the build script, run by bash against trtexec's two kinds of --help -------------------------------

TRT10_HELP = ("=== Build Options ===\n  --fp16                      Enable fp16 precision, in addition to fp32\n"
              "  --int8                      Enable int8 precision\n"
              "  --stronglyTyped             Create a strongly typed network.\n")
TRT11_HELP = "=== Build Options ===\n  --memPoolSize=poolspec     Specify the size constraints\n"


def _run(tmp_path: Path, precision: str, help_text: str) -> subprocess.CompletedProcess[str]:
    spec = _spec(tmp_path, 'triton: {version: "26.09"}\n' + TRT_MODEL.format(precision=precision))
    script = _script(spec).replace("/models/", f"{tmp_path}/models/").replace("/engine-sources/",
                                                                             f"{tmp_path}/engine-sources/")
    (tmp_path / "models" / "classifier" / "1").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "help.txt").write_text(help_text)
    trtexec = bin_dir / "trtexec"  # stands in for the image's trtexec: prints a help text, records its arguments
    trtexec.write_text('#!/usr/bin/env bash\nif [ "$1" = --help ]; then cat "$HELP"; exit 0; fi\n'
                       'echo "$@" > "$ARGS"\nfor a in "$@"; do case "$a" in --saveEngine=*) echo plan > '
                       '"${a#--saveEngine=}";; esac; done\n')
    trtexec.chmod(0o755)
    (tmp_path / "build.sh").write_text(script)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HELP": str(tmp_path / "help.txt"),
           "ARGS": str(tmp_path / "args.txt")}
    return subprocess.run(["bash", str(tmp_path / "build.sh")], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_the_script_builds_with_the_flag_where_trtexec_has_it(tmp_path: Path) -> None:
    done = _run(tmp_path, "fp16", TRT10_HELP)
    assert done.returncode == 0, done.stderr
    assert " --fp16 " in (tmp_path / "args.txt").read_text()
    assert (tmp_path / "models" / "classifier" / "1" / "model.plan").is_file()


def test_the_script_stops_with_the_fix_where_trtexec_lacks_the_flag(tmp_path: Path) -> None:
    done = _run(tmp_path, "fp16", TRT11_HELP)
    assert done.returncode == 1
    assert done.stderr.startswith("classifier: this image's trtexec has no --fp16: TensorRT 11 removed --fp16")
    assert "python -m modelopt.onnx.autocast" in done.stderr
    assert not (tmp_path / "args.txt").exists()
    assert not (tmp_path / "models" / "classifier" / "1" / "model.plan").exists()


@pytest.mark.parametrize(("help_text", "flag"), [(TRT10_HELP, True), (TRT11_HELP, False)])
def test_the_script_asks_for_a_strongly_typed_network_only_where_trtexec_takes_it(tmp_path: Path, help_text: str,
                                                                                  flag: bool) -> None:
    done = _run(tmp_path, "strongly_typed", help_text)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "args.txt").read_text().split()
    assert ("--stronglyTyped" in args) is flag
    assert not any(arg in args for arg in ("--fp16", "--bf16", "--int8"))
