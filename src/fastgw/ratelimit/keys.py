"""Which bytes of a request name the bucket it is charged to: a limit's `key`.

A key function gets the client connection and the request exactly as a filter does and returns
the key bytes; it is chosen once per limit when the worker is built, so a request pays one call
(and, for `header:NAME`, one `Request.header` lookup, which builds no header list).

- `ip`: the client address (`proto.peer`); behind `trusted_proxies` that is the proxy's address,
  not the one in X-Forwarded-For, which the client may write.
- `route`: one bucket per route (a route's key is fixed, so its bucket is resolved at build time:
  `route_key`).
- `header:NAME`: the first value of that header. A request without it, or with an empty one, is
  charged to its client IP instead, in a namespace of its own (a NUL byte, which no header value
  can contain, before the IP). Omitting a header must never be a way around a limit: nginx's rule
  (an empty key is not limited) would make a header-keyed limit optional for exactly the clients it
  is meant to hold back. Kong falls back to the IP likewise.
- `claim:NAME` and `consumer` are keys of authenticated requests. They plug in here as two more
  key functions once routes can have `auth`: the auth filter runs before the rate-limit filter
  (DESIGN §3) and leaves the verified identity on the request, which these functions read. Until
  then the loader refuses them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastgw.config.model import Route

KeyFunction = Callable[[Any, Any], bytes]
"""(client connection, request) -> key bytes."""

FALLBACK_PREFIX = b"\0"


def client_ip(proto: Any, req: Any) -> bytes:
    return proto.peer  # type: ignore[no-any-return]


def header_value(name: bytes) -> KeyFunction:
    """The key function of `header:NAME` (`name` lower-case)."""

    def header_key(proto: Any, req: Any) -> bytes:
        value = req.header(name)
        if value:
            return value  # type: ignore[no-any-return]
        return FALLBACK_PREFIX + proto.peer

    return header_key


def key_function(key: str) -> KeyFunction | None:
    """The function for a configured key; None for `route`, whose keys are fixed (`route_key`)."""
    if key == "ip":
        return client_ip
    if key == "route":
        return None
    kind, _, name = key.partition(":")
    if kind == "header":
        return header_value(name.encode("latin-1"))
    raise ValueError(f"rate limit key {key!r} has no key function")


def route_key(route: Route) -> bytes:
    """A route's bucket key: what it matches, not its position, so that reordering routes in the
    file keeps their buckets."""
    m = route.match
    pattern = f"path {m.path}" if m.path is not None else f"prefix {m.prefix}"
    methods = ",".join(m.methods) if m.methods else "*"
    return f"{m.host or '*'} {pattern} {methods}".encode()
