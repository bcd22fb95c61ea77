"""Routing and path normalization cost: `python -m bench.micro.bench_trie [--loops N] [--repeat R]`.

Times `RouteTrie.match` on a table shaped like a real gateway's (about 50 routes: literal paths,
`{param}` and catch-all patterns, prefixes, one exact and one wildcard host) and `normalize_path` on
a path that is already normal and on one that needs every rule, for the compiled `fastgw._core` and
the plain-Python model `fastgw._pycore`. Each figure is the best of R runs of N calls, in ns/call.

Every call from Python pays the interpreter's call overhead, shown as the "call floor" (the same
loop calling `dict.get` on a tiny dict), so the compiled core's own cost is roughly its figure minus
the floor. The request bytes are reused across calls, so their hash is cached; a fresh path from
the parser adds hashing it once (a few ns per 10 bytes) to the exact-path lookup.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import fastgw._core as core
import fastgw._pycore.path as pypath
import fastgw._pycore.trie as pytrie

Request = tuple[bytes, bytes, bytes]

CASES: list[tuple[str, Request]] = [
    ("exact", (b"gw.example.com", b"GET", b"/api/v1/users")),
    ("exact, method fall-through", (b"gw.example.com", b"POST", b"/api/v1/users")),
    ("1 param", (b"gw.example.com", b"GET", b"/api/v1/users/42")),
    ("2 params", (b"gw.example.com", b"GET", b"/api/v1/users/42/orders/7")),
    ("catch-all", (b"gw.example.com", b"GET", b"/files/2024/reports/q3.pdf")),
    ("prefix", (b"gw.example.com", b"GET", b"/static/css/site.css")),
    ("exact host", (b"api.example.com", b"GET", b"/v1/status")),
    ("wildcard host, port, case", (b"Acme.Tenant.Example.com:443", b"GET", b"/dashboard")),
    ("404", (b"gw.example.com", b"GET", b"/nope/x")),
    ("405", (b"gw.example.com", b"DELETE", b"/api/v1/users")),
]
NO_HOST_CASE: Request = (b"gw.example.com", b"GET", b"/api/v1/users")

PATHS: list[tuple[str, bytes]] = [
    ("normal (returned as is)", b"/api/v1/users/42/orders"),
    ("needs work", b"/api/v1/./users//42/%7Eorders/%2e%2e/x%3a"),
]


def build_table(impl: ModuleType, with_hosts: bool = True) -> Any:
    """About 50 routes, as a mid-sized API gateway config would have."""
    t = impl.RouteTrie()
    for name in ("healthz", "readyz", "metrics", "version", "login", "logout", "favicon.ico"):
        t.add(name, path=f"/{name}")
    for resource in ("users", "orders", "products", "invoices", "carts", "reviews"):
        t.add(f"list-{resource}", path=f"/api/v1/{resource}", methods=["GET"])
        t.add(f"create-{resource}", path=f"/api/v1/{resource}", methods=["POST"])
        t.add(f"get-{resource}", path=f"/api/v1/{resource}/{{id}}", methods=["GET", "HEAD"])
        t.add(f"update-{resource}", path=f"/api/v1/{resource}/{{id}}", methods=["PUT", "PATCH", "DELETE"])
    t.add("user-order", path="/api/v1/users/{uid}/orders/{oid}")
    t.add("user-me", path="/api/v1/users/me")
    t.add("files", path="/files/{path*}")
    for prefix in ("/static", "/assets", "/docs", "/api/v2", "/api/v2/admin", "/legacy", "/ws", "/internal"):
        t.add(f"prefix{prefix}", prefix=prefix)
    if with_hosts:
        for path in ("/v1/status", "/v1/items", "/v1/items/{id}"):
            t.add(f"api-host{path}", path=path, host="api.example.com")
        t.add("api-host-rest", prefix="/", host="api.example.com")
        for path in ("/dashboard", "/settings", "/t/{id}"):
            t.add(f"tenant{path}", path=path, host="*.tenant.example.com")
        t.add("tenant-rest", prefix="/", host="*.tenant.example.com")
    return t


def route_count(with_hosts: bool) -> int:
    return 7 + 6 * 4 + 3 + 8 + (8 if with_hosts else 0)


def time_call3(fn: Callable[[bytes, bytes, bytes], object], args: Request, loops: int, repeat: int) -> float:
    a, b, c = args
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, loops):
            fn(a, b, c)
        best = min(best, (time.perf_counter_ns() - t0) / loops)
    return best


def time_call1(fn: Callable[[bytes], object], arg: bytes, loops: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, loops):
            fn(arg)
        best = min(best, (time.perf_counter_ns() - t0) / loops)
    return best


def time_floor(loops: int, repeat: int) -> float:
    get = {b"k": 1}.get
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for _ in itertools.repeat(None, loops):
            get(b"k", None)
        best = min(best, (time.perf_counter_ns() - t0) / loops)
    return best


def describe(m: Any) -> str:
    if m.status == 200:
        return f"200 {m.target}" + (f" {m.params}" if m.params else "")
    if m.status == 405:
        return f"405 Allow: {m.allow.decode()}"
    return str(m.status)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.micro.bench_trie", description=__doc__.split("\n\n")[0])
    p.add_argument("--loops", type=int, default=1_000_000, help="calls per run for _core (default 1e6)")
    p.add_argument("--py-loops", type=int, default=20_000, help="calls per run for _pycore (default 2e4)")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure, best kept (default 3)")
    args = p.parse_args(argv)

    fast, model = build_table(core), build_table(pytrie)
    fast_nohost = build_table(core, with_hosts=False)
    for label, req in CASES:
        got, want = describe(fast.match(*req)), describe(model.match(*req))
        if got != want:
            print(f"MISMATCH on {label}: _core {got!r} != _pycore {want!r}")
            return 1

    floor = time_floor(args.loops, args.repeat)
    print(f"{'ns/call':<34} {'_core':>8} {'net':>8} {'_pycore':>9}   answer")
    rows: list[tuple[str, float, float, str]] = []
    rows.append(
        (
            "match: exact, table without hosts",
            time_call3(fast_nohost.match, NO_HOST_CASE, args.loops, args.repeat),
            time_call3(build_table(pytrie, with_hosts=False).match, NO_HOST_CASE, args.py_loops, args.repeat),
            describe(fast_nohost.match(*NO_HOST_CASE)),
        )
    )
    for label, req in CASES:
        rows.append(
            (
                f"match: {label}",
                time_call3(fast.match, req, args.loops, args.repeat),
                time_call3(model.match, req, args.py_loops, args.repeat),
                describe(fast.match(*req)),
            )
        )
    for label, path in PATHS:
        rows.append(
            (
                f"normalize: {label}",
                time_call1(core.normalize_path, path, args.loops, args.repeat),
                time_call1(pypath.normalize_path, path, args.py_loops, args.repeat),
                core.normalize_path(path).decode(),
            )
        )
    for label, fast_ns, py_ns, answer in rows:
        print(f"{label:<34} {fast_ns:>8.0f} {fast_ns - floor:>8.0f} {py_ns:>9.0f}   {answer}")
    print(f"{'call floor (dict.get)':<34} {floor:>8.0f}")
    print(
        f"tables: {route_count(True)} routes ({route_count(False)} without hosts); best of {args.repeat} runs "
        f"of {args.loops} calls (_core), {args.py_loops} calls (_pycore)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
