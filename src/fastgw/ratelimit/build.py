"""Builds a worker's rate limits from the configuration and attaches the filters to its route
plans: once per worker, when its runtime is built, never per request."""
from __future__ import annotations

from typing import Any

from fastgw.config.model import Config

from .filter import Decider, LocalLimit, route_filter
from .shared import SharedBuckets


class WorkerRateLimits:
    """One worker's limits by name, for stats (per worker: see docs/operations.md)."""

    __slots__ = ("limits", "buckets")

    def __init__(self, limits: dict[str, Decider], buckets: SharedBuckets | None) -> None:
        self.limits = limits
        self.buckets = buckets

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: limit.stats() for name, limit in self.limits.items()}


def attach_rate_limits(rt: Any, buckets: SharedBuckets | None) -> WorkerRateLimits | None:
    """Builds every configured limit and appends one filter (`route_filter`) to the filters of each
    route that lists limits. `buckets` is what the master set up before forking; without it (a
    runtime built outside the master, as in tests) local limits get a table of this process."""
    config: Config = rt.config
    if not config.rate_limits:
        return None
    needs_table = any(spec.scope == "local" for spec in config.rate_limits.values())
    if buckets is None and needs_table:
        buckets = SharedBuckets(config.rate_limit_table.capacity)
    table = buckets.attach() if buckets is not None and needs_table else None
    limits: dict[str, Decider] = {}
    for name, spec in config.rate_limits.items():
        if spec.scope == "local":
            assert table is not None
            limits[name] = LocalLimit(spec, table, config.routes)
        else:
            from .cluster import ClusterLimit

            limits[name] = ClusterLimit(spec, rt.loop, config.routes)
    for plan in rt.plans:
        names = config.routes[plan.index].rate_limit
        if names:
            plan.filters = (*plan.filters, route_filter([limits[n] for n in names]))
    return WorkerRateLimits(limits, buckets)
