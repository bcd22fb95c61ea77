"""`cache_size` (the host's response cache, shared by all workers) and a route's `cache` (DESIGN §8,
docs/caching.md): which responses the route stores and for how long.

`cache_size` is the whole shared mapping, its index included: the cache never uses more. A route's
`cache` may be `{}` (store only responses that state their own freshness) or name:
- `ttl`: how long responses without explicit freshness stay fresh (200, 203, 300, 301, 308 only);
- `max_object`: larger bodies stream through unstored (default 1MiB or cache_size / 4 if less; at
  most cache_size / 4);
- `lock_timeout`: how long a miss waits for another request fetching the same key (default 5s);
- `stale_while_revalidate`, `stale_if_error`: RFC 5861 windows for responses that give none.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..model import DEFAULT_CACHE_SIZE, DEFAULT_MAX_OBJECT, Route, RouteCache
from ..report import Context, Report, fields, section
from ..validators import size_at_least, validate_duration
from ..yamlsrc import Path

__all__ = ["MIN_CACHE_SIZE", "validate_cache_size", "validate_route_cache"]

MIN_CACHE_SIZE = 1024 * 1024
MAX_CACHE_SIZE = 1 << 40
"""1 TiB: block numbers are 32-bit (512-byte blocks would allow 2 TiB)."""
MAX_LOCK_TIMEOUT = 60.0


def validate_cache_size(report: Report, path: Path, value: Any, context: Context) -> int:
    return report.check(path, value, _cache_size, DEFAULT_CACHE_SIZE)


def _cache_size(value: Any) -> int:
    size = size_at_least(MIN_CACHE_SIZE, "1MiB")(value)
    if size > MAX_CACHE_SIZE:
        raise ValueError(f"must be at most 1024GiB, got {value!r}")
    return size


def _lock_timeout(value: Any) -> float:
    seconds = validate_duration(value)
    if seconds > MAX_LOCK_TIMEOUT:
        raise ValueError(f"must be at most {MAX_LOCK_TIMEOUT:.0f}s (a miss waits this long at most), got {value!r}")
    return seconds


def validate_route_cache(report: Report, path: Path, value: Any, route: Route | None, context: Context) -> Route | None:
    """A route's `cache` (`route` with it set); nothing when the route has none."""
    if not isinstance(value, dict) or "cache" not in value:
        return route
    cache_path = (*path, "cache")
    validators = {
        "ttl": validate_duration,
        "max_object": size_at_least(1, "1 byte"),
        "lock_timeout": _lock_timeout,
        "stale_while_revalidate": validate_duration,
        "stale_if_error": validate_duration,
    }
    present = section(report, cache_path, value["cache"], validators)
    if present is None:
        return None
    kwargs = fields(report, cache_path, present, validators)
    if len(kwargs) != len(present):
        return None
    size = context.validated.get("cache_size", DEFAULT_CACHE_SIZE)
    if "max_object" not in kwargs:
        kwargs["max_object"] = min(DEFAULT_MAX_OBJECT, size // 4)
    elif kwargs["max_object"] > size // 4:
        report.error((*cache_path, "max_object"), f"must be at most a quarter of cache_size ({size // 4} bytes), "
                                                  f"got {present['max_object']!r}")
        return None
    if route is None:
        return None
    if route.respond is not None or route.redirect is not None or route.aggregate:
        report.error(cache_path, "this route answers itself (respond, redirect or aggregate): only upstream "
                                 "responses are cached")
        return None
    return dataclasses.replace(route, cache=RouteCache(**kwargs))
