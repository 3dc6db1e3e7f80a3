#!/usr/bin/env bash
# Set up a bare GPU host (no internet) from carried files, then run the GPU suite.
#   bash benchmarks/gpu/device.sh CARRY_DIR OUT_DIR [run_suite.py options]
# Results are packed into OUT_DIR/results.tar.gz (also when the run is cut short).
# CARRY_DIR holds: pytriton-min.tar.xz (the nvidia-pytriton wheel's server, backends, 3.12 stub and
# libraries), wheels/*.whl (numpy 1.26.4, tritonclient, pydantic, protobuf, ...), smollm2-arch/.
set -euo pipefail
carry="$1"; out="$2"; shift 2
site=/tmp/site
mkdir -p "$site"
tar -xJf "$carry/pytriton-min.tar.xz" -C "$site"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$carry"/wheels/*.whl
# The Python backend stub runs the first python3 on PATH with -E (PYTHONPATH ignored): its numpy
# must be 1.x, so numpy 1.26 goes into that interpreter's own environment (DESIGN.md section 6).
python3 -m pip install -q --no-index --no-deps --force-reinstall "$carry"/wheels/numpy-1.26*.whl
# That image's scikit-learn/scipy are built for numpy 2 and transformers imports them when present:
# take them out of this scratch environment (transformers imports both when present).
python3 -m pip uninstall -q -y scikit-learn scipy || true
python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" .
export PYTHONPATH="$site"
python3 -c "import numpy, tritonkit; print('numpy', numpy.__version__, 'tritonkit', tritonkit.__version__)"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
results=/tmp/gpu-results
mkdir -p "$results" "$out"
trap 'tar -czf "$out/results.tar.gz" -C "$results" . ; cp "$results/suite.log" "$out/" 2>/dev/null || true' EXIT
PYTHONUNBUFFERED=1 python3 benchmarks/gpu/run_suite.py --out "$results" --arch "$carry/smollm2-arch" "$@"
