"""The terminal table and progress lines of `python -m bench` (fastgw against nginx). The
figures themselves (medians, the fastgw/nginx ratios) come from fastgw.loadtest.report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastgw.loadtest.report import Run, ms, summarize, write_json
from fastgw.loadtest.report import num as _num

__all__ = ["LEGEND", "ms", "progress_line", "summarize", "table", "write_json"]


def progress_line(done: int, total: int, elapsed_s: float, run: Run) -> str:
    w = run["wrk"]
    errors = sum(w["errors"].values())
    return (
        f"[{done:>3}/{total} {int(elapsed_s) // 60:>2}m{int(elapsed_s) % 60:02d}s] "
        f"w{run['workers']} {run['scenario']:<16} {run['target']:<6} #{run['repeat'] + 1}  "
        f"{w['rps']:>9,.0f} req/s  p50 {ms(w['latency_us']['50']):>8}  p99 {ms(w['latency_us']['99']):>8}  "
        f"cpu {_num(run['proxy_cpu_us_per_request'], '.1f'):>5} µs/req"
        + (f"  !! {errors} errors {w['errors']}" if errors else "")
    )


def table(case: Mapping[str, Any]) -> str:
    """The per-case table. Ratios are fastgw/nginx: above 1 is better for req/s, worse for
    latency and CPU."""
    head = (
        f"{'scenario':<16} {'target':<6} {'req/s':>9} {'spread':>7} {'p50':>8} {'p99':>8} {'p99.9':>8} "
        f"{'CPU µs/req':>10} │ {'fastgw/nginx: req/s':>19} {'p50':>5} {'p99':>5} {'CPU':>5}"
    )
    lines = [
        f"workers={case['workers']}: {case['placement']['note']}; wrk -t{case['wrk']['threads']} "
        f"-c{case['wrk']['connections']}, {case['settings']['duration_s']:g} s × "
        f"{case['settings']['repeats']} repeats, medians",
        head,
        "─" * len(head),
    ]
    last = None
    for row in case["summary"]:
        spread = (row["rps_max"] - row["rps_min"]) / row["rps"] * 100 if row["rps"] else 0.0
        ratio = ""
        if vs := row.get("vs_nginx"):
            ratio = (
                f"{_num(vs['rps'], '.2f'):>18}× {_num(vs['p50'], '.2f'):>5} {_num(vs['p99'], '.2f'):>5} "
                f"{_num(vs['cpu'], '.2f'):>5}"
            )
        lat = row["latency_us"]
        lines.append(
            f"{row['scenario'] if row['scenario'] != last else '':<16} {row['target']:<6} {row['rps']:>9,.0f} "
            f"{'±' + format(spread / 2, '.1f') + '%':>7} {ms(lat['50']):>8} {ms(lat['99']):>8} {ms(lat['99.9']):>8} "
            f"{_num(row['proxy_cpu_us_per_request'], '.1f'):>10} │ {ratio}"
            + (f"  !! {row['errors']} errors" if row["errors"] else "")
        )
        last = row["scenario"]
    return "\n".join(lines)


LEGEND = """\
req/s, p50, p99, p99.9: wrk (closed loop, fixed connections: these are capacity figures, and the
latencies are those at full load, not at a realistic rate; see Locust for that). spread: half the
range of req/s over the repeats, relative to the median. CPU µs/req: user+system CPU time of the
proxy's master and workers during the run (/proc/<pid>/stat), divided by the requests wrk completed;
'-' for direct, where there is no proxy. Ratios: fastgw/nginx on medians (req/s: higher is better;
latency and CPU: lower is better)."""
