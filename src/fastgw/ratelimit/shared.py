"""The master's side of local-scope rate limits: one shared-memory `BucketTable` per host.

The master maps and formats the table before it forks a generation (DESIGN §2), so every worker
inherits the same mapping and a limit of R/s holds for the whole host whatever the worker count.
A worker that dies and is replaced inherits the same mapping again, so nobody's bucket is reset.
A reload keeps the mapping as long as `rate_limit_table.capacity` is unchanged: limits that keep
their identity (`RateLimit.identity`) find their buckets where they were; a changed limit hashes
to other slots, so it starts with full buckets, and the old ones age out as free slots.
"""
from __future__ import annotations

import mmap

from fastgw._core import BucketTable
from fastgw.config.model import Config


class SharedBuckets:
    """State the master creates before forking and hands to every worker of a generation."""

    __slots__ = ("capacity", "buffer", "table")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer = mmap.mmap(-1, BucketTable.size_for(capacity), flags=mmap.MAP_SHARED)
        self.table = BucketTable(self.buffer, capacity, init=True)
        """The master's own view, for stats; workers attach their own with `attach()`."""

    def attach(self) -> BucketTable:
        """A worker's view of the table (after fork: the mapping is inherited, not copied)."""
        return BucketTable(self.buffer, self.capacity, init=False)

    def stats(self) -> dict[str, int]:
        """Occupancy for the admin API; scans the table, so not for the request path."""
        return self.table.stats()


def shared_buckets(config: Config, previous: SharedBuckets | None) -> SharedBuckets | None:
    """The bucket table for a generation running `config`: `previous` when it still fits (same
    capacity), a fresh one when not, None when no limit of `config` is local."""
    if not any(limit.scope == "local" for limit in config.rate_limits.values()):
        return None
    capacity = config.rate_limit_table.capacity
    if previous is not None and previous.capacity == capacity:
        return previous
    return SharedBuckets(capacity)
