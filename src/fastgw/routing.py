"""Compiles configured routes into the trie and per-route plans, once per worker generation.

A plan holds everything the request path needs about its route, already in wire form (lower-case
byte names, pre-rendered header lines), so the hot path never reads configuration.
"""

from __future__ import annotations

from fastgw._core import Plan, RouteTrie
from fastgw.config.model import Config, HeaderOps, Route


def _render(ops: HeaderOps) -> bytes:
    return b"".join(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in ops.set)


def _drops(ops: HeaderOps) -> frozenset[bytes] | None:
    """Names a route removes or replaces, beyond the hop-by-hop and gateway-owned headers the
    core always drops (`_request_drops` / `_response_drops` in proto.pyx)."""
    names = {n.encode("latin-1") for n in ops.remove} | {n.encode("latin-1") for n, _ in ops.set}
    return frozenset(names) or None


def _plan(route: Route, config: Config) -> Plan:
    upstream = config.upstreams[route.upstream]
    strip = -1
    if route.strip_prefix and route.match.prefix is not None:
        prefix = route.match.prefix.rstrip("/")
        strip = len(prefix.encode())
    return Plan(
        route.index,
        route.upstream,
        strip,
        _drops(route.headers.request),
        _render(route.headers.request),
        _drops(route.headers.response),
        _render(route.headers.response),
        upstream.host_header.encode("latin-1") if upstream.host_header else None,
    )


def compile_routes(config: Config) -> tuple[RouteTrie, list[Plan]]:
    trie = RouteTrie()
    plans = []
    for route in config.routes:
        plan = _plan(route, config)
        m = route.match
        trie.add(plan, path=m.path, prefix=m.prefix, methods=m.methods, host=m.host)
        plans.append(plan)
    return trie, plans
