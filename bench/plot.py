"""The PNG of a wrk report: per case (worker count) one row with throughput, latency percentiles
and proxy CPU per request, grouped by scenario with one bar per target. Drawn from the report's
summary rows, with the Agg backend so that it works without a display."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

COLORS = {"direct": "#9e9e9e", "nginx": "#2e7d32", "fastgw": "#1565c0"}


def _grid(summary: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    scenarios = list(dict.fromkeys(r["scenario"] for r in summary))
    targets = [t for t in COLORS if any(r["target"] == t for r in summary)]
    return scenarios, targets


def plot(doc: Mapping[str, Any], path: Path) -> None:
    cases = [c for c in doc["cases"] if c.get("summary")]
    if not cases:
        return
    fig, axes = plt.subplots(len(cases), 3, figsize=(18, 4.8 * len(cases)), squeeze=False)
    for row_axes, case in zip(axes, cases, strict=True):
        summary = case["summary"]
        scenarios, targets = _grid(summary)
        by_key = {(r["scenario"], r["target"]): r for r in summary}
        width = 0.8 / len(targets)
        ax_rps, ax_lat, ax_cpu = row_axes
        for i, target in enumerate(targets):
            xs, rps, p50, p99, p999, cpu = [], [], [], [], [], []
            for j, scenario in enumerate(scenarios):
                row = by_key.get((scenario, target))
                if row is None:
                    continue
                xs.append(j - 0.4 + width * (i + 0.5))
                rps.append(row["rps"])
                p50.append(row["latency_us"]["50"] / 1000)
                p99.append(row["latency_us"]["99"] / 1000)
                p999.append(row["latency_us"]["99.9"] / 1000)
                cpu.append(row["proxy_cpu_us_per_request"] or 0.0)
            color = COLORS[target]
            ax_rps.bar(xs, rps, width, color=color, label=target)
            ax_lat.bar(xs, p99, width, color=color, alpha=0.35, label=f"{target} p99")
            ax_lat.bar(xs, p50, width, color=color, label=f"{target} p50")
            ax_lat.scatter(xs, p999, color=color, marker="_", s=200, label=f"{target} p99.9")
            if target != "direct":
                ax_cpu.bar(xs, cpu, width, color=color, label=target)
        for ax, title in (
            (ax_rps, "throughput (req/s, median)"),
            (ax_lat, "latency at full load (ms): p50 solid, p99 light, p99.9 tick"),
            (ax_cpu, "proxy CPU per request (µs, median)"),
        ):
            ax.set_xticks(range(len(scenarios)), scenarios, rotation=15)
            ax.set_title(f"workers={case['workers']}: {title}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        ax_rps.legend(fontsize=8)
        ax_lat.legend(fontsize=7, ncol=len(targets))
        ax_cpu.legend(fontsize=8)
    machine = doc["machine"]
    fig.suptitle(
        f"fastgw {machine['fastgw'] or ''} vs nginx {machine['nginx']} — {machine['cpu_model']}, "
        f"{machine['cpus_online']} CPUs, {doc['started']}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_locust(history: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """Latency percentiles over time above, achieved rate and failures below: a p99 that climbs
    while the rate holds is the pattern this exists to show."""
    if not history:
        return
    t0 = history[0]["t"]
    ts = [r["t"] - t0 for r in history]
    fig, (ax_lat, ax_rate) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for key, color in (("p50", "#1565c0"), ("p95", "#ef6c00"), ("p99", "#c62828")):
        ax_lat.plot(ts, [r[key] for r in history], label=key, color=color)
    ax_lat.set_ylabel("latency (ms, Locust)")
    ax_lat.grid(alpha=0.3)
    ax_lat.legend()
    ax_rate.plot(ts, [r["rps"] for r in history], label="requests/s", color="#2e7d32")
    ax_rate.plot(ts, [r["failures_per_s"] for r in history], label="failures/s", color="#c62828")
    ax_rate.set_xlabel("seconds")
    ax_rate.grid(alpha=0.3)
    ax_rate.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
