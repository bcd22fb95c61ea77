"""`python -m bench.locust_run`: a Locust mix at a fixed rate, headless and bounded, sent first
straight to the backend and then through fastgw, in one run, so that the p99 **fastgw adds** is
measured next to the p99 it serves; p50/p95/p99 over time to CSV and plotted; optional bounds on
the p99 and on the added p99 make the exit status non-zero (for CI).

It starts the built-in backend (or uses --backend URL) and a fastgw in front of it, or uses an
already running gateway given by --target URL (with --backend, the service that gateway fronts,
for the direct run). The Locust runs themselves are fastgw.loadtest.locust's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gateway, machine, nginx
from bench.mixes import MIXES
from fastgw.loadtest import locust, mix, plot
from fastgw.loadtest.procs import ServerError, free_port, install_cleanup, stop_all
from fastgw.loadtest.report import write_json
from fastgw.loadtest.tools import MissingTool
from fastgw.loadtest.urls import parse_loopback_url

ms = locust.ms


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.locust_run",
        description="A Locust mix at a fixed rate, direct to the backend and through fastgw in one run: "
        "p50/p95/p99 over time to CSV and PNG, and the p99 fastgw adds.",
    )
    p.add_argument("--rate", type=float, default=500.0, help="total requests per second, below capacity (default 500)")
    p.add_argument("-u", "--users", type=int, default=50, help="simulated users sharing the rate (default 50)")
    p.add_argument("-d", "--duration", type=int, default=60, help="seconds of each run, direct and fastgw (default 60)")
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="Locust worker processes under a master (-1: one per CPU; default: a single process)",
    )
    p.add_argument(
        "--mix", default="plain", choices=sorted(MIXES), help="request mix from bench/mixes.py (default plain)"
    )
    p.add_argument(
        "--max-p99-ms", type=float, default=None, help="exit with status 1 if the p99 through fastgw exceeds this"
    )
    p.add_argument(
        "--max-added-p99-ms",
        type=float,
        default=None,
        help="exit with status 1 if fastgw's p99 exceeds the direct run's by more than this (needs the direct run)",
    )
    p.add_argument("--no-direct", dest="direct", action="store_false", help="skip the direct run (no added figures)")
    p.add_argument("-w", "--workers", type=int, default=1, help="fastgw workers (default 1)")
    p.add_argument(
        "--backend",
        metavar="URL",
        default=None,
        help="your own service (loopback): behind the fastgw this starts, or (with --target) the service "
        "that gateway fronts; the direct run goes to it",
    )
    p.add_argument(
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


def host_of(url: str, option: str) -> str:
    """Locust's --host: the mix supplies the paths, so the URL's own path is dropped."""
    host, port, _ = parse_loopback_url(url, option)
    return f"http://{host}:{port}"


def start_servers(args: argparse.Namespace, tmp: Path) -> dict[str, str]:
    """The hosts Locust sends to, by target: the backend (direct) and the gateway."""
    hosts: dict[str, str] = {}
    if args.backend:
        host, port, _ = parse_loopback_url(args.backend, "--backend")
        upstream = f"{host}:{port}"
    elif args.target is None:
        prefix = tmp / "backend"
        prefix.mkdir()
        bport = free_port()
        nginx.start("backend", prefix, nginx.backend_config(prefix, bport, 1), bport, 1, None)
        upstream = f"127.0.0.1:{bport}"
    else:
        upstream = None
    if args.direct and upstream is not None:
        hosts["direct"] = f"http://{upstream}"
    if args.target:
        hosts["fastgw"] = host_of(args.target, "--target")
    else:
        assert upstream is not None
        port = free_port()
        workdir = tmp / "fastgw"
        workdir.mkdir()
        gateway.start(workdir, gateway.config(port, args.workers, upstream, 64, workdir / "access.log", ()), None)
        hosts["fastgw"] = f"http://127.0.0.1:{port}"
    return hosts


def verdict(
    outcomes: dict[str, locust.Outcome], max_p99_ms: float | None, max_added_p99_ms: float | None
) -> tuple[list[str], dict[str, float | None] | None]:
    """The problems that fail the run, and the added figures (None without a direct run)."""
    problems = []
    for target, outcome in outcomes.items():
        total = outcome.total
        if total is None:
            problems.append(f"{target}: Locust wrote no statistics (exit status {outcome.exit_status})")
        elif total["failures"]:
            problems.append(
                f"{target}: {total['failures']} of {total['requests']} requests failed "
                f"(see {outcome.file('_failures.csv').name})"
            )
    gw = outcomes["fastgw"].total
    if max_p99_ms is not None and gw is not None and (gw["p99"] is None or gw["p99"] > max_p99_ms):
        problems.append(f"p99 through fastgw {ms(gw['p99'])} exceeds --max-p99-ms {max_p99_ms:g}")
    add = None
    if "direct" in outcomes:
        add = locust.added(gw, outcomes["direct"].total)
        if max_added_p99_ms is not None and (add["p99"] is None or add["p99"] > max_added_p99_ms):
            direct_p99 = (outcomes["direct"].total or {}).get("p99")
            problems.append(
                f"fastgw adds {_plus(add['p99'])} to the p99 (direct {ms(direct_p99)}, "
                f"through fastgw {ms((gw or {}).get('p99'))}): more than --max-added-p99-ms {max_added_p99_ms:g}"
            )
    return problems, add


def _plus(v: float | None) -> str:
    return "-" if v is None else f"{v:+.0f} ms"


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.rate <= 0 or args.users < 1 or args.duration < 1:
        p.error("--rate, --users and --duration must be positive")
    if args.max_added_p99_ms is not None and (not args.direct or (args.target and not args.backend)):
        p.error("--max-added-p99-ms needs the direct run: drop --no-direct, and with --target give --backend")
    install_cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = args.out / f"locust-{stamp}"
    tmp = Path(tempfile.mkdtemp(prefix="fastgw-locust-"))
    mix_file = tmp / "mix.json"
    mix.dump(MIXES[args.mix], mix_file)
    settings = locust.Settings(args.rate, args.users, args.duration, args.processes)
    outcomes: dict[str, locust.Outcome] = {}
    try:
        hosts = start_servers(args, tmp)
        for target, host in hosts.items():
            print(f"\n== {target}: {host}", flush=True)
            outcomes[target] = locust.run(host, mix_file, settings, base.with_name(f"{base.name}-{target}"))
            if outcomes[target].exit_status == 2 and outcomes[target].total is None:
                break
    except (ServerError, ValueError, MissingTool) as exc:
        print(f"python -m bench.locust_run: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_all()
        if args.keep_temp:
            print(f"configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if "fastgw" not in outcomes or outcomes["fastgw"].total is None:
        print("python -m bench.locust_run: Locust wrote no statistics", file=sys.stderr)
        return 2
    problems, add = verdict(outcomes, args.max_p99_ms, args.max_added_p99_ms)
    warnings = []
    for target, outcome in outcomes.items():
        total = outcome.total
        if total and total["rps"] is not None and total["rps"] < locust.RATE_SHORTFALL * args.rate:
            warnings.append(
                f"{target}: Locust sent {total['rps']:.0f} req/s of the {args.rate:g} asked: it (or the server) "
                "could not keep up; add --processes, lower --rate, or check capacity with wrk"
            )
    png = base.with_suffix(".png")
    if plot.available():
        plot.timeline(
            {t: o.history for t, o in outcomes.items()},
            png,
            f"Locust mix '{args.mix}': {args.rate:g} req/s asked, {args.users} users, {args.duration} s each; "
            "p50/p95/p99 over a ~10 s window",
        )
    doc: dict[str, Any] = {
        "kind": "fastgw-bench-locust",
        "format": 2,
        "command": [Path(sys.executable).name, "-m", "bench.locust_run", *(argv if argv is not None else sys.argv[1:])],
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(need_fastgw=args.target is None),
        "load_average_end": machine.load_average(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": hosts,
        "runs": {
            t: {"exit_status": o.exit_status, "final_ms": o.final, "history_ms": o.history, "csv_prefix": str(o.prefix)}
            for t, o in outcomes.items()
        },
        "added_ms": add,
        "added_ms_per_endpoint": {
            name: locust.added(outcomes["fastgw"].final.get(name), outcomes["direct"].final.get(name))
            for name in outcomes["fastgw"].final
            if name != "Aggregated"
        }
        if "direct" in outcomes
        else None,
        "problems": problems,
        "warnings": warnings,
        "note": locust.NOTE,
    }
    write_json(base.with_suffix(".json"), doc)
    print()
    for target, outcome in outcomes.items():
        t = outcome.total
        if t:
            print(
                f"{target:<7} whole run ({t['requests']} requests, {t['rps'] or 0:.0f} req/s, "
                f"{t['failures']} failures): "
                f"p50 {ms(t['p50'])}, p95 {ms(t['p95'])}, p99 {ms(t['p99'])}, max {ms(t['max'])}"
            )
    if add is not None:
        print(f"fastgw adds: p50 {_plus(add['p50'])}, p95 {_plus(add['p95'])}, p99 {_plus(add['p99'])} (±1 ms)")
        for name, a in (doc["added_ms_per_endpoint"] or {}).items():
            print(f"  {name:<20} p99 {_plus(a['p99'])}")
    print(locust.NOTE)
    print(f"CSV: {base}-<target>_stats*.csv; plot: {png if png.exists() else '-'}; summary: {base}.json")
    for w in warnings:
        print(f"WARNING: {w}")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
