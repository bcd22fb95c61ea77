"""The master's side of rate limits: the state it sets up before forking a generation.

- The host's bucket table (local scope): one shared-memory `BucketTable`, mapped and formatted
  before the first fork (DESIGN §2), so every worker, and every worker that replaces one, decides
  against the same buckets and a limit of R/s holds for the whole host whatever the worker count.
  A reload keeps the mapping as long as `rate_limit_table.capacity` is unchanged: limits that keep
  their identity (`RateLimit.identity`) find their buckets where they were; a changed limit hashes
  to other slots, so it starts with full buckets, and the old ones age out as free slots.
- The generation's counters: one row per worker slot, each limit's `COUNTERS` in it, written only
  by the slot's worker (so no atomics are needed) and summed by the master for the admin API.
"""
from __future__ import annotations

import mmap

from fastgw._core import BucketTable
from fastgw.config.model import Config

COUNTERS = ("allowed", "refused", "shadow_refused", "fail_open", "fail_closed", "redis_calls", "redis_errors")
"""Every limit's counters (`ratelimit.<name>`), in the order of a counters row."""


class SharedBuckets:
    """Rate-limit state the master creates before forking and hands to every worker of a
    generation."""

    __slots__ = ("capacity", "buffer", "table", "names", "_counters", "_rows")

    def __init__(self, config: Config, previous: SharedBuckets | None) -> None:
        capacity = config.rate_limit_table.capacity
        self.capacity = capacity
        self.buffer: mmap.mmap | None = None
        self.table: BucketTable | None = None
        """The master's own view of the bucket table, for stats; workers attach their own."""
        if any(limit.scope == "local" for limit in config.rate_limits.values()):
            if previous is not None and previous.table is not None and previous.capacity == capacity:
                self.buffer, self.table = previous.buffer, previous.table
            else:
                self.buffer = mmap.mmap(-1, BucketTable.size_for(capacity), flags=mmap.MAP_SHARED)
                self.table = BucketTable(self.buffer, capacity, init=True)
        self.names = tuple(config.rate_limits)
        width = len(self.names) * len(COUNTERS)
        self._counters = mmap.mmap(-1, max(config.workers * width, 1) * 8, flags=mmap.MAP_SHARED)
        view = memoryview(self._counters).cast("q")
        self._rows = [view[slot * width : (slot + 1) * width] for slot in range(config.workers)]

    def attach(self) -> BucketTable | None:
        """A worker's view of the table (after fork: the mapping is inherited, not copied)."""
        if self.buffer is None:
            return None
        return BucketTable(self.buffer, self.capacity, init=False)

    def row(self, slot: int) -> memoryview:
        """The counters row of a worker slot: `names` × `COUNTERS`, int64."""
        return self._rows[slot]

    def stats(self) -> dict[str, int] | None:
        """Occupancy of the bucket table (None without local limits). Scans the table: for the
        admin API, not the request path."""
        return self.table.stats() if self.table is not None else None

    def totals(self) -> dict[str, dict[str, int]]:
        """Each limit's counters summed over the generation's worker slots."""
        n = len(COUNTERS)
        sums = [sum(row[i] for row in self._rows) for i in range(len(self.names) * n)]
        return {name: dict(zip(COUNTERS, sums[k * n : (k + 1) * n], strict=True)) for k, name in enumerate(self.names)}


def shared_buckets(config: Config, previous: SharedBuckets | None) -> SharedBuckets | None:
    """The rate-limit state for a generation running `config` (None without rate limits),
    reusing the bucket table of `previous` when it still fits."""
    if not config.rate_limits:
        return None
    return SharedBuckets(config, previous)
