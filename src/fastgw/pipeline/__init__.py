"""The request pipeline (DESIGN §3): the phases every gateway feature plugs into, and the
contract of a filter written in Python.

A request runs its route's request filters in phase order (ACCESS, CORS, AUTH, RATE_LIMIT, CACHE,
TRANSFORM), then a terminal phase (the upstream exchange, or a local responder), then its response
filters in phase order (TRANSFORM, HIDE, COMPRESS, STORE), then exactly one log record. Chains are
built once per route at config load (`fastgw.pipeline.chain`); docs/architecture.md draws it.

A Python filter is any object with the attributes below (`RequestFilter`, `ResponseFilter`); it is
wrapped once, at build time, into the compiled `PyFilter`. Compiled filters subclass
`fastgw._proxy.Filter` and implement the same phases as cdef methods.
"""

from __future__ import annotations

from collections.abc import Awaitable
from enum import IntEnum
from typing import Protocol

from fastgw._proxy import (
    FILTER_RESULTS,
    REQUEST_PHASES,
    RESPONSE_PHASES,
    Filter,
    PyFilter,
    Reply,
    Request,
    RequestKey,
    ResponseHead,
    as_filter,
)

RequestPhase = IntEnum("RequestPhase", REQUEST_PHASES)
"""When a request filter runs; lower first. RESPOND is the terminal local responder."""
ResponsePhase = IntEnum("ResponsePhase", RESPONSE_PHASES)
"""When a response filter runs; lower first."""
FilterResult = IntEnum("FilterResult", FILTER_RESULTS)


class RequestFilter(Protocol):
    """`on_request` returns None (go on), a `Reply` (answer now), or an awaitable resolving to
    either (the request waits, other requests do not). It may read the request, set
    `req.identity`, `req.claims` and `req.vars`, call `req.set_upstream_header`,
    `req.remove_upstream_header` and `req.add_response_header`. A filter that never awaits costs
    no coroutine."""

    request_phase: int

    def on_request(self, req: Request) -> Reply | None | Awaitable[Reply | None]: ...


class ResponseFilter(Protocol):
    """`on_response` edits the head (`head.status`, `head.headers`, `get`/`set`/`add`/`remove`)
    and may call `head.stream_through(self)` to see the body: then `on_body(req, data) -> bytes`
    for each piece and `on_end(req) -> bytes` at its end (both optional attributes)."""

    response_phase: int

    def on_response(self, req: Request, head: ResponseHead) -> None: ...


__all__ = [
    "Filter",
    "FilterResult",
    "PyFilter",
    "Reply",
    "Request",
    "RequestFilter",
    "RequestKey",
    "RequestPhase",
    "ResponseFilter",
    "ResponseHead",
    "ResponsePhase",
    "as_filter",
]
