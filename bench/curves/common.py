"""What every cost curve shares: the growth check, the report (JSON, table, PNG) and the servers.

The growth check: between two consecutive points (x1, y1), (x2, y2) of one figure of one target,
the exponent k = log(y2/y1) / log(x2/x1) says how the cost grows with the work: 0 constant, 1
linear, 2 quadratic. Each figure states the largest k that is not a defect (a per-request cost
must stay constant: k ≤ 0; a table's memory may grow linearly: k ≤ 1) and a step above it by more
than TOLERANCE is flagged. The tolerance absorbs noise and cache effects (a 100× larger table that
no longer fits the CPU cache is slower per lookup without any algorithm being wrong): over a
100× step, 0.25 allows a factor of 3.2.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench.run import ERRORS, QUIET_LOAD, run_to_end
from fastgw.loadtest import plot
from fastgw.loadtest.report import write_json
from fastgw.loadtest.tools import BENCH_EXTRA

TOLERANCE = 0.25
OUT_DIR = Path(__file__).resolve().parent.parent / "out"


@dataclass(frozen=True)
class Metric:
    """One figure of a curve: `key` in the point dicts, shown as `title` in `unit` (the stored
    value times `scale`). `expected`: the largest growth exponent that is not a defect, None when
    the figure is not checked (a throughput, an occupancy)."""

    key: str
    title: str
    unit: str
    expected: float | None
    why: str = ""
    scale: float = 1.0
    fmt: str = ".1f"
    logy: bool = False


def exponent(x1: float, y1: float | None, x2: float, y2: float | None) -> float | None:
    """The growth exponent between two points; None when it is not defined (a zero or a gap)."""
    if y1 is None or y2 is None or y1 <= 0 or y2 <= 0 or x1 <= 0 or x2 <= 0 or x1 == x2:
        return None
    return math.log(y2 / y1) / math.log(x2 / x1)


def growth(
    points: Sequence[dict[str, Any]], metrics: Sequence[Metric], tolerance: float = TOLERANCE
) -> list[dict[str, Any]]:
    """Per target and figure, one entry per step between consecutive points (by x), with its
    exponent and whether it is a defect (grows faster than `expected` + `tolerance`)."""
    out: list[dict[str, Any]] = []
    targets = list(dict.fromkeys(p["target"] for p in points))
    for metric in metrics:
        for target in targets:
            series = sorted((p["x"], p.get(metric.key)) for p in points if p["target"] == target)
            series = [(x, y) for x, y in series if y is not None]
            for (x1, y1), (x2, y2) in zip(series, series[1:], strict=False):
                k = exponent(x1, y1, x2, y2)
                limit = None if metric.expected is None else metric.expected + tolerance
                out.append(
                    {
                        "target": target,
                        "metric": metric.key,
                        "from": x1,
                        "to": x2,
                        "ratio": y2 / y1 if y1 else None,
                        "exponent": k,
                        "expected": metric.expected,
                        "defect": bool(k is not None and limit is not None and k > limit),
                    }
                )
    return out


def defects(steps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in steps if s["defect"]]


def human(x: float) -> str:
    """10000 -> 10k, 1048576 -> 1Mi for sizes given as powers of 2."""
    for unit, div in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if x >= div and x % div == 0:
            return f"{x // div:g}{unit}"
    for unit, div in (("M", 10**6), ("k", 10**3)):
        if x >= div and x % div == 0:
            return f"{x // div:g}{unit}"
    return f"{x:g}"


def parse_ints(text: str) -> tuple[int, ...]:
    """`64,1000,10000`, also `10k`, `1M`, `4KiB`, `100MiB`."""
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "K": 10**3, "M": 10**6}
    values = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        upper = part.upper()
        mult = 1
        for suffix, m in units.items():
            if upper.endswith(suffix):
                upper, mult = upper[: -len(suffix)], m
                break
        try:
            value = int(float(upper) * mult)
        except ValueError:
            raise ValueError(f"not a number: {part}") from None
        if value < 1:
            raise ValueError(f"must be 1 or more: {part}")
        values.append(value)
    if not values:
        raise ValueError(f"no values in {text!r}")
    return tuple(sorted(set(values)))


class Curve:
    """One curve run: its JSON document (rewritten after every point, so an interrupted run keeps
    what it measured), then the table, the growth check and the PNG."""

    def __init__(self, mode: str, xlabel: str, metrics: Sequence[Metric], settings: dict[str, Any], out_dir: Path,
                 need_fastgw: bool = True) -> None:
        self.mode = mode
        self.xlabel = xlabel
        self.metrics = list(metrics)
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.json_path = out_dir / f"curve-{mode}-{stamp}.json"
        self.png_path = out_dir / f"curve-{mode}-{stamp}.png"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"fastgw-curve-{mode}-"))
        self.doc: dict[str, Any] = {
            "kind": "fastgw-bench-curve",
            "format": 1,
            "mode": mode,
            "command": [Path(sys.executable).name, "-m", "bench", *sys.argv[1:]],
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "status": "running",
            "machine": machine.describe(need_fastgw=need_fastgw),
            "load_average": {"start": machine.load_average()},
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()},
            "metrics": [
                {"key": m.key, "title": m.title, "unit": m.unit, "expected_exponent": m.expected, "why": m.why}
                for m in self.metrics
            ],
            "points": [],
            "growth": [],
        }

    def start_note(self, emit: Callable[[str], None]) -> None:
        m = self.doc["machine"]
        emit(
            f"fastgw bench {self.mode} curve: {m['cpu_model']}, {m['cpus_online']} CPUs, Python {m['python']}, "
            f"nginx {m['nginx']}, wrk {m['wrk']}, commit {m['git_commit'][:12]}"
        )
        load1 = self.doc["load_average"]["start"][0]
        if load1 > QUIET_LOAD:
            emit(f"WARNING: load average {load1:.2f} at start: the machine is not quiet; do not record these figures")

    def add(self, point: dict[str, Any], emit: Callable[[str], None]) -> None:
        self.doc["points"].append(point)
        write_json(self.json_path, self.doc)
        shown = "  ".join(
            f"{m.title} {format(point[m.key] * m.scale, m.fmt)}{m.unit}"
            for m in self.metrics
            if point.get(m.key) is not None
        )
        emit(f"  {human(point['x']):>6} {point['target']:<9} {shown}")

    def table(self) -> str:
        points = self.doc["points"]
        heads = [f"{m.title} ({m.unit.strip()})" if m.unit.strip() else m.title for m in self.metrics]
        widths = [max(10, len(h)) for h in heads]
        tw = max([7, *(len(p["target"]) for p in points)])
        cols = " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
        head = f"{self.xlabel:>12} {'target':<{tw}} {cols}"
        lines = [head, "─" * len(head)]
        for p in sorted(points, key=lambda p: (p["x"], p["target"])):
            cells = [
                "-" if p.get(m.key) is None else format(p[m.key] * m.scale, m.fmt) for m in self.metrics
            ]
            row = " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
            lines.append(f"{human(p['x']):>12} {p['target']:<{tw}} {row}")
        return "\n".join(lines)

    def growth_lines(self) -> list[str]:
        titles = {m.key: m for m in self.metrics}
        tw = max([7, *(len(s["target"]) for s in self.doc["growth"])])
        lines = []
        for s in self.doc["growth"]:
            m = titles[s["metric"]]
            if s["exponent"] is None:
                continue
            expect = "" if m.expected is None else f" (expected ≤ {m.expected:g}{': ' + m.why if m.why else ''})"
            flag = "  !! GROWS FASTER THAN IT SHOULD" if s["defect"] else ""
            lines.append(
                f"  {s['target']:<{tw}} {m.title:<16} {human(s['from']):>6} → {human(s['to']):<6} ×{s['ratio']:.3g}, "
                f"exponent {s['exponent']:+.2f}{expect}{flag}"
            )
        return lines

    def finish(self, status: str, emit: Callable[[str], None], extra_notes: Sequence[str] = ()) -> None:
        self.doc["status"] = status
        self.doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.doc["load_average"]["end"] = machine.load_average()
        self.doc["growth"] = growth(self.doc["points"], self.metrics)
        self.doc["notes"] = list(extra_notes)
        write_json(self.json_path, self.doc)
        if self.doc["points"]:
            emit("\n" + self.table())
            lines = self.growth_lines()
            if lines:
                emit(f"\ngrowth between consecutive points (exponent k: cost ∝ size^k; flagged above expected + "
                     f"{TOLERANCE:g}):")
                for line in lines:
                    emit(line)
            found = defects(self.doc["growth"])
            if found:
                emit(f"\n{len(found)} step(s) grow faster than they should: see the lines marked !! (and the JSON)")
        for note in extra_notes:
            emit(note)
        if plot.available():
            self.plot()
        else:
            emit(f"no plot: matplotlib is not installed ({BENCH_EXTRA})")
        emit(f"\nraw figures: {self.json_path}")
        if self.png_path.exists():
            emit(f"plot:        {self.png_path}")

    def plot(self) -> None:
        panels = []
        for m in self.metrics:
            panel = plot.Panel(f"{m.title} ({m.unit.strip()})" if m.unit.strip() else m.title, m.unit.strip(),
                               logy=m.logy)
            for p in self.doc["points"]:
                if p.get(m.key) is not None:
                    panel.series.setdefault(p["target"], []).append((p["x"], p[m.key] * m.scale))
            panels.append(panel)
        mc = self.doc["machine"]
        plot.curves(
            panels,
            self.png_path,
            f"fastgw {self.mode} curve — {mc['cpu_model']}, {mc['cpus_online']} CPUs, {self.doc['started']}"
            + ("" if self.doc["status"] == "complete" else f" [{self.doc['status']}]"),
            self.xlabel,
        )

    def run(self, points: Callable[[], None], emit: Callable[[str], None], notes: Sequence[str], keep_temp: bool,
            errors: tuple[type[BaseException], ...] = ERRORS) -> int:
        """Measures the curve's points (`points()`), then writes them with how the run ended (see
        `bench.run.run_to_end`)."""

        def finish(status: str) -> None:
            self.finish(status, emit, notes)
            self.cleanup(keep_temp, emit)

        return run_to_end(points, emit, finish, errors)

    def cleanup(self, keep: bool, emit: Callable[[str], None]) -> None:
        if keep:
            emit(f"configs and logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))
