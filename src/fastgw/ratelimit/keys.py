"""Which bytes of a request name the bucket it is charged to: a limit's `key`.

Keys are the pipeline's request keys (`fastgw._proxy.RequestKey`), the same ones hash balancing
and sticky splits use, built once per limit when the worker is built:

- `ip`: the client address, resolved through `trusted_proxies` (the nearest X-Forwarded-For
  address that is not a trusted proxy), as nginx's realip module feeds `limit_req`.
- `route`: one bucket per route (a route's key is fixed, so its bucket is resolved at build time:
  `route_key`).
- `header:NAME`, `claim:NAME`, `consumer`: the first value of that header, a claim of the verified
  token, the authenticated consumer. A request without the value is charged to its client
  address instead, in a namespace of its own (a NUL byte, which no header value can contain,
  before the address). Omitting a header must never be a way around a limit: nginx's rule (an
  empty key is not limited) would make a header-keyed limit optional for exactly the clients it
  is meant to hold back. Kong falls back to the IP likewise.
"""

from __future__ import annotations

from typing import Any

from fastgw._proxy import RequestKey
from fastgw.config.model import Route

FALLBACK_PREFIX = b"\0"


def request_key(key: str) -> RequestKey:
    """The request key of a configured limit key (`ip`, `route`, `header:NAME`, `claim:NAME`,
    `consumer`)."""
    kind, _, name = key.partition(":")
    return RequestKey(kind, name) if name else RequestKey(kind)


def limit_key(rkey: RequestKey, req: Any) -> bytes:
    """The key bytes `req` is charged to under `rkey` (not `route`), with the client-address
    fallback."""
    value = rkey.of(req)
    if value is None:
        return FALLBACK_PREFIX + req.client_address  # type: ignore[no-any-return]
    return value  # type: ignore[no-any-return]


def route_key(route: Route) -> bytes:
    """A route's bucket key: what it matches, not its position, so that reordering routes in the
    file keeps their buckets."""
    m = route.match
    pattern = f"path {m.path}" if m.path is not None else f"prefix {m.prefix}"
    methods = ",".join(m.methods) if m.methods else "*"
    return f"{m.host or '*'} {pattern} {methods}".encode()
