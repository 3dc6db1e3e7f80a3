#!/usr/bin/env bash
# Set up a bare GPU host (no internet) from carried files, then run the GPU suite.
#   bash benchmarks/gpu/device.sh CARRY_DIR OUT_DIR [SCRIPT.py] [script options]
# SCRIPT.py is a script in benchmarks/gpu/ (default run_suite.py); it gets --out and --arch.
# CARRY_DIR is what `python benchmarks/gpu/bundle.py --out CARRY_DIR` builds here from the project's own
# environment (the README's test command's venv).
# Results are packed into OUT_DIR/results.tar.gz (also when the run is cut short, or stopped at $DEADLINE).
# CARRY_DIR holds: pytriton-min.tar.xz (the nvidia-pytriton wheel's server, backends, 3.12 stub and
# libraries), wheels/*.whl (numpy 1.26.4, tritonclient, pydantic, protobuf, ...), smollm2-arch/.
set -euo pipefail
carry="$1"; out="$2"; shift 2
script=run_suite.py
if [[ "${1:-}" == *.py ]]; then script="$1"; shift; fi
site=/tmp/site
mkdir -p "$site"
tar -xJf "$carry/pytriton-min.tar.xz" -C "$site"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$carry"/wheels/*.whl
# The Python backend stub runs the first python3 on PATH with -E (PYTHONPATH ignored): its numpy
# must be 1.x, so numpy 1.26 goes into that interpreter's own environment.
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
# DEADLINE (seconds): the script gets SIGINT then (tune restores the model and stops), so what it
# measured comes back inside the device call's limit.
PYTHONUNBUFFERED=1 ${DEADLINE:+timeout -s INT -k 30 "$DEADLINE"} python3 "benchmarks/gpu/$script" --out "$results" --arch "$carry/smollm2-arch" "$@" 2>&1 | tee -a "$results/suite.log"
