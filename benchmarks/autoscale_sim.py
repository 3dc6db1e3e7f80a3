"""Pick autoscaling thresholds before touching a cluster: replicas over time and queue time under a load curve.

The service time comes from a ``tritonkit bench`` run (``--save-json``): one level's concurrency is the
requests a replica serves at once, its mean latency their service time. The autoscaler is the one ``k8s/``
generates: with ``--spec``, its first trigger, threshold, replicas and windows (``generator/tritonkit/model/k8s.py``);
else ``--signal`` with its default threshold, or ``--threshold``. Arithmetic in
``generator/tritonkit/capacity/autoscale.py``.

    .venv/bin/python benchmarks/autoscale_sim.py --bench-json bench.json --level 4 \\
        --load 0:2,300:40,900:40,1200:5 --duration 1800 --startup 90 --spec examples/trtllm_llmapi.yaml

Prints one line per polling interval (time, load, ready and desired replicas, the signal, queue time), then a
JSON summary; ``--json`` prints everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from tritonkit.capacity.autoscale import (
    AutoscalePolicy,
    default_policy,
    load_curve,
    policy_from_plan,
    simulate,
    summary,
)


def _service(args: argparse.Namespace) -> tuple[float, int]:
    if args.bench_json is None:
        return args.service_ms / 1000.0, args.slots
    result = json.loads(Path(args.bench_json).read_text(encoding="utf-8"))
    levels = {int(level["level"]): level for level in result["levels"]}
    level = levels[args.level] if args.level else levels[max(levels)]
    return level["latency_ms"]["mean"] / 1000.0, int(level["level"])


def _policy(args: argparse.Namespace) -> AutoscalePolicy:
    if args.spec is not None:
        from tritonkit.model.repository import build_repository
        from tritonkit.spec.load import load_spec

        plan = build_repository(load_spec(Path(args.spec))).kubernetes
        if plan is None:
            sys.exit(f"{args.spec} has no deploy.kubernetes block")
        policy = policy_from_plan(plan)
    else:
        policy = default_policy(args.signal, args.threshold)
    changes = {k: v for k, v in (("threshold", args.threshold), ("min_replicas", args.min_replicas),
                                 ("max_replicas", args.max_replicas)) if v is not None}
    return replace(policy, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-json", help="bench --save-json output")
    parser.add_argument("--level", type=int, help="the bench level (concurrency) to read; default the highest")
    parser.add_argument("--service-ms", type=float, default=20.0, help="without --bench-json: service time")
    parser.add_argument("--slots", type=int, default=1, help="without --bench-json: requests a replica serves at once")
    parser.add_argument("--load", default="0:5,300:50,900:50,1200:5", help="time_s:requests_per_s,...")
    parser.add_argument("--duration", type=int, default=1800)
    parser.add_argument("--startup", type=int, default=60, help="seconds from pod creation to ready")
    parser.add_argument("--spec", help="take the trigger and replicas from this spec's deploy.kubernetes")
    parser.add_argument("--signal", default="queue_compute_ratio")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--min-replicas", type=int)
    parser.add_argument("--max-replicas", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    service_s, slots = _service(args)
    policy = _policy(args)
    ticks = simulate(policy, service_s, slots, load_curve(args.load), args.duration, args.startup)
    report = {"policy": asdict(policy), "service_ms": service_s * 1000, "slots": slots,
              "capacity_rps_per_replica": slots / service_s, "summary": summary(ticks, policy.polling_interval_s)}
    if args.json:
        print(json.dumps({**report, "ticks": [asdict(t) for t in ticks]}, indent=2))
        return
    print(f"{'t s':>6} {'load/s':>8} {'ready':>5} {'want':>5} {policy.signal:>20} {'queue ms':>10} {'util':>5}")
    for t in ticks:
        print(f"{t.time_s:>6} {t.load_rps:>8.1f} {t.ready:>5} {t.desired:>5} {t.signal:>20.3g} "
              f"{t.queue_ms:>10.1f} {t.utilisation:>5.2f}")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
