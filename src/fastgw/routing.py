"""Compiles configured routes into the trie and per-route plans, once per worker generation.

A plan holds everything the request path needs about its route, already in wire form (lower-case
byte names, pre-rendered header lines), so the hot path never reads configuration. Routes that
share a pattern and differ by header or query conditions become one `RouteChoice` in the trie;
a route with weighted upstreams gets a `Split`. The plans' filter chains are attached afterwards
(`fastgw.pipeline.chain`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastgw._core import RouteTrie
from fastgw._proxy import Condition, Plan, Rewrite, RouteChoice, Split
from fastgw.config.model import Config, HeaderOps, Route
from fastgw.ratelimit.keys import route_key
from fastgw.upstream.balancer import request_key


def _render(ops: HeaderOps) -> bytes:
    return b"".join(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in ops.set)


def _drops(ops: HeaderOps, extra: tuple[str, ...] = ()) -> tuple[bytes, ...]:
    """Lower-case names a route removes or replaces, beyond the hop-by-hop and gateway-owned
    headers the exchange always drops (the header table in `_proxy_src/headers.pyx`)."""
    names = {n.lower() for n in ops.remove} | {n.lower() for n, _ in ops.set} | {n.lower() for n in extra}
    return tuple(sorted(n.encode("latin-1") for n in names))


def _plan(route: Route, config: Config) -> Plan:
    plan = Plan(route.index, route.upstream)
    upstream = config.upstreams.get(route.upstream)
    if route.strip_prefix and route.match.prefix is not None:
        prefix = route.match.prefix.rstrip("/")
        plan.strip_len = len(prefix.encode())
    plan.route_key = route_key(route)
    # Headers the gateway vouches for (forwarded claims, consumer names) are dropped from every
    # client request, on every route, so that no client can pose as authenticated (DESIGN §8).
    plan.request_drop = _drops(route.headers.request, config.auth_headers)
    plan.request_set = _render(route.headers.request)
    plan.response_drop = _drops(route.headers.response, config.hide_backend_headers)
    plan.response_set = _render(route.headers.response)
    if upstream is not None and upstream.host_header:
        plan.host_header = upstream.host_header.encode("latin-1")
    if route.websocket is not None:
        plan.websocket = True
        plan.ws_idle_timeout = route.websocket.idle_timeout or 0.0
    rewrite = route.rewrite
    if rewrite is not None:
        plan.rewrite = Rewrite(prefix=rewrite.prefix) if rewrite.prefix is not None else Rewrite(template=rewrite.path)
    return plan


def compile_routes(config: Config, groups: Mapping[str, Any]) -> tuple[RouteTrie, list[Plan]]:
    """The trie and the plans (one per route, in route order), with their upstream groups."""
    trie = RouteTrie()
    plans = []
    for route in config.routes:
        plan = _plan(route, config)
        if route.upstream:
            plan.group = groups[route.upstream]
        elif route.upstreams:
            plan.split = Split(
                [groups[w.name] for w in route.upstreams],
                [w.name for w in route.upstreams],
                [w.weight for w in route.upstreams],
                request_key(route.sticky) if route.sticky is not None else None,
            )
        plans.append(plan)
    for key, members in _patterns(config.routes).items():
        host, path, prefix, methods = key
        target: Any
        if len(members) == 1 and not members[0].match.conditions:
            target = plans[members[0].index]
        else:
            target = _choice(members, plans)
        trie.add(target, path=path, prefix=prefix, methods=methods, host=host)
    return trie, plans


def _patterns(routes: tuple[Route, ...]) -> dict[tuple[Any, ...], list[Route]]:
    """Routes grouped by what the trie matches (host, path or prefix, methods), in file order."""
    out: dict[tuple[Any, ...], list[Route]] = {}
    for route in routes:
        m = route.match
        out.setdefault((m.host, m.path, m.prefix, m.methods), []).append(route)
    return out


def _choice(members: list[Route], plans: list[Plan]) -> RouteChoice:
    """Precedence among routes of one pattern: the most conditions first, then file order; the
    route without conditions (at most one, the loader checks) is the fallback."""
    conditional = sorted((r for r in members if r.match.conditions), key=lambda r: -len(r.match.conditions))
    fallback = next((plans[r.index] for r in members if not r.match.conditions), None)
    return RouteChoice(
        [plans[r.index] for r in conditional],
        [[Condition(c.kind, c.name, c.op, c.value) for c in r.match.conditions] for r in conditional],
        fallback,
    )
