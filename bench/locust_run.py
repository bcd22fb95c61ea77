"""`python -m bench.locust_run`: a Locust mix through fastgw at a fixed rate, headless and
bounded, with p50/p95/p99 over time written to CSV and plotted, and an optional p99 threshold
that makes the exit status non-zero (for CI).

It starts the built-in backend (or uses --backend URL) and a fastgw in front of it, or uses an
already running gateway given by --target URL. Locust runs as a subprocess (it monkey-patches the
process with gevent), writing its CSVs into the output directory; this module then reads them.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gateway, machine, nginx
from bench.plot import plot_locust
from bench.procs import ServerError, free_port, install_cleanup, stop_all
from bench.run import parse_loopback_url

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
#: Below this share of the requested rate, Locust (not the gateway) was probably the limit.
RATE_SHORTFALL = 0.9
#: Locust flushes its history CSV every 10 s; reading it more often shows nothing new.
PROGRESS_EVERY_S = 10.0
HANG_GUARD_S = 60.0

NOTE = (
    "Locust measured these latencies at a fixed request rate: they include Locust's own overhead "
    "(Python, gevent; more when its CPU is busy) and are rounded to whole milliseconds (to 10 ms "
    "above 100 ms), and the p50/p95/p99 over time are over Locust's sliding window of about 10 s. "
    "Use them to watch tail latency at a realistic load, and `python -m bench` (wrk) for capacity "
    "and sub-millisecond latency."
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.locust_run",
        description="A Locust mix through fastgw at a fixed rate; p50/p95/p99 over time to CSV and PNG.",
    )
    p.add_argument("--rate", type=float, default=500.0, help="total requests per second, below capacity (default 500)")
    p.add_argument("-u", "--users", type=int, default=50, help="simulated users sharing the rate (default 50)")
    p.add_argument("-d", "--duration", type=int, default=60, help="seconds (default 60)")
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="Locust worker processes under a master (-1: one per CPU; default: a single process)",
    )
    p.add_argument("--mix", default="plain", help="request mix from bench/locustfile.py MIXES (default plain)")
    p.add_argument(
        "--max-p99-ms", type=float, default=None, help="exit with status 1 if the whole run's p99 exceeds this"
    )
    p.add_argument("-w", "--workers", type=int, default=1, help="fastgw workers (default 1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--backend",
        metavar="URL",
        default=None,
        help="your own service (loopback) behind the fastgw this starts, instead of the built-in backend",
    )
    where.add_argument(
        "--target",
        metavar="URL",
        default=None,
        help="an already running gateway (loopback) to send the mix to; nothing is started",
    )
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="output directory (default bench/out)",
    )
    p.add_argument("--keep-temp", action="store_true", help="keep the generated configs and server logs")
    return p


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # Locust writes N/A before the first response


def _ms(v: float | None) -> str:
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


def target_url(url: str) -> str:
    """Locust's --host: the mix supplies the paths, so the URL's own path is dropped."""
    host, port, _ = parse_loopback_url(url, "--target")
    return f"http://{host}:{port}"


def start_gateway(args: argparse.Namespace, tmp: Path) -> str:
    """The URL Locust sends to: a fastgw we start (before the built-in backend or the user's)."""
    if args.backend:
        host, port, _ = parse_loopback_url(args.backend, "--backend")
        upstream = f"{host}:{port}"
    else:
        prefix = tmp / "backend"
        prefix.mkdir()
        bport = free_port()
        nginx.start("backend", prefix, nginx.backend_config(prefix, bport, 1), bport, 1, None)
        upstream = f"127.0.0.1:{bport}"
    port = free_port()
    workdir = tmp / "fastgw"
    workdir.mkdir()
    gateway.start(workdir, gateway.config(port, args.workers, upstream, 64, workdir / "access.log", ()), None)
    return f"http://127.0.0.1:{port}"


def run_locust(args: argparse.Namespace, host: str, prefix: Path) -> int:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "-u",
        str(args.users),
        "-r",
        str(args.users),
        "-t",
        f"{args.duration}s",
        "--stop-timeout",
        "5",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--mix",
        args.mix,
        "--user-rps",
        f"{args.rate / args.users:g}",
    ]
    if args.processes is not None:
        argv += ["--processes", str(args.processes)]
    print(f"locust: {' '.join(argv[1:])}")
    history = prefix.with_name(prefix.name + "_stats_history.csv")
    proc = subprocess.Popen(argv)
    try:
        next_report = time.monotonic() + PROGRESS_EVERY_S
        # Locust stops itself after -t; this only guards against a hang at start or stop.
        deadline = time.monotonic() + args.duration + HANG_GUARD_S
        while proc.poll() is None:
            if time.monotonic() > deadline:
                print(f"locust still running {HANG_GUARD_S:.0f} s after its run time: stopped", file=sys.stderr)
                return 2
            time.sleep(0.25)
            if time.monotonic() < next_report:
                continue
            next_report += PROGRESS_EVERY_S
            rows = read_history(history)
            if rows and rows[-1]["p50"] is not None:
                r = rows[-1]
                print(
                    f"  t={r['t'] - rows[0]['t']:>4}s  {r['rps'] or 0:>7.0f} req/s  p50 {_ms(r['p50'])}  "
                    f"p95 {_ms(r['p95'])}  p99 {_ms(r['p99'])}  failures/s {r['failures_per_s'] or 0:.1f}",
                    flush=True,
                )
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.rate <= 0 or args.users < 1 or args.duration < 1:
        parser().error("--rate, --users and --duration must be positive")
    install_cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    prefix = args.out / f"locust-{stamp}"
    tmp = Path(tempfile.mkdtemp(prefix="fastgw-locust-"))
    try:
        host = target_url(args.target) if args.target else start_gateway(args, tmp)
        code = run_locust(args, host, prefix)
    except (ServerError, ValueError, RuntimeError) as exc:
        print(f"python -m bench.locust_run: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_all()
        if args.keep_temp:
            print(f"configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    stats_csv = prefix.with_name(prefix.name + "_stats.csv")
    if not stats_csv.exists():
        print(f"python -m bench.locust_run: Locust wrote no statistics (exit status {code})", file=sys.stderr)
        return 2
    final = read_final(stats_csv)
    total = final["Aggregated"]
    history = read_history(prefix.with_name(prefix.name + "_stats_history.csv"))
    problems = []
    if total["failures"]:
        problems.append(f"{total['failures']} of {total['requests']} requests failed (see {prefix.name}_failures.csv)")
    if args.max_p99_ms is not None and (total["p99"] is None or total["p99"] > args.max_p99_ms):
        problems.append(f"p99 {_ms(total['p99'])} exceeds --max-p99-ms {args.max_p99_ms:g}")
    warnings = []
    if total["rps"] is not None and total["rps"] < RATE_SHORTFALL * args.rate:
        warnings.append(
            f"Locust sent {total['rps']:.0f} req/s of the {args.rate:g} asked: it (or the gateway) could "
            "not keep up; add --processes, lower --rate, or check the gateway's capacity with wrk"
        )
    png = prefix.with_suffix(".png")
    plot_locust(
        history,
        png,
        f"Locust mix '{args.mix}' to {host}{'' if args.target else ' (fastgw)'}: "
        f"{args.rate:g} req/s asked, {args.users} users; p50/p95/p99 over a ~10 s window",
    )
    doc = {
        "kind": "fastgw-bench-locust",
        "format": 1,
        "command": [Path(sys.executable).name, "-m", "bench.locust_run", *(argv if argv is not None else sys.argv[1:])],
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(need_fastgw=args.target is None),
        "load_average_end": machine.load_average(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "target": host,
        "locust_exit_status": code,
        "final_ms": final,
        "history_ms": history,
        "problems": problems,
        "warnings": warnings,
        "note": NOTE,
    }
    (prefix.with_suffix(".json")).write_text(json.dumps(doc, indent=1))
    print(
        f"\nwhole run ({total['requests']} requests, {total['rps'] or 0:.0f} req/s, {total['failures']} failures): "
        f"p50 {_ms(total['p50'])}, p95 {_ms(total['p95'])}, p99 {_ms(total['p99'])}, max {_ms(total['max'])}"
    )
    print(NOTE)
    print(f"CSV: {prefix}_stats.csv, {prefix}_stats_history.csv; plot: {png}; summary: {prefix}.json")
    for w in warnings:
        print(f"WARNING: {w}")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
