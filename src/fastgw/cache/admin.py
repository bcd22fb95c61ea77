"""The admin API's cache endpoints (served by the master, fastgw.server.admin):

- `GET /cache`: occupancy (`capacity`, `size` in use, `entries`, ...), the counters summed over
  every process (`hits`, `misses`, `stale`, `stores`, ...) and `hit_ratio`; `?keys=N` adds up to N
  keys, most recently used first.
- `POST /cache/purge?key=KEY`: frees the entry of exactly KEY (and the variants of a URL that
  varies); `?prefix=PREFIX` every key starting with PREFIX. Keys read `GET http://host/path?query`
  (`docs/caching.md`). Answers `{"purged": n}`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from fastgw.server.master import Master

MAX_KEYS = 10_000


def _cache(master: Master) -> Any:
    cur = master.current
    return cur.cache if cur is not None else None


def cache_view(master: Master, query: bytes) -> tuple[int, dict[str, object]]:
    cache = _cache(master)
    if cache is None:
        return 200, {"enabled": False}
    out: dict[str, object] = {"enabled": True, **cache.stats()}
    args = parse_qs(query.decode("latin-1"))
    if "keys" in args:
        try:
            limit = int(args["keys"][0])
        except ValueError:
            return 400, {"error": "keys must be a number"}
        out["keys"] = [k.decode("latin-1") for k in cache.keys(max(0, min(limit, MAX_KEYS)))]
    return 200, out


def cache_purge(master: Master, query: bytes) -> tuple[int, dict[str, object]]:
    cache = _cache(master)
    if cache is None:
        return 404, {"error": "no route caches responses"}
    args = parse_qs(query.decode("latin-1"), keep_blank_values=True)
    keys, prefixes = args.get("key", []), args.get("prefix", [])
    if len(keys) + len(prefixes) != 1:
        return 400, {"error": "give exactly one key=KEY or prefix=PREFIX (URL-encoded)"}
    if keys:
        return 200, {"purged": cache.purge(key=keys[0].encode("latin-1"))}
    if not prefixes[0]:
        return 400, {"error": "an empty prefix would purge everything: say prefix=GET%20 for that"}
    return 200, {"purged": cache.purge(prefix=prefixes[0].encode("latin-1"))}
