"""The response cache (issue 11, docs/caching.md): one cache per host in shared memory, set up by the
master (`shared`), attached by every worker, and used by each cached route's filter (`build`)."""

from .build import attach_cache, route_cache_filter
from .shared import SharedCache, shared_cache

__all__ = ["SharedCache", "attach_cache", "route_cache_filter", "shared_cache"]
