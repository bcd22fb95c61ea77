"""Builds a worker's rate limits from the configuration and attaches the filters to its route
plans: once per worker, when its runtime is built, never per request."""
from __future__ import annotations

from typing import Any

from fastgw.config.model import Config, Route

from .filter import Decider, LocalLimit, route_filter
from .shared import COUNTERS, SharedBuckets

PUBLISH = 0.5
"""Seconds between two copies of a worker's counters into its row of the shared counters."""


class WorkerRateLimits:
    """One worker's limits by name. The limits count in plain attributes (nothing shared is
    touched per request); `copy` runs every PUBLISH seconds and copies them to the worker's row,
    on top of what the slot's previous worker left there, so a replaced worker's counts are kept."""

    __slots__ = ("limits", "buckets", "_row", "_base")

    def __init__(self, limits: dict[str, Decider], buckets: SharedBuckets, slot: int) -> None:
        self.limits = limits
        self.buckets = buckets
        self._row = buckets.row(slot)
        self._base = self._row.tolist()

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: limit.stats() for name, limit in self.limits.items()}

    def copy(self) -> None:
        """The counters into the row now (also once more as the worker exits, so that a worker
        that drains within PUBLISH of its last decisions does not take them along)."""
        row, base = self._row, self._base
        i = 0
        for limit in self.limits.values():
            for name in COUNTERS:
                row[i] = base[i] + getattr(limit, name, 0)
                i += 1


def attach_rate_limits(rt: Any, buckets: SharedBuckets | None, slot: int = 0) -> WorkerRateLimits | None:
    """Builds every configured limit of a worker (`route_rate_limit_filter` then gives each
    route its filter). `buckets` is what the master set up before forking, `slot` the worker's
    slot; without `buckets` (a runtime built outside the master, as in tests) this process gets
    state of its own."""
    config: Config = rt.config
    if not config.rate_limits:
        return None
    if buckets is None:
        buckets = SharedBuckets(config, None)
    table = buckets.attach()
    limits: dict[str, Decider] = {}
    for name, spec in config.rate_limits.items():
        if spec.scope == "local":
            assert table is not None
            limits[name] = LocalLimit(spec, table, config.routes)
        else:
            from .cluster import SWEEP, ClusterLimit

            limits[name] = cluster = ClusterLimit(spec, rt.loop, config.routes)
            rt.every(SWEEP, cluster.sweep)
    rate_limits = WorkerRateLimits(limits, buckets, slot)
    rt.every(PUBLISH, rate_limits.copy)
    return rate_limits


def route_rate_limit_filter(rate_limits: WorkerRateLimits | None, route: Route) -> Any:
    """The RATE_LIMIT-phase filter of `route`, or None when it lists no limits."""
    if not route.rate_limit or rate_limits is None:
        return None
    return route_filter([rate_limits.limits[n] for n in route.rate_limit])
