"""`python -m bench ratelimit`: the cost of a rate-limit decision as the number of distinct keys
grows (default 1,000 → 1,000,000), on the shared bucket table the gateway uses
(`fastgw._core.BucketTable`): decision time, table occupancy and evictions.

Two tables per point: the gateway's default capacity (`rate_limit_table.capacity`, 65,536 slots:
beyond it, keys evict each other, by design) and one sized to the keys (the next power of two at
or above twice their number). Per point: the keys are hashed (`key_hash`, timed), a first pass
gives each key its bucket (timed: inserts), then `--calls` decisions cycle over the keys in a
shuffled order (timed, best of `-r`). The loops are compiled with Cython against
`cimport fastgw._core`, as the gateway's own filter calls the table (bench/micro/bench_bucket.py);
if that build fails they run from Python (plus ~25 ns of call overhead) and the JSON says so.

The limit (1/s, burst 10) leaves a bucket non-full for a second after a decision, so every key
touched in the last second holds a slot: the occupancy and evictions are those of a table under
that many active clients.

`--e2e` adds wrk runs through fastgw and nginx with a per-key limit on a request header
(`key: header:X-Client`; nginx `limit_req_zone $http_x_client`, its zone sized to hold the keys),
cycling through the keys, never refusing: CPU per request and req/s, next to direct.
"""

from __future__ import annotations

import argparse
import array
import mmap
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import pinning
from bench.curves import common, servers
from bench.scenarios import SMALL_PATH, Scenario
from fastgw.loadtest import wrk
from fastgw.loadtest.procs import install_cleanup
from fastgw.loadtest.tools import MissingTool
from fastgw.server.fdlimit import raise_nofile

