"""Draw a bench result as a PNG: latency against throughput, and TTFT/ITL percentiles for streams."""

from __future__ import annotations

from pathlib import Path

from tritonkit.bench.runner import BenchResult

__all__ = ["write_plot"]


def write_plot(result: BenchResult, path: Path) -> None:
    """Write the latency-throughput curve (p50, p90, p99 per level) and, for streams, TTFT and ITL."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to a file
    import matplotlib.pyplot as plt

    stream = any(level.ttft_ms for level in result.levels)
    figure, axes = plt.subplots(1, 2 if stream else 1, figsize=(12 if stream else 7, 4.5), squeeze=False)
    curve = axes[0][0]
    throughput = [level.throughput_rps for level in result.levels]
    for point, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^-")):
        curve.plot(throughput, [level.latency_ms[point] for level in result.levels], style, label=point)
    for level, x in zip(result.levels, throughput):
        label = f"{level.level:g}/s" if result.mode == "rate" else f"c={int(level.level)}"
        curve.annotate(label, (x, level.latency_ms["p50"]), textcoords="offset points", xytext=(4, -10),
                       fontsize=8)
    curve.set_xlabel("throughput (requests/s)")
    curve.set_ylabel("latency (ms)")
    curve.set_title(f"{result.model}: latency vs throughput")
    curve.grid(True, alpha=0.3)
    curve.legend()
    if stream:
        tokens = axes[0][1]
        levels = [f"{level.level:g}" for level in result.levels]
        for name, key in (("TTFT", "ttft_ms"), ("ITL", "itl_ms")):
            for point, style in (("p50", "o-"), ("p99", "^--")):
                values = [(getattr(level, key) or {}).get(point, float("nan")) for level in result.levels]
                tokens.plot(levels, values, style, label=f"{name} {point}")
        tokens.set_xlabel("request rate (1/s)" if result.mode == "rate" else "concurrency")
        tokens.set_ylabel("ms")
        tokens.set_title("time to first token and inter-token latency")
        tokens.grid(True, alpha=0.3)
        tokens.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
