"""Time `generate` on a 100-model spec: first run, no-op rerun, one-model change, and validate.

Run: python benchmarks/generate_100.py [--models 100] [--repeats 5]
Prints the median of each phase over the repeats (a fresh folder each repeat), in one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tritonkit.validate import validate_repository
from tritonkit.write.generate import generate

MODEL_PY = "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n    pass\n"


def write_spec(root: Path, count: int) -> Path:
    (root / "model.py").write_text(MODEL_PY)
    lines = ["models:"]
    for i in range(count - count // 10):
        lines += [f"  - name: m{i}", "    backend: python", "    artifact: model.py", "    max_batch_size: 32",
                  "    input: [{name: X, data_type: FP32, dims: [16]}]",
                  "    output: [{name: Y, data_type: FP32, dims: [16]}]",
                  "    dynamic_batching: {max_queue_delay_microseconds: 100}",
                  "    instance_group: [{kind: cpu, count: 2}]"]
    for i in range(count // 10):
        lines += [f"  - name: e{i}", "    backend: ensemble", "    max_batch_size: 32",
                  "    input: [{name: X, data_type: FP32, dims: [16]}]",
                  "    output: [{name: Y, data_type: FP32, dims: [16]}]",
                  "    steps:",
                  f"      - {{model_name: m{2 * i}, input_map: {{X: X}}, output_map: {{Y: mid}}}}",
                  f"      - {{model_name: m{2 * i + 1}, input_map: {{X: mid}}, output_map: {{Y: Y}}}}"]
    spec = root / "spec.yaml"
    spec.write_text("\n".join(lines) + "\n")
    return spec


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one_round(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        spec = write_spec(root, count)
        out = root / "out"
        phases = {"first generate": timed(lambda: generate(spec, out)),
                  "no-op generate": timed(lambda: generate(spec, out)),
                  "generate --check": timed(lambda: generate(spec, out, check=True))}
        last = f"  - name: m{count - count // 10 - 1}\n    backend: python\n    artifact: model.py\n"
        spec.write_text(spec.read_text().replace(last + "    max_batch_size: 32", last + "    max_batch_size: 16"))
        phases["one model changed"] = timed(lambda: generate(spec, out))
        phases["validate repository"] = timed(lambda: validate_repository(out / "model_repository"))
        return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rounds = [one_round(args.models) for _ in range(args.repeats)]
    print(f"{args.models}-model spec ({args.models - args.models // 10} python models, "
          f"{args.models // 10} ensembles), median of {args.repeats} rounds:")
    for phase in rounds[0]:
        values = [r[phase] for r in rounds]
        print(f"  {phase:<22} {statistics.median(values) * 1000:8.1f} ms   "
              f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")


if __name__ == "__main__":
    main()
