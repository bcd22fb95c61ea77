"""A worker's side of the response cache: its view of the host's store, and each cached route's
filter (built once per worker by the pipeline's chain builder, never per request)."""
from __future__ import annotations

from typing import Any

from fastgw._proxy import CacheFilter, CacheStore
from fastgw.config.model import Route

from .shared import SharedCache


def attach_cache(rt: Any, shared: SharedCache | None, slot: int = 0) -> CacheStore | None:
    """The worker's view of the store the master set up (None when no route caches). Without
    `shared` (a runtime built outside the master, as in tests) this process gets a cache of its
    own."""
    config = rt.config
    if not any(route.cache is not None for route in config.routes):
        return None
    if shared is None:
        shared = SharedCache(config.cache_size, None)
    return shared.attach(slot)


def route_cache_filter(rt: Any, route: Route) -> CacheFilter | None:
    """The CacheFilter of a route with `cache` (request phase CACHE, response phase STORE)."""
    cache = route.cache
    store = getattr(rt, "cache", None)
    if cache is None or store is None:
        return None
    # The route's response `set` headers are added to every reply, hits included: never stored.
    strip = tuple(name.lower().encode("latin-1") for name, _ in route.headers.response.set)
    return CacheFilter(
        store,
        ttl=cache.ttl,
        max_object=cache.max_object,
        lock_timeout=cache.lock_timeout,
        stale_while_revalidate=cache.stale_while_revalidate,
        stale_if_error=cache.stale_if_error,
        strip=strip,
        client=getattr(rt, "client", None),
    )
