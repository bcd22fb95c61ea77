"""One Locust run: a request mix at a fixed rate, headless and bounded, its CSVs read back.

Locust runs as a subprocess (it patches its process with gevent) with the packaged locustfile,
writing `<prefix>_stats.csv` (whole run, per endpoint), `_stats_history.csv` (every second, with
`--csv-full-history`, without which Locust writes cumulative rather than current percentiles),
`_failures.csv` and `_exceptions.csv`. It stops itself after `-t`; a guard stops it if it has not
ended well after that.

What Locust's figures are: response times measured inside Locust (Python, gevent), so they include
its own overhead, growing when its CPU is busy; rounded to whole milliseconds (to 10 ms above
100 ms); the percentiles over time are over Locust's sliding window of about 10 s.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastgw.loadtest.tools import require_module
from fastgw.server.children import end_processes

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
#: Below this share of the requested rate, Locust (not the service) was probably the limit.
RATE_SHORTFALL = 0.9
#: Locust flushes its history CSV every 10 s; reading it more often shows nothing new.
PROGRESS_EVERY_S = 10.0
HANG_GUARD_S = 60.0

NOTE = (
    "Locust measured these latencies at a fixed request rate: they include Locust's own overhead "
    "(Python, gevent; more when its CPU is busy) and are rounded to whole milliseconds (to 10 ms "
    "above 100 ms), and the p50/p95/p99 over time are over Locust's sliding window of about 10 s. "
    "Use them to watch tail latency at a realistic load, and wrk for capacity and sub-millisecond "
    "latency."
)


@dataclass(frozen=True)
class Settings:
    #: Total requests per second, shared by the users.
    rate: float
    users: int
    duration_s: int
    #: Locust worker processes under a master (-1: one per CPU); None: a single process.
    processes: int | None = None


@dataclass(frozen=True)
class Outcome:
    exit_status: int
    #: Whole-run figures per endpoint name and `Aggregated` (read_final), {} when none written.
    final: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    prefix: Path

    @property
    def total(self) -> dict[str, Any] | None:
        return self.final.get("Aggregated")

    def file(self, suffix: str) -> Path:
        return self.prefix.with_name(self.prefix.name + suffix)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # Locust writes N/A before the first response


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def read_history(path: Path) -> list[dict[str, Any]]:
    """The `Aggregated` rows of Locust's stats history (one per second)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [
            {
                "t": int(row["Timestamp"]),
                "users": int(row["User Count"]),
                "rps": _float(row["Requests/s"]),
                "failures_per_s": _float(row["Failures/s"]),
                "p50": _float(row["50%"]),
                "p95": _float(row["95%"]),
                "p99": _float(row["99%"]),
                "requests": int(row["Total Request Count"]),
            }
            for row in csv.DictReader(f)
            if row["Name"] == "Aggregated"
        ]


def read_final(path: Path) -> dict[str, dict[str, Any]]:
    """Whole-run figures per endpoint name (and `Aggregated`) from Locust's stats CSV."""
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        return {
            row["Name"]: {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": _float(row["Requests/s"]),
                "p50": _float(row["50%"]),
                "p95": _float(row["95%"]),
                "p99": _float(row["99%"]),
                "max": _float(row["Max Response Time"]),
            }
            for row in csv.DictReader(f)
        }


def added(subject: dict[str, Any] | None, base: dict[str, Any] | None) -> dict[str, float | None]:
    """What `subject` (through the gateway) adds to `base` (direct) on whole-run figures, in ms;
    the percentiles are Locust's whole milliseconds, so this is ±1 ms."""
    keys = ("p50", "p95", "p99")
    if subject is None or base is None:
        return dict.fromkeys(keys)
    return {
        k: subject[k] - base[k] if subject.get(k) is not None and base.get(k) is not None else None for k in keys
    }


def command(host: str, mix_file: Path, settings: Settings, prefix: Path) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        str(settings.users),
        "-r",
        str(settings.users),
        "-t",
        f"{settings.duration_s}s",
        "--stop-timeout",
        "5",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--mix-file",
        str(mix_file),
        "--user-rps",
        f"{settings.rate / settings.users:g}",
    ]
    if settings.processes is not None:
        argv += ["--processes", str(settings.processes)]
    return argv


def run(
    host: str, mix_file: Path, settings: Settings, prefix: Path, emit: Callable[[str], None] = print
) -> Outcome:
    """Locust against `host` (http://HOST:PORT; the mix gives the paths) for `settings.duration_s`,
    printing the current rate and percentiles every PROGRESS_EVERY_S; then its figures. The exit
    status is 2 when the hang guard had to stop it."""
    require_module("locust", "a Locust run")
    argv = command(host, mix_file, settings, prefix)
    emit(f"locust: {' '.join(argv[1:])}")
    history_csv = prefix.with_name(prefix.name + "_stats_history.csv")
    proc = subprocess.Popen(argv)
    status = 2
    try:
        next_report = time.monotonic() + PROGRESS_EVERY_S
        deadline = time.monotonic() + settings.duration_s + HANG_GUARD_S
        while proc.poll() is None:
            if time.monotonic() > deadline:
                emit(f"locust still running {HANG_GUARD_S:.0f} s after its run time: stopped")
                break
            time.sleep(0.25)
            if time.monotonic() < next_report:
                continue
            next_report += PROGRESS_EVERY_S
            rows = read_history(history_csv)
            if rows and rows[-1]["p50"] is not None:
                r = rows[-1]
                emit(
                    f"  t={r['t'] - rows[0]['t']:>4}s  {r['rps'] or 0:>7.0f} req/s  p50 {ms(r['p50'])}  "
                    f"p95 {ms(r['p95'])}  p99 {ms(r['p99'])}  failures/s {r['failures_per_s'] or 0:.1f}"
                )
        else:
            status = proc.returncode
    finally:
        end_processes([proc], 10.0)
    return Outcome(status, read_final(prefix.with_name(prefix.name + "_stats.csv")), read_history(history_csv), prefix)
