"""`python -m bench websocket`: WebSocket echo round trips per second through fastgw (a
`websocket: true` tunnel route) and through nginx (`proxy_http_version 1.1` with the Upgrade and
Connection headers), to the same echo backend, as the number of connections grows (issue 12).

Per point: fresh proxies, one unrecorded warm-up run per target, then `-r` runs per target,
interleaved (the order rotates per repeat); medians. A run is `bench/curves/wsload.py`: N
connections, each a closed loop of round trips (one pre-encoded masked frame, its echo counted by
bytes) for `-d` seconds, after every handshake is done. The echo backend is
`bench/curves/wsecho.py` (uvloop, unmasking in C). direct (load generator to the backend) is the
ceiling of the layout. CPU per round trip is the proxy tree's user + system time over the round
trips; memory per connection its peak RSS during the run less its RSS when just started.

Placement as `python -m bench`: the proxy on its own CPU(s), the load generator and the echo
backend on the others; on a 2-CPU machine with one proxy worker, they share one CPU, so a proxy
result near direct means the load side was the limit.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import gateway, nginx, pinning
from bench.curves import common
from bench.run import TARGETS, rotation
from fastgw.loadtest.cpu import tree_ticks, us_per_request
from fastgw.loadtest.memory import PeakWatch, tree_rss
from fastgw.loadtest.procs import Server, ServerError, free_port, install_cleanup, taskset
from fastgw.server.fdlimit import raise_nofile

METRICS = (
    common.Metric("rps", "round trips/s", "", None, fmt=",.0f"),
    common.Metric("p50_us", "p50", " µs", None, fmt=".0f"),
    common.Metric("p99_us", "p99", " µs", 1.0, "closed loop: latency ≈ connections / throughput", fmt=".0f"),
    common.Metric("cpu_us_per_rt", "CPU/round trip", " µs", 0.0, "a message costs the same however many wait",
                  fmt=".2f"),
    common.Metric("memory_per_connection", "memory/conn", " KiB", 0.0, "a connection costs the same memory",
                  scale=1 / 1024, fmt=".1f"),
)
PATH = "/ws"
#: nginx: the WebSocket location (the catch-all `/` stays for the probe and is unused).
NGINX_LOCATION = f"""        location {PATH} {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
        }}"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench websocket", description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=common.parse_ints, default=(1, 64, 1000),
                   help="connection counts (default 1,64,1000)")
    p.add_argument("-d", "--duration", type=float, default=10, help="seconds per run (default 10)")
    p.add_argument("-r", "--repeats", type=int, default=3, help="runs per point and target; medians (default 3)")
    p.add_argument("--warmup", type=float, default=2, help="unrecorded seconds per point and target (default 2)")
    p.add_argument("-w", "--workers", type=int, default=1, help="proxy workers (default 1)")
    p.add_argument("-t", "--targets", default="direct,nginx,fastgw", help="subset of direct,nginx,fastgw")
    p.add_argument("--size", type=int, default=32, help="message payload bytes (default 32)")
    p.add_argument("--window", type=int, default=1, help="messages in flight per connection (default 1)")
    p.add_argument("--load-procs", type=int, default=None,
                   help="load generator processes (default: one per load CPU)")
    p.add_argument("--echo-procs", type=int, default=None, help="echo backend processes (default: as --load-procs)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="run unpinned")
    p.add_argument("-o", "--out", type=Path, default=common.OUT_DIR, help="output directory (default bench/out)")
    p.add_argument("--keep-temp", action="store_true", help="keep the generated configs and server logs")
    return p


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def start_echo(tmp: Path, procs: int, cpus: tuple[int, ...] | None) -> tuple[Server, int]:
    port = free_port()
    argv = taskset(cpus, [sys.executable, "-m", "bench.curves.wsecho", "--port", str(port), "--procs", str(procs)])
    server = Server("wsecho", argv, tmp / "wsecho.log")
    server.wait_listening(port, procs, timeout=15)
    return server, port


def start_proxies(tmp: Path, tag: str, args: argparse.Namespace, targets: list[str], placement: pinning.Placement,
                  echo_port: int, connections: int) -> dict[str, tuple[int, Server | None]]:
    ends: dict[str, tuple[int, Server | None]] = {}
    upstream = f"127.0.0.1:{echo_port}"
    if "direct" in targets:
        ends["direct"] = (echo_port, None)
    if "nginx" in targets:
        prefix = tmp / f"nginx-{tag}"
        prefix.mkdir()
        port = free_port()
        conf = nginx.proxy_config(prefix, port, args.workers, upstream, 0, (), 2 * connections + 1024,
                                  locations=NGINX_LOCATION)
        ends["nginx"] = (port, nginx.start("nginx", prefix, conf, port, args.workers, placement.proxy))
    if "fastgw" in targets:
        workdir = tmp / f"fastgw-{tag}"
        workdir.mkdir()
        port = free_port()
        doc = gateway.config(port, args.workers, upstream, 32, workdir / "access.log", ())
        doc["routes"].insert(0, {"match": {"prefix": PATH}, "upstream": "backend", "websocket": {"idle_timeout": "1h"}})
        ends["fastgw"] = (port, gateway.start(workdir, doc, placement.proxy))
    return ends


def measure(port: int, server: Server | None, connections: int, seconds: float, args: argparse.Namespace,
            placement: pinning.Placement, procs: int) -> dict[str, Any]:
    argv = taskset(placement.load, [
        sys.executable, "-m", "bench.curves.wsload", "--port", str(port), "--path", PATH, "-c", str(connections),
        "-d", str(seconds), "--size", str(args.size), "--window", str(args.window), "--procs", str(procs),
    ])
    timeout = seconds + 60 + connections / 100

    def load() -> dict[str, Any]:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        try:
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ServerError(f"wsload printed no result (exit {done.returncode}): {done.stderr[-500:]}") from None
        if "error" in result:
            raise ServerError(f"wsload against port {port}: {result['error']}")
        return result

    if server is None:
        return {"load": load(), "cpu_us_per_rt": None, "memory": None}
    before = tree_ticks(server.pid)
    with PeakWatch(server.pid) as watch:
        result = load()
    after = tree_ticks(server.pid)
    if not server.alive():
        raise server.fail("died during the run")
    assert watch.result is not None
    return {"load": result, "cpu_us_per_rt": us_per_request(before, after, result["round_trips"]),
            "memory": watch.result.as_dict(), "command": argv}


def point(x: int, target: str, runs: list[dict[str, Any]], baseline: int | None) -> dict[str, Any]:
    mem = [r["memory"] for r in runs if r["memory"]]
    peak = _median([m["peak_rss"] for m in mem]) if mem else None
    return {
        "x": x,
        "target": target,
        "rps": _median([r["load"]["rps"] for r in runs]),
        "p50_us": _median([r["load"]["latency_us"]["50"] for r in runs]),
        "p99_us": _median([r["load"]["latency_us"]["99"] for r in runs]),
        "cpu_us_per_rt": _median([r["cpu_us_per_rt"] for r in runs]),
        "memory_per_connection": (peak - baseline) / x if peak is not None and baseline is not None else None,
        "errors": sum(r["load"]["errors"] for r in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None, emit: Any = print) -> int:
    args = parser().parse_args(argv)
    targets = [t for t in TARGETS if t in args.targets.split(",")]
    if not targets or args.duration <= 0 or args.repeats < 1:
        parser().error("--targets, --duration and --repeats must name something / be positive")
    install_cleanup()
    if "nginx" in targets:
        try:
            nginx.binary()
        except RuntimeError as exc:
            emit(f"python -m bench websocket: {exc}")
            return 2
    top = max(args.points)
    raise_nofile(4 * top + 2048)
    placement = pinning.plan(common.cpus(), args.workers, args.pin)
    load_procs = args.load_procs or placement.wrk_threads
    echo_procs = args.echo_procs or load_procs
    curve = common.Curve("websocket", "connections", METRICS,
                         {**vars(args), "load_procs": load_procs, "echo_procs": echo_procs}, args.out,
                         need_fastgw="fastgw" in targets)
    curve.start_note(emit)
    runs_total = len(args.points) * len(targets) * args.repeats
    estimate = runs_total * (args.duration + 2) + len(args.points) * len(targets) * (args.warmup + 4)
    emit(f"points {', '.join(map(common.human, args.points))}; targets {', '.join(targets)}; {placement.note}; "
         f"{args.size}-byte messages, window {args.window}; load {load_procs} process(es), echo {echo_procs}; "
         f"{runs_total} runs of {args.duration:g} s: about {estimate / 60:.1f} min")

    def points() -> None:
        echo, echo_port = start_echo(curve.tmp, echo_procs, placement.load)
        for x in args.points:
            emit(f"\n== {common.human(x)} connections")
            procs = min(load_procs, x)
            ends = start_proxies(curve.tmp, f"c{x}", args, targets, placement, echo_port, x)
            baseline = {t: tree_rss(s.pid) for t, (_, s) in ends.items() if s is not None}
            try:
                runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
                for repeat in range(args.repeats):
                    for target in rotation(targets, repeat):
                        port, server = ends[target]
                        if repeat == 0 and args.warmup:
                            measure(port, server, x, args.warmup, args, placement, procs)
                        started = time.monotonic()
                        run = measure(port, server, x, args.duration, args, placement, procs)
                        run["elapsed_s"] = round(time.monotonic() - started, 2)
                        runs[target].append(run)
                for target in targets:
                    curve.add(point(x, target, runs[target], baseline.get(target)), emit)
            finally:
                for _, server in ends.values():
                    if server is not None:
                        server.stop()
        echo.stop()

    notes = [
        "round trips/s: echo round trips completed by all connections per second (closed loop, one message "
        "in flight per connection unless --window); direct is the load generator against the echo backend, "
        "the ceiling of this layout."
    ]
    return curve.run(points, emit, notes, args.keep_temp,
                     errors=(ServerError, OSError, ValueError, subprocess.TimeoutExpired))


if __name__ == "__main__":
    sys.exit(main())
