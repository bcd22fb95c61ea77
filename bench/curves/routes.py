"""`python -m bench routes`: what a larger route table costs (default 10 → 1,000 → 100,000
routes): the time of one match through the compiled router, its memory, the config check
(`fastgw check`) and the hot reload (HUP until `ready: generation N`), next to nginx with the same
number of `location` blocks (`nginx -t`, HUP until every worker is a new one).

The table: a third each of exact paths (`/r<j>/items`, GET), one-parameter paths
(`/r<j>/items/{id}`) and prefixes (`/s<j>`), all to one upstream. nginx has no path parameters
without regular expressions (which it tries one after another): their equivalent is the prefix
location `/r<j>/items/`. Match time is measured in a fresh interpreter that loads the config with
`fastgw.config.load` and compiles it with `fastgw.routing.compile_routes` (as a worker does), then
times `RouteTrie.match` over requests spread across the table (hits of every shape and 404s),
best of 3; the same process's RSS before and after gives the table's memory. Nothing is sent
over the network: nginx's match time is not measured (it has no in-process entry point).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench import nginx
from bench.curves import common
from fastgw.loadtest import gateway
from fastgw.loadtest.cpu import tree_pids
from fastgw.loadtest.memory import tree_rss
from fastgw.loadtest.procs import ServerError, free_port, install_cleanup

METRICS = (
    common.Metric("match_ns", "match", " ns", 0.0, "a trie lookup costs the path's length, not the table's"),
    common.Metric("bytes_per_route", "memory/route", " B", 0.0, "a table's memory is linear in its routes",
                  fmt=",.0f"),
    common.Metric("check_s", "check", " s", 1.0, "loading and validating is linear", fmt=".3f", logy=True),
    common.Metric("reload_s", "reload", " s", 1.0, "recompiling is linear", fmt=".3f", logy=True),
    common.Metric("rss", "server RSS", " MiB", 1.0, "linear", scale=1 / 2**20, fmt=".1f"),
)
RELOAD_TIMEOUT_S = 600.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench routes", description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=common.parse_ints, default=(10, 1000, 100000),
                   help="route counts (default 10,1000,100000)")
    p.add_argument("-r", "--repeats", type=int, default=3, help="checks and reloads per point; medians (default 3)")
    p.add_argument("--calls", type=int, default=300_000, help="match calls per timing (default 300000)")
    p.add_argument("-t", "--targets", default="fastgw,nginx", help="subset of fastgw,nginx (default both)")
    p.add_argument("-o", "--out", type=Path, default=common.OUT_DIR, help="output directory (default bench/out)")
    p.add_argument("--keep-temp", action="store_true", help="keep the generated configs and server logs")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return p


def fastgw_routes(n: int) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for k in range(n):
        j, shape = divmod(k, 3)
        if shape == 0:
            routes.append({"match": {"path": f"/r{j}/items", "methods": ["GET"]}, "upstream": "backend"})
        elif shape == 1:
            routes.append({"match": {"path": f"/r{j}/items/{{id}}"}, "upstream": "backend"})
        else:
            routes.append({"match": {"prefix": f"/s{j}"}, "upstream": "backend"})
    return routes


def nginx_locations(n: int) -> str:
    out = []
    for k in range(n):
        j, shape = divmod(k, 3)
        where = (f"= /r{j}/items", f"/r{j}/items/", f"/s{j}/")[shape]
        out.append(f"        location {where} {{ proxy_pass http://backend; }}")
    return "\n".join(out)


def sample_requests(n: int, count: int = 1024) -> list[bytes]:
    """Paths spread over the table: exact, param and prefix hits, and a 404, in turn."""
    groups = max(1, (n + 2) // 3)
    step = max(1, groups // (count // 4))
    out = []
    for j in range(0, groups, step):
        out += [f"/r{j}/items".encode(), f"/r{j}/items/42".encode(), f"/s{j}/x/y".encode(), f"/nope/{j}".encode()]
    return out[:count] or [b"/r0/items"]


def fastgw_config(n: int, port: int, pidfile: Path) -> dict[str, Any]:
    return {
        "workers": 1,
        "pidfile": str(pidfile),
        "listen": [{"address": f"127.0.0.1:{port}"}],
        "upstreams": {"backend": {"targets": ["127.0.0.1:9"]}},
        "routes": fastgw_routes(n),
        "access_log": {"path": False},
    }


def child(config: Path, calls: int) -> None:
    """In a fresh interpreter: load + compile time, the table's RSS, match ns (best of 3)."""
    import fastgw._core  # noqa: F401  (its import is not the table's memory)
    from fastgw._proxy import Clock
    from fastgw.config import load
    from fastgw.loadtest.memory import tree_rss as rss
    from fastgw.routing import compile_routes
    from fastgw.upstream.pool import UpstreamGroup

    before = rss(os.getpid())
    t0 = time.perf_counter()
    cfg = load(str(config))
    t1 = time.perf_counter()
    clock = Clock(time.monotonic())
    trie, _plans = compile_routes(cfg, {name: UpstreamGroup(up, clock, None, None)
                                        for name, up in cfg.upstreams.items()})
    t2 = time.perf_counter()
    after = rss(os.getpid())
    paths = sample_requests(len(cfg.routes))
    reqs = [(b"127.0.0.1", b"GET", p) for p in paths]
    loops = max(1, calls // len(reqs))
    match = trie.match
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for _ in range(loops):
            for host, method, path in reqs:
                match(host, method, path)
        best = min(best, (time.perf_counter_ns() - start) / (loops * len(reqs)))
    print(json.dumps({"load_s": t1 - t0, "compile_s": t2 - t1, "rss_before": before, "rss_after": after,
                      "match_ns": best, "routes": len(cfg.routes)}))


def run_child(config: Path, calls: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.curves.routes", "--child", str(config), "--calls", str(calls)],
                         capture_output=True, text=True, timeout=RELOAD_TIMEOUT_S,
                         cwd=Path(__file__).resolve().parents[2])
    if out.returncode != 0:
        raise ServerError(f"timing the router failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(argv: list[str], timeout: float = RELOAD_TIMEOUT_S) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise ServerError(f"{' '.join(argv[:4])} failed ({out.returncode}): {(out.stderr or out.stdout)[-2000:]}")
    return elapsed


def fastgw_point(n: int, tmp: Path, repeats: int, calls: int) -> dict[str, Any]:
    workdir = tmp / f"fastgw-{n}"
    workdir.mkdir()
    config = workdir / "fastgw.yaml"
    config.write_text(yaml.safe_dump(fastgw_config(n, free_port(), workdir / "fastgw.pid"), sort_keys=False))
    inproc = run_child(config, calls)
    checks = [timed([sys.executable, "-m", "fastgw", "check", "-c", str(config)]) for _ in range(repeats)]
    server = gateway.start(config, workdir / "fastgw.log", timeout=RELOAD_TIMEOUT_S)
    try:
        rss = tree_rss(server.pid)
        reloads = []
        for i in range(repeats):
            t0 = time.perf_counter()
            os.kill(server.pid, signal.SIGHUP)
            done = re.compile(f"{gateway.ready_pattern(i + 2).pattern}|reload failed: .*")
            line = server.wait_line(done, RELOAD_TIMEOUT_S).group(0)
            if line.startswith("reload failed"):
                raise RuntimeError(f"fastgw with {n} routes: {line}")
            reloads.append(time.perf_counter() - t0)
    finally:
        server.stop()
    return {
        "x": n, "target": "fastgw", "match_ns": inproc["match_ns"],
        "bytes_per_route": (inproc["rss_after"] - inproc["rss_before"]) / n,
        "load_s": inproc["load_s"], "compile_s": inproc["compile_s"],
        "check_s": statistics.median(checks), "checks_s": checks,
        "reload_s": statistics.median(reloads), "reloads_s": reloads, "rss": rss,
    }


def nginx_point(n: int, tmp: Path, repeats: int) -> dict[str, Any]:
    prefix = tmp / f"nginx-{n}"
    prefix.mkdir()
    port = free_port()
    conf = nginx._write(
        prefix,
        nginx._main_section(prefix, 1)
        + f"""\
    access_log off;
    upstream backend {{ server 127.0.0.1:9; }}
    server {{
        listen 127.0.0.1:{port};
{nginx_locations(n)}
    }}
}}
""",
    )
    checks = [timed([nginx.binary(), "-t", "-q", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")])
              for _ in range(repeats)]
    server = nginx.start("nginx", prefix, conf, port, 1, None, timeout=RELOAD_TIMEOUT_S)
    try:
        rss = tree_rss(server.pid)
        reloads = []
        for _ in range(repeats):
            old = set(tree_pids(server.pid)) - {server.pid}
            t0 = time.perf_counter()
            os.kill(server.pid, signal.SIGHUP)
            deadline = t0 + RELOAD_TIMEOUT_S
            while True:
                workers = set(tree_pids(server.pid)) - {server.pid}
                if workers and not workers & old:
                    break
                if time.perf_counter() > deadline or not server.alive():
                    raise server.fail("did not reload")
                time.sleep(0.002)
            reloads.append(time.perf_counter() - t0)
    finally:
        server.stop()
    return {"x": n, "target": "nginx", "check_s": statistics.median(checks), "checks_s": checks,
            "reload_s": statistics.median(reloads), "reloads_s": reloads, "rss": rss}


def main(argv: list[str] | None = None, emit: Any = print) -> int:
    args = parser().parse_args(argv)
    if args.child:
        child(args.child, args.calls)
        return 0
    targets = [t for t in ("fastgw", "nginx") if t in args.targets.split(",")]
    if not targets or args.repeats < 1 or args.calls < 1:
        parser().error("--targets, --repeats and --calls: see --help")
    install_cleanup()
    curve = common.Curve("routes", "routes", METRICS, {k: v for k, v in vars(args).items() if k != "child"}, args.out)
    curve.start_note(emit)
    emit(f"points {', '.join(map(common.human, args.points))}; targets {', '.join(targets)}; {args.repeats} checks "
         "and reloads per point (a full default run takes about 15 min, most of it at 100k routes)")

    def points() -> None:
        for n in args.points:
            emit(f"\n== {common.human(n)} routes")
            if "fastgw" in targets:
                curve.add(fastgw_point(n, curve.tmp, args.repeats, args.calls), emit)
            if "nginx" in targets:
                curve.add(nginx_point(n, curve.tmp, args.repeats), emit)

    notes = [
        "match: RouteTrie.match from Python (call overhead included, ~20-25 ns), best of 3. memory/route: RSS "
        "of a fresh interpreter after loading and compiling the config less before, per route (config objects "
        "and trie together). check: `fastgw check` / `nginx -t` wall time, process start included. reload: HUP "
        "until the new generation serves (fastgw: `ready: generation N`; nginx: every worker new). server RSS: "
        "master and worker(s) after start."
    ]
    return curve.run(points, emit, notes, args.keep_temp,
                     errors=(ServerError, OSError, ValueError, RuntimeError, subprocess.TimeoutExpired))


if __name__ == "__main__":
    sys.exit(main())
