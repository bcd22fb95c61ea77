"""Builds each route's filter chain once per worker (DESIGN §3), from the features the route uses.

A feature contributes filters through one builder here: `(runtime, route) -> filter | None`. The
chain sorts what the builders return by phase, so the order of `BUILDERS` decides only between
filters of the same phase. A filter with a request phase goes into `plan.request_filters`, one
with a response phase into `plan.response_filters` (a filter may be both); a RESPOND-phase filter
is the plan's terminal responder. A new feature is one builder function and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastgw._proxy import AccessFilter, CorsFilter, Filter, FixedResponder, Redirector, Reply, as_filter
from fastgw.aggregate.responder import route_aggregate_responder
from fastgw.bridge import route_bridge_responder
from fastgw.cache import route_cache_filter
from fastgw.compress import route_compress_filter
from fastgw.config.model import Access, Route
from fastgw.ratelimit.build import route_rate_limit_filter
from fastgw.tracing import route_trace_filter

from . import RequestPhase

Builder = Callable[[Any, Route], Any]


def access_filter(access: Access | None) -> AccessFilter | None:
    return AccessFilter(access.allow, access.deny) if access is not None else None


def _global_access(rt: Any, route: Route) -> Any:
    """The top-level `access`, one filter object for every route (it holds no per-route state);
    listed before the route's own, so both must let a client through."""
    return rt.global_access


def _route_access(rt: Any, route: Route) -> Any:
    return access_filter(route.access)


def _cors(rt: Any, route: Route) -> Any:
    cors = route.cors
    if cors is None:
        return None
    return CorsFilter(cors.origins, cors.methods, cors.headers, cors.expose_headers, cors.credentials, cors.max_age)


def _auth(rt: Any, route: Route) -> Any:
    auth = getattr(rt, "auth", None)
    return auth.route_filter(route) if auth is not None and route.auth else None


def _rate_limit(rt: Any, route: Route) -> Any:
    return route_rate_limit_filter(rt.rate_limits, route)


def _respond(rt: Any, route: Route) -> Any:
    respond = route.respond
    if respond is None:
        return None
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in respond.headers]
    return FixedResponder(Reply(respond.status, headers, respond.body))


def _redirect(rt: Any, route: Route) -> Any:
    redirect = route.redirect
    return Redirector(redirect.to, redirect.status) if redirect is not None else None


def _aggregate(rt: Any, route: Route) -> Any:
    return route_aggregate_responder(rt, route)


def _bridge(rt: Any, route: Route) -> Any:
    return route_bridge_responder(rt, route)


def _compress(rt: Any, route: Route) -> Any:
    return route_compress_filter(route)


def _cache(rt: Any, route: Route) -> Any:
    return route_cache_filter(rt, route)


BUILDERS: tuple[Builder, ...] = (
    route_trace_filter, _global_access, _route_access, _cors, _auth,
    _rate_limit, _respond, _redirect, _aggregate, _bridge, _compress, _cache,
)


def attach_chains(rt: Any) -> None:
    """Sets the request filters, response filters and responder of every plan of `rt`."""
    for route, plan in zip(rt.config.routes, rt.plans, strict=True):
        filters: list[Filter] = [as_filter(f) for build in BUILDERS if (f := build(rt, route)) is not None]
        responders = [f for f in filters if f.request_phase == RequestPhase.RESPOND]
        if len(responders) > 1:
            raise ValueError(f"route {route.index} has more than one responder: {[f.name for f in responders]}")
        plan.responder = responders[0] if responders else None
        plan.request_filters = tuple(
            sorted(
                (f for f in filters if f.request_phase and f.request_phase != RequestPhase.RESPOND),
                key=lambda f: f.request_phase,
            )
        )
        plan.response_filters = tuple(sorted((f for f in filters if f.response_phase), key=lambda f: f.response_phase))
