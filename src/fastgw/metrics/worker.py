"""A worker's side of metrics: the compiled recorder over its row, the blocks features count in,
and the tick that publishes what Python objects count (targets) and the worker's gauges."""

from __future__ import annotations

from typing import Any

from fastgw._proxy import MetricsRecorder, StatBlock, WallClock

from .layout import ERROR_KINDS, TARGET_COUNTERS, TARGET_GAUGES, WORKER_GAUGES
from .registry import StatGroup
from .shared import SharedMetrics


class WorkerMetrics:
    """Built once per worker (in its Runtime). `recorder` is what the exchange calls per request;
    `clock` stamps access-log records and spans; `tick` runs every sweeper tick."""

    __slots__ = ("shared", "layout", "clock", "recorder", "enabled", "_row", "_targets", "_base", "_worker_at")

    def __init__(self, rt: Any, shared: SharedMetrics | None, slot: int = 0) -> None:
        config = rt.config
        if shared is None:
            # A runtime built outside the master (tests, embedding): a table of its own.
            shared = SharedMetrics(config, 1, rt.generation)
            slot = 0
        self.shared = shared
        self.layout = lay = shared.layout
        self.clock = WallClock()
        self.enabled = config.metrics.enabled
        row = shared.row(slot)
        self._row = row
        groups = {rt.groups[name]: i for i, name in enumerate(lay.upstreams) if name in rt.groups}
        self.recorder = MetricsRecorder(
            self.clock, row if self.enabled else None, len(lay.routes), lay.retries_at, groups
        )
        index = {(name, pool.label): pool for name, group in rt.groups.items() for pool in group.pools}
        self._targets = [(index.get(key), lay.target_offset(t)) for t, key in enumerate(lay.targets)]
        # What the slot's earlier workers published: this worker's counts go on top (a replaced
        # worker's counts are kept, as in fastgw.ratelimit).
        self._base = [[row[off + i] for i in range(len(TARGET_COUNTERS))] for _, off in self._targets]
        self._worker_at = lay.worker_at

    def block(self, group: StatGroup) -> StatBlock:
        """This worker's counters of a declared group (see fastgw.metrics.registry)."""
        entry = self.layout.groups.get(group.name)
        if entry is None:
            raise KeyError(
                f"stat group {group.name!r} is not in the metrics layout: declare it at module level in a module "
                "the master imports (one the feature's chain builder imports)"
            )
        _, offset, instances = entry
        return StatBlock(self._row[offset : offset + len(instances) * group.width])

    def tick(self, wall: float, mono: float, connections: int) -> None:
        """Every sweeper tick: re-anchor the wall clock, publish targets and gauges."""
        self.clock.tick(wall, mono)
        if not self.enabled:
            return
        row = self._row
        ncounters = len(TARGET_COUNTERS)
        for (pool, off), base in zip(self._targets, self._base, strict=True):
            if pool is None:
                continue
            errors = pool.errors
            values = (pool.completed, pool.failed, pool.ejected_total, pool.queued, pool.queue_full,
                      pool.queue_timeouts, *(errors.get(k, 0) for k in ERROR_KINDS))
            for i, value in enumerate(values):
                row[off + i] = base[i] + value
            row[off + ncounters] = pool.active
            row[off + ncounters + 1] = 1 if pool.ejected_until else 0
            row[off + ncounters + 2] = pool.waiting
            row[off + ncounters + 3] = len(pool.busy) + len(pool.idle) + pool.connecting
        row[self._worker_at + WORKER_GAUGES.index("connections")] = connections

    def close(self, wall: float, mono: float) -> None:
        """At exit: the counters' last values are published (a worker that drains fast would
        otherwise take up to a tick of them along), and this worker's gauges no longer hold."""
        self.tick(wall, mono, 0)
        row = self._row
        for _, off in self._targets:
            for i in range(len(TARGET_GAUGES)):
                row[off + len(TARGET_COUNTERS) + i] = 0
        row[self._worker_at] = 0
