"""The PNGs of the load-test reports, drawn with matplotlib's Agg backend (no display needed).

matplotlib is optional (the `bench` extra): it is imported when a plot is drawn, and its absence
is a MissingTool saying how to install it. Callers that plot by default check `available()` first
and say why there is no plot.

- `bars`: wrk summaries, one row per case: throughput, latency percentiles and proxy CPU per
  request, grouped by scenario with one bar per target.
- `timeline`: Locust histories (p50/p95/p99 and the achieved rate over time), one or more runs.
- `curves`: a cost curve: one panel per figure, x = the size of the work (log), one line per target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastgw.loadtest.tools import have_module, require_module

COLORS = {"direct": "#9e9e9e", "nginx": "#2e7d32", "fastgw": "#1565c0", "gateway": "#1565c0"}
_MORE = ("#c62828", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037")


def available() -> bool:
    return have_module("matplotlib")


def _pyplot() -> Any:
    require_module("matplotlib", "the plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def color(target: str, index: int = 0) -> str:
    return COLORS.get(target, _MORE[index % len(_MORE)])


def _targets(summary: Sequence[Mapping[str, Any]]) -> list[str]:
    seen = list(dict.fromkeys(r["target"] for r in summary))
    return [t for t in COLORS if t in seen] + [t for t in seen if t not in COLORS]


def bars(cases: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    """`cases`: dicts with a `summary` (rows of report.summarize) and a `label`."""
    cases = [c for c in cases if c.get("summary")]
    if not cases:
        return
    plt = _pyplot()
    fig, axes = plt.subplots(len(cases), 3, figsize=(18, 4.8 * len(cases)), squeeze=False)
    for row_axes, case in zip(axes, cases, strict=True):
        summary = case["summary"]
        scenarios = list(dict.fromkeys(r["scenario"] for r in summary))
        targets = _targets(summary)
        by_key = {(r["scenario"], r["target"]): r for r in summary}
        width = 0.8 / len(targets)
        ax_rps, ax_lat, ax_cpu = row_axes
        for i, target in enumerate(targets):
            xs, rps, p50, p99, p999, cpu = [], [], [], [], [], []
            for j, scenario in enumerate(scenarios):
                row = by_key.get((scenario, target))
                if row is None:
                    continue
                lat = row["latency_us"]
                xs.append(j - 0.4 + width * (i + 0.5))
                rps.append(row["rps"])
                p50.append(lat["50"] / 1000)
                p99.append(lat["99"] / 1000)
                p999.append(lat.get("99.9", lat["99"]) / 1000)
                cpu.append(row["proxy_cpu_us_per_request"] or 0.0)
            c = color(target, i)
            ax_rps.bar(xs, rps, width, color=c, label=target)
            ax_lat.bar(xs, p99, width, color=c, alpha=0.35, label=f"{target} p99")
            ax_lat.bar(xs, p50, width, color=c, label=f"{target} p50")
            ax_lat.scatter(xs, p999, color=c, marker="_", s=200, label=f"{target} p99.9")
            if any(cpu):
                ax_cpu.bar(xs, cpu, width, color=c, label=target)
        for ax, what in (
            (ax_rps, "throughput (req/s, median)"),
            (ax_lat, "latency at full load (ms): p50 solid, p99 light, p99.9 tick"),
            (ax_cpu, "proxy CPU per request (µs, median)"),
        ):
            ax.set_xticks(range(len(scenarios)), scenarios, rotation=15)
            ax.set_title(f"{case['label']}: {what}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        ax_rps.legend(fontsize=8)
        ax_lat.legend(fontsize=7, ncol=len(targets))
        if ax_cpu.has_data():
            ax_cpu.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timeline(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, title: str) -> None:
    """Latency percentiles over time above, achieved rate and failures below, one set of lines
    per run (`histories`: label -> rows of locust.read_history). A p99 that climbs while the
    rate holds is the pattern this exists to show."""
    histories = {k: v for k, v in histories.items() if v}
    if not histories:
        return
    plt = _pyplot()
    fig, (ax_lat, ax_rate) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    styles = {"p50": ":", "p95": "--", "p99": "-"}
    single = len(histories) == 1
    pct_colors = {"p50": "#1565c0", "p95": "#ef6c00", "p99": "#c62828"}
    for i, (label, history) in enumerate(histories.items()):
        t0 = history[0]["t"]
        ts = [r["t"] - t0 for r in history]
        for key, style in styles.items():
            c = pct_colors[key] if single else color(label, i)
            ax_lat.plot(ts, [r[key] for r in history], style if not single else "-", color=c,
                        label=key if single else f"{label} {key}")
        c = "#2e7d32" if single else color(label, i)
        ax_rate.plot(ts, [r["rps"] for r in history], color=c, label="requests/s" if single else f"{label} req/s")
        ax_rate.plot(ts, [r["failures_per_s"] for r in history], color="#c62828", alpha=0.6,
                     label="failures/s" if single else f"{label} failures/s")
    ax_lat.set_ylabel("latency (ms, Locust)")
    ax_lat.grid(alpha=0.3)
    ax_lat.legend(fontsize=8)
    ax_rate.set_xlabel("seconds")
    ax_rate.grid(alpha=0.3)
    ax_rate.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class Panel:
    """One figure of a cost curve: `series` maps a target to its (x, y) points."""

    title: str
    ylabel: str
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    logy: bool = False


def curves(panels: Sequence[Panel], path: Path, title: str, xlabel: str) -> None:
    panels = [p for p in panels if any(p.series.values())]
    if not panels:
        return
    plt = _pyplot()
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for i, (target, points) in enumerate(panel.series.items()):
            points = sorted(p for p in points if p[1] is not None)
            if not points:
                continue
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=color(target, i), label=target)
        ax.set_xscale("log")
        if panel.logy:
            ax.set_yscale("log")
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
