"""The fan-out chart: create-to-Synced latency distribution and throughput, per system (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {"carm": "#1f77b4", "carm-ack": "#9467bd", "floor": "#7f7f7f", "kopf": "#d62728"}


def fanout_chart(results: dict[str, dict[str, Any]], title: str, path: Path) -> Path | None:
    """Write the chart to `path`; None (and no file) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (cdf, bars) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(results)
    for name in names:
        latencies = sorted(ms / 1000 for ms in results[name].get("latencies_ms") or [])
        if not latencies:
            continue
        share = [(i + 1) / len(latencies) for i in range(len(latencies))]
        cdf.step(latencies, share, where="post", label=name, color=COLORS.get(name))
    cdf.set_xlim(left=0)
    cdf.set_xlabel("create-to-Synced latency (s)")
    cdf.set_ylabel("share of Buckets synced")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend(loc="lower right")
    rates = [float(results[n].get("buckets_per_second") or 0.0) for n in names]
    bars.bar(names, rates, color=[COLORS.get(n, "#333333") for n in names])
    for x, rate in enumerate(rates):
        bars.text(x, rate, f"{rate:,.0f}", ha="center", va="bottom")
    bars.set_ylabel("Buckets synced per second")
    bars.grid(True, axis="y", alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
