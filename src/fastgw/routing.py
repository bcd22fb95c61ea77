"""Compiles configured routes into the trie and per-route plans, once per worker generation.

A plan holds everything the request path needs about its route, already in wire form (lower-case
byte names, pre-rendered header lines), so the hot path never reads configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastgw._core import RouteTrie
from fastgw.config.model import Config, HeaderOps, Route

# Headers never forwarded to the upstream as the client sent them: hop-by-hop (RFC 9110 §7.6.1),
# framing (re-framed by the gateway), and those the gateway owns (DESIGN §8).
REQUEST_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
        b"upgrade", b"content-length", b"expect", b"proxy-authorization",
        b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
        b"x-real-ip", b"forwarded", b"x-original-url", b"x-rewrite-url", b"x-request-id",
    }
)
RESPONSE_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
        b"upgrade", b"content-length", b"proxy-authenticate", b"x-request-id",
    }
)


@dataclass(slots=True, eq=False)
class RoutePlan:
    index: int
    upstream: str
    strip_len: int
    """Bytes of the matched prefix to strip from the path, or -1 when the route does not strip."""
    request_drop: frozenset[bytes]
    request_set: bytes
    response_drop: frozenset[bytes]
    response_set: bytes
    host_header: bytes | None
    group: Any = None
    """The worker's `UpstreamGroup` for this route, attached when the worker builds its pools."""
    filters: tuple[Any, ...] = ()
    """Request filters in route order (rate limits, later auth): each has
    `on_request(proto, req) -> (status, message, header_lines) | None`; a tuple refuses the
    request with that gateway error, None lets it go on. A filter may append rendered header
    lines to `req.resp_extra`, which every response to the request carries."""
    default_host_line: bytes = b""
    """`host:` line for clients that sent none (HTTP/1.0): the upstream's first target."""


def _render(ops: HeaderOps) -> bytes:
    return b"".join(b"%s: %s\r\n" % (n.encode("latin-1"), v.encode("latin-1")) for n, v in ops.set)


def _drops(base: frozenset[bytes], ops: HeaderOps) -> frozenset[bytes]:
    return base | {n.encode("latin-1") for n in ops.remove} | {n.encode("latin-1") for n, _ in ops.set}


def _plan(route: Route, config: Config) -> RoutePlan:
    upstream = config.upstreams[route.upstream]
    strip = -1
    if route.strip_prefix and route.match.prefix is not None:
        prefix = route.match.prefix.rstrip("/")
        strip = len(prefix.encode())
    return RoutePlan(
        index=route.index,
        upstream=route.upstream,
        strip_len=strip,
        request_drop=_drops(REQUEST_DROP, route.headers.request),
        request_set=_render(route.headers.request),
        response_drop=_drops(RESPONSE_DROP, route.headers.response),
        response_set=_render(route.headers.response),
        host_header=upstream.host_header.encode("latin-1") if upstream.host_header else None,
    )


def compile_routes(config: Config) -> tuple[RouteTrie, list[RoutePlan]]:
    trie = RouteTrie()
    plans = []
    for route in config.routes:
        plan = _plan(route, config)
        m = route.match
        trie.add(plan, path=m.path, prefix=m.prefix, methods=m.methods, host=m.host)
        plans.append(plan)
    return trie, plans