DEFAULT_CAPACITY = 65536
METRICS = (
    common.Metric("decision_ns", "decision", " ns", 0.0, "a hash table lookup, whatever the keys"),
    common.Metric("insert_ns", "first decision", " ns", 0.0, "claiming a slot, whatever the keys"),
    common.Metric("key_hash_ns", "key hash", " ns", 0.0, "hashing one key"),
    common.Metric("occupancy", "slots used", " %", None, scale=100, fmt=".1f"),
    common.Metric("evictions_per_decision", "evictions/decision", "", None, fmt=".3f"),
    common.Metric("cpu_us_per_request", "CPU/req (e2e)", " µs", 0.0, "a decision costs the same"),
)
HEADER = "X-Client"
LIMITED = "/keyed"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench ratelimit", description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=common.parse_ints, default=(1000, 10000, 100000, 1000000),
                   help="distinct keys (default 1000,10000,100000,1000000)")
    p.add_argument("--calls", type=int, default=2_000_000, help="decisions per timing (default 2000000)")
    p.add_argument("-r", "--repeats", type=int, default=3, help="timings per point; best is kept (default 3)")
    p.add_argument("--no-cython", dest="cython", action="store_false", help="time from Python only")
    p.add_argument("--e2e", action="store_true", help="also wrk through fastgw and nginx with a per-key limit")
    p.add_argument("-d", "--duration", type=int, default=5, help="with --e2e: seconds per wrk run (default 5)")
    p.add_argument("-c", "--connections", type=int, default=64, help="with --e2e: wrk connections (default 64)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="with --e2e: run unpinned")
    p.add_argument("-o", "--out", type=Path, default=common.OUT_DIR, help="output directory (default bench/out)")
    p.add_argument("--keep-temp", action="store_true", help="keep the generated configs and server logs")
    return p


def sized(keys: int) -> int:
    cap = 8
    while cap < 2 * keys:
        cap *= 2
    return cap


def _best(fn: Callable[[], None], n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def table_point(keys: int, capacity: int, calls: int, repeats: int, loops: Any, label: str) -> dict[str, Any]:
    from fastgw._core import BucketTable, Limit

    buf = mmap.mmap(-1, BucketTable.size_for(capacity), flags=mmap.MAP_SHARED)
    table = BucketTable(buf, capacity, init=True)
    limit = Limit(1.0, 10.0)
    names = [b"client-%d" % i for i in range(keys)]
    hashes: list[int] = []
    t0 = time.perf_counter_ns()
    for name in names:
        hashes.append(table.key_hash(b"bench", name))
    key_hash_ns = (time.perf_counter_ns() - t0) / keys
    random.Random(keys).shuffle(hashes)
    arr = array.array("Q", hashes)
    consume = table.consume

    def python_loop(n: int) -> Callable[[], None]:
        def run() -> None:
            m = len(hashes)
            for i in range(n):
                consume(hashes[i % m], limit, 1)
        return run

    def first_pass() -> None:
        if loops is not None:
            loops.table_keys(table, limit, arr, keys)
        else:
            python_loop(keys)()

    t0 = time.perf_counter_ns()
    first_pass()
    insert_ns = (time.perf_counter_ns() - t0) / keys
    n = max(calls, keys)
    steady = (lambda: loops.table_keys(table, limit, arr, n)) if loops is not None else python_loop(n)
    decision_ns = _best(steady, n, repeats)
    stats = table.stats()
    decisions = keys + n * repeats
    return {
        "x": keys, "target": label, "capacity": capacity, "decision_ns": decision_ns, "insert_ns": insert_ns,
        "key_hash_ns": key_hash_ns, "occupancy": stats["used"] / stats["capacity"],
        "active_share": stats["active"] / stats["capacity"], "evictions": stats["evictions"],
        "evictions_per_decision": stats["evictions"] / decisions, "decisions": decisions, "stats": stats,
        "timed_from": "cython" if loops is not None else "python",
    }


def build_loops(workdir: Path, emit: Callable[[str], None]) -> Any:
    from bench.micro.bench_bucket import build_cython_loops

    workdir.mkdir()
    try:
        return build_cython_loops(str(workdir))
    except Exception as exc:  # noqa: BLE001 - any build failure: time from Python instead
        emit(f"Cython loops not built ({type(exc).__name__}: {exc}); timing from Python")
        return None


def keyed_scenario(keys: int) -> Scenario:
    zone_mib = max(1, keys * 256 // 2**20 + 1)
    return Scenario(
        "get-keyed",
        f"GET through a per-{HEADER} limit that never refuses, {keys} keys",
        LIMITED + SMALL_PATH,
        fastgw_sections={"rate_limits": {"per_client": {"rate": "1000000/s", "burst": 1000000,
                                                        "key": f"header:{HEADER}"}}},
        fastgw_routes=({"match": {"prefix": LIMITED}, "upstream": "backend", "strip_prefix": True,
                        "rate_limit": "per_client"},),
        nginx_http=f"    limit_req_zone $http_x_client zone=per_client:{zone_mib}m rate=1000000r/s;",
        nginx_locations=(f"        location {LIMITED}/ {{\n"
                         "            limit_req zone=per_client burst=1000000 nodelay;\n"
                         "            proxy_pass http://backend/;\n        }\n"),
    )


def e2e_points(keys: int, args: argparse.Namespace, curve: common.Curve, emit: Callable[[str], None]) -> None:
    placement = pinning.plan(common.cpus(), 1, args.pin)
    scenario = keyed_scenario(keys)
    stack = servers.Stack(curve.tmp / f"e2e-{keys}", 1, placement, 4096, 32, ("direct", "nginx", "fastgw"),
                          scenarios=(scenario,))
    stack.tmp.mkdir()
    stack.start_backend()
    ends = stack.start_proxies("e2e")
    try:
        script = stack.tmp / "keyed.lua"
        script.write_text(wrk.script(wrk.Shape(), wrk.rotate(keys, header=HEADER, value_format="client-%d")))
        load = wrk.Load(placement.wrk_threads, args.connections, args.duration)
        for target, end in ends.items():
            path = SMALL_PATH if target == "direct" else scenario.path
            servers.probe(end, path)
            run = servers.measure(end, path, wrk.Shape(), load, script, placement.load)
            curve.add({"x": keys, "target": f"{target}-e2e", "rps": run["wrk"]["rps"],
                       "cpu_us_per_request": run["cpu_us_per_request"], "errors": sum(run["wrk"]["errors"].values()),
                       "run": run}, emit)
    finally:
        servers.stop(ends)
        if stack.backend is not None:
            stack.backend.stop()


def main(argv: list[str] | None = None, emit: Any = print) -> int:
    args = parser().parse_args(argv)
    if args.calls < 1 or args.repeats < 1:
        parser().error("--calls and --repeats must be positive")
    install_cleanup()
    if args.e2e:
        try:
            wrk.binary()
        except MissingTool as exc:
            emit(f"python -m bench ratelimit: {exc}")
            return 2
        raise_nofile(4096)
    curve = common.Curve("ratelimit", "keys", METRICS, vars(args), args.out)
    curve.start_note(emit)
    emit(f"points {', '.join(map(common.human, args.points))}; tables: default capacity {DEFAULT_CAPACITY:,} and "
         f"sized to the keys; {args.calls:,} decisions × {args.repeats} per point"
         + (f"; e2e wrk {args.duration} s per target and point" if args.e2e else ""))
    loops = build_loops(curve.tmp / "loops", emit) if args.cython else None

    def points() -> None:
        for keys in args.points:
            emit(f"\n== {common.human(keys)} keys")
            curve.add(table_point(keys, DEFAULT_CAPACITY, args.calls, args.repeats, loops, "default"), emit)
            curve.add(table_point(keys, sized(keys), args.calls, args.repeats, loops, "sized"), emit)
            if args.e2e:
                e2e_points(keys, args, curve, emit)

    notes = [
        f"targets: default = a table of {DEFAULT_CAPACITY:,} slots (the gateway's default), sized = 2× the keys "
        "rounded up to a power of two; *-e2e = wrk through each proxy with one key per request, cycling. "
        "Times are per call, best of the repeats; a table larger than the CPU caches is slower per lookup "
        "(memory latency), which the growth tolerance allows for."
    ]
    return curve.run(points, emit, notes, args.keep_temp)


if __name__ == "__main__":
    sys.exit(main())
