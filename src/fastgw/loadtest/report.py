"""Turning runs into the figures reported: medians over repeats, the ratio of one target to a
reference (fastgw/nginx), the latency a gateway adds to its backend, and the JSON file. Works on
the plain dicts stored in the JSON reports, so a report can be re-read and re-printed later.

A run is a dict with `scenario`, `target`, `wrk` (`WrkResult.as_dict()`) and
`proxy_cpu_us_per_request` / `backend_cpu_us_per_request` (None where not measured).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

Run = Mapping[str, Any]


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values present; None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(runs: Sequence[Run], subject: str = "fastgw", reference: str | None = "nginx") -> list[dict[str, Any]]:
    """One row per (scenario, target) in first-seen order: medians over the repeats, the spread
    of throughput (so a noisy figure shows as noisy), and for `subject` its ratio to `reference`
    (`vs_<reference>`: req/s, p50, p99, CPU per request)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run["scenario"], run["target"]), []).append(run)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (scenario, target), group in groups.items():
        rps = [r["wrk"]["rps"] for r in group]
        pcts = group[0]["wrk"]["latency_us"].keys()
        rows[(scenario, target)] = {
            "scenario": scenario,
            "target": target,
            "repeats": len(group),
            "rps": median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "latency_us": {p: median(r["wrk"]["latency_us"][p] for r in group) for p in pcts},
            "proxy_cpu_us_per_request": median(r.get("proxy_cpu_us_per_request") for r in group),
            "backend_cpu_us_per_request": median(r.get("backend_cpu_us_per_request") for r in group),
            "errors": sum(sum(r["wrk"]["errors"].values()) for r in group),
        }
    if reference is not None:
        for (scenario, target), row in rows.items():
            ref = rows.get((scenario, reference))
            if target != subject or ref is None:
                continue
            row[f"vs_{reference}"] = {
                "rps": ratio(row["rps"], ref["rps"]),
                "p50": ratio(row["latency_us"]["50"], ref["latency_us"]["50"]),
                "p99": ratio(row["latency_us"]["99"], ref["latency_us"]["99"]),
                "cpu": ratio(row["proxy_cpu_us_per_request"], ref["proxy_cpu_us_per_request"]),
            }
    return list(rows.values())


def added_latency(
    summary: Sequence[Mapping[str, Any]], subject: str, base: str, percentiles: Sequence[str] = ("50", "99")
) -> dict[str, dict[str, float | None]]:
    """Per scenario, what `subject` (a gateway) adds to `base` (its backend reached directly):
    the difference of the median percentiles, in µs. A difference of percentiles is not the
    percentile of the per-request differences, which cannot be measured from outside; it is the
    figure users compare (and it may be slightly negative when the gateway adds less than the
    spread between runs)."""
    by_key = {(r["scenario"], r["target"]): r for r in summary}
    out: dict[str, dict[str, float | None]] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in summary):
        s, b = by_key.get((scenario, subject)), by_key.get((scenario, base))
        if s is None or b is None:
            continue
        out[scenario] = {
            p: (s["latency_us"][p] - b["latency_us"][p])
            if s["latency_us"].get(p) is not None and b["latency_us"].get(p) is not None
            else None
            for p in percentiles
        }
    return out


def ms(us: float | None) -> str:
    """µs as milliseconds with two decimals, '-' for None."""
    return "-" if us is None else f"{us / 1000:.2f}ms"


def num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Written whole or not at all (a temporary file renamed), so an interrupted run leaves the
    previous version readable."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    tmp.replace(path)
