"""The master's side of the response cache: the host's shared store, created before forking.

- One mapping of `cache_size` bytes (the index and everything else included), formatted by the
  master before the first fork of a generation that has a cached route (DESIGN §2), so every
  worker, and every worker that replaces one, finds the same entries: a response stored by one
  worker is a hit in all others.
- A reload keeps the mapping, and every entry in it, while `cache_size` is unchanged; a changed
  size starts an empty cache (the old generation keeps its own until its workers are gone).
- The master keeps its own view for the admin API (`GET /cache`, purges) and, after reaping a
  worker, frees what that worker was writing (`release_dead`): a worker killed mid-store leaves
  an unpublished entry, never a half-written one that could be served.
"""
from __future__ import annotations

import mmap

from fastgw._proxy import CacheStore
from fastgw.config.model import Config

STAT_ROWS = 64
"""Counter rows in the mapping (cache_shm.h, FGC_STAT_ROWS): one per worker slot, the last the
master's."""
MASTER_ROW = STAT_ROWS - 1


class SharedCache:
    """The host's response cache: the mapping, and the master's view of it."""

    __slots__ = ("size", "buffer", "store")

    def __init__(self, size: int, previous: SharedCache | None) -> None:
        self.size = size
        if previous is not None and previous.size == size:
            self.buffer, self.store = previous.buffer, previous.store
        else:
            self.buffer = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
            self.store = CacheStore(self.buffer, init=True, row=MASTER_ROW)

    def attach(self, slot: int) -> CacheStore:
        """A worker's view (after fork: the mapping is inherited, not copied); its counters go to
        the slot's row."""
        return CacheStore(self.buffer, init=False, row=slot % MASTER_ROW)

    def stats(self) -> dict[str, object]:
        return dict(self.store.stats())

    def purge(self, *, key: bytes | None = None, prefix: bytes | None = None) -> int:
        return int(self.store.purge(key=key, prefix=prefix))

    def keys(self, limit: int) -> list[bytes]:
        return list(self.store.keys(limit))

    def release_dead(self, pid: int) -> int:
        return int(self.store.release_dead(pid))


def shared_cache(config: Config, previous: SharedCache | None) -> SharedCache | None:
    """The cache for a generation running `config` (None when no route caches), reusing
    `previous` when its size is unchanged."""
    if not any(route.cache is not None for route in config.routes):
        return None
    return SharedCache(config.cache_size, previous)
