"""`python -m bench connections`: req/s, p99, CPU and memory per connection as the number of
concurrent keep-alive client connections grows (default 64 → 1,000 → 10,000), for direct, nginx
and fastgw, on the `get-small` request (12-byte answer).

Per point: fresh proxies (one worker by default, pinned as `python -m bench` pins), an unrecorded
warm-up run, then `-r` wrk runs per target, interleaved; medians. Memory per connection is the
proxy tree's peak RSS during the run less its RSS just before (idle, freshly started), divided
by the connections; CPU per request as in `python -m bench`.

10,000 connections need file descriptors: the harness raises its own RLIMIT_NOFILE (inherited by
wrk, nginx and fastgw), nginx gets `worker_rlimit_nofile` and `worker_connections` to match, and
wrk spreads the connections over its threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import pinning
from bench.curves import common, servers
from bench.run import TARGETS, rotation
from bench.scenarios import SCENARIOS
from fastgw.loadtest import wrk
from fastgw.loadtest.procs import install_cleanup
from fastgw.loadtest.tools import MissingTool
from fastgw.server.fdlimit import raise_nofile

METRICS = (
    common.Metric("rps", "req/s", "", None, fmt=",.0f"),
    common.Metric("p99_ms", "p99", " ms", 1.0, "closed loop: latency ≈ connections / throughput", fmt=".2f"),
    common.Metric("cpu_us_per_request", "CPU/req", " µs", 0.0, "a request costs the same however many wait"),
    common.Metric("memory_per_connection", "memory/conn", " KiB", 0.0, "a connection costs the same memory",
                  scale=1 / 1024, fmt=".1f"),
    common.Metric("peak_rss", "peak RSS", " MiB", 1.0, "linear in connections", scale=1 / 2**20, fmt=".1f"),
)
#: Estimated seconds per run beyond -d: wrk start-up, connecting thousands of sockets.
RUN_OVERHEAD_S = 1.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench connections", description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=common.parse_ints, default=(64, 1000, 10000),
                   help="connection counts (default 64,1000,10000)")
    p.add_argument("-d", "--duration", type=int, default=10, help="whole seconds per wrk run (default 10)")
    p.add_argument("-r", "--repeats", type=int, default=3, help="runs per point and target; medians (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="unrecorded seconds before each point and target (default 2)")
    p.add_argument("-w", "--workers", type=int, default=1, help="proxy workers (default 1)")
    p.add_argument("-t", "--targets", default="direct,nginx,fastgw", help="subset of direct,nginx,fastgw")
    p.add_argument("--threads", type=int, default=None, help="wrk threads (default: one per load CPU)")
    p.add_argument("--keepalive", type=int, default=32,
                   help="upstream keep-alive pool of both proxies (default 32, fastgw's default)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="run unpinned")
    p.add_argument("-o", "--out", type=Path, default=common.OUT_DIR, help="output directory (default bench/out)")
    p.add_argument("--keep-temp", action="store_true", help="keep the generated configs and server logs")
    return p


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def point(x: int, target: str, runs: list[dict[str, Any]], baseline: int | None) -> dict[str, Any]:
    """The medians of one point's runs; memory per connection from the proxy's RSS when it had
    just started (`baseline`) to its peak during each run."""
    mem = [r["memory"] for r in runs if r["memory"]]
    peak = _median([m["peak_rss"] for m in mem]) if mem else None
    return {
        "x": x,
        "target": target,
        "rps": _median([r["wrk"]["rps"] for r in runs]),
        "p50_ms": _median([r["wrk"]["latency_us"]["50"] / 1000 for r in runs]),
        "p99_ms": _median([r["wrk"]["latency_us"]["99"] / 1000 for r in runs]),
        "cpu_us_per_request": _median([r["cpu_us_per_request"] for r in runs]),
        "memory_per_connection": (peak - baseline) / x if peak is not None and baseline is not None else None,
        "rss_started": baseline,
        "peak_rss": peak,
        "errors": sum(sum(r["wrk"]["errors"].values()) for r in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None, emit: Any = print) -> int:
    args = parser().parse_args(argv)
    targets = [t for t in TARGETS if t in args.targets.split(",")]
    if not targets or args.duration < 1 or args.repeats < 1:
        parser().error("--targets, --duration and --repeats must name something / be positive")
    install_cleanup()
    try:
        wrk.binary()
    except MissingTool as exc:
        emit(f"python -m bench connections: {exc}")
        return 2
    top = max(args.points)
    # wrk: top client sockets; a proxy: top client + up to top upstream sockets; the backend: top.
    limit = raise_nofile(2 * top + 2048)
    placement = pinning.plan(common.cpus(), args.workers, args.pin)
    curve = common.Curve("connections", "connections", METRICS, vars(args), args.out)
    curve.start_note(emit)
    if limit < 2 * top + 2048:
        emit(f"WARNING: open-file limit {limit} is below the {2 * top + 2048} the largest point needs, and the "
             "hard limit could not be raised (not root, or a container without CAP_SYS_RESOURCE): raise it first "
             "(`ulimit -Hn N` as root; a container: --ulimit nofile=N:N); the proxies may refuse connections")
    runs_total = len(args.points) * len(targets) * args.repeats
    estimate = runs_total * (args.duration + RUN_OVERHEAD_S) + len(args.points) * len(targets) * (args.warmup + 3)
    emit(f"points {', '.join(map(common.human, args.points))}; targets {', '.join(targets)}; {placement.note}; "
         f"{runs_total} runs of {args.duration} s: about {estimate / 60:.1f} min")
    scenario = next(s for s in SCENARIOS if s.name == "get-small")
    script = curve.tmp / "get-small.lua"
    script.write_text(wrk.script(scenario))
    stack = servers.Stack(curve.tmp, args.workers, placement, 2 * top + 1024, args.keepalive, targets)

    def points() -> None:
        stack.start_backend()
        for x in args.points:
            emit(f"\n== {common.human(x)} connections")
            threads = min(args.threads or placement.wrk_threads, x)
            load = wrk.Load(threads, x, args.duration, timeout_s=10)
            ends = stack.start_proxies(f"c{x}")
            try:
                for end in ends.values():
                    servers.probe(end, scenario.path)
                runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
                for repeat in range(args.repeats):
                    for target in rotation(targets, repeat):
                        if repeat == 0 and args.warmup:
                            servers.measure(ends[target], scenario.path, scenario,
                                            wrk.Load(threads, x, args.warmup, timeout_s=10), script, placement.load)
                        started = time.monotonic()
                        run = servers.measure(ends[target], scenario.path, scenario, load, script, placement.load)
                        run["elapsed_s"] = round(time.monotonic() - started, 2)
                        runs[target].append(run)
                for target in targets:
                    curve.add(point(x, target, runs[target], stack.baseline_rss.get(target)), emit)
            finally:
                servers.stop(ends)

    notes = [
        "memory/conn: the proxy's peak RSS during the runs (median) less its RSS when just started, per "
        "connection; nginx allocates its connection array at start (worker_connections), which is not in "
        "the difference."
    ]
    return curve.run(points, emit, notes, args.keep_temp)


if __name__ == "__main__":
    sys.exit(main())
