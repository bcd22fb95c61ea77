"""The master's side of metrics: one shared-memory table per worker generation, and the hub that
sums them (and what retired generations counted) for a scrape.

Each generation's table has one row per worker slot (`Layout.width` int64 values), mapped by the
master before the first fork, so every worker of the generation, and every worker that replaces
one, writes the same pages. Only the slot's worker writes its row; the master only reads (a copy
of the mapping's bytes), so a scrape never waits for a worker and a worker never waits for a
scrape. Counters are summed over every slot; gauges only over slots whose worker is alive.

Across reloads: the hub keeps each generation's table until its last worker has exited, then
adds its counters to `retired` (keyed by metric and labels, not by offset), so counters keep
growing over reloads even when routes move, and histograms keep their buckets.
"""

from __future__ import annotations

import mmap
import time
from array import array
from collections import Counter
from collections.abc import Collection, Iterable
from typing import Any

from fastgw._proxy import LATENCY_BOUNDS, METHOD_CLASSES, METRICS_LAYOUT, STATUS_CLASSES
from fastgw.config.model import Config

from .layout import ROUTE_STRIDE, TARGET_COUNTERS, TARGET_GAUGES, UNROUTED, WORKER_GAUGES, Layout

Key = tuple[Any, ...]

_L = METRICS_LAYOUT
NBUCKETS = len(LATENCY_BOUNDS) + 1


class SharedMetrics:
    """The metrics table of one worker generation."""

    __slots__ = ("layout", "slots", "generation", "mm", "buckets")

    def __init__(self, config: Config, slots: int, generation: int, buckets: Any = None) -> None:
        self.layout = Layout(config)
        self.slots = slots
        self.generation = generation
        self.mm = mmap.mmap(-1, max(slots * self.layout.width, 1) * 8, flags=mmap.MAP_SHARED)
        self.buckets = buckets
        """The generation's rate-limit state (its counters are summed and retired with these)."""

    def row(self, slot: int) -> memoryview:
        """The int64 row of `slot`, for the worker of that slot (never called in the master: an
        exported view would keep the mapping from being closed)."""
        width = self.layout.width
        return memoryview(self.mm).cast("q")[slot * width : (slot + 1) * width]

    def rows(self) -> list[array]:
        """A copy of every slot's row."""
        data = array("q")
        data.frombytes(self.mm[: self.slots * self.layout.width * 8])
        width = self.layout.width
        return [data[s * width : (s + 1) * width] for s in range(self.slots)]

    def counters(self, rows: list[array]) -> Counter[Key]:
        """Every counter of the generation summed over its slots, keyed by metric and labels."""
        lay = self.layout
        total = [sum(col) for col in zip(*rows, strict=True)] if rows else [0] * lay.width
        out: Counter[Key] = Counter()
        methods, classes = _L["methods"], _L["classes"]
        for r, route in enumerate([*lay.routes, UNROUTED]):
            base = r * ROUTE_STRIDE
            for m in range(methods):
                for c in range(classes):
                    n = total[base + _L["requests"] + m * classes + c]
                    if n:
                        out["requests", route, METHOD_CLASSES[m], STATUS_CLASSES[c]] = n
            for kind, at, at_sum in (("duration", _L["duration"], _L["duration_sum"]),
                                     ("upstream", _L["upstream"], _L["upstream_sum"])):
                counts = total[base + at : base + at + NBUCKETS]
                if any(counts):
                    for i, n in enumerate(counts):
                        out[kind, route, i] = n
                    out[kind + "_sum", route] = total[base + at_sum]
            for name in ("bytes", "retries"):
                if total[base + _L[name]]:
                    out[name, route] = total[base + _L[name]]
        for i, upstream in enumerate(lay.upstreams):
            if total[lay.retries_at + i]:
                out["upstream_retries", upstream] = total[lay.retries_at + i]
        for t, (upstream, target) in enumerate(lay.targets):
            base = lay.target_offset(t)
            for i, name in enumerate(TARGET_COUNTERS):
                out["target", upstream, target, name] = total[base + i]
        for name, (group, at, instances) in lay.groups.items():
            for k, instance in enumerate(instances):
                for i, counter in enumerate(group.counters):
                    out["stat", name, instance, counter] = total[at + k * group.width + i]
        if self.buckets is not None:
            for limit, values in self.buckets.totals().items():
                for counter, n in values.items():
                    out["ratelimit", limit, counter] = n
        return out

    def gauges(self, rows: list[array], live: Collection[int]) -> Counter[Key]:
        """Gauges of the slots in `live` (slots with a running worker): per target summed, per
        worker as they are."""
        lay = self.layout
        out: Counter[Key] = Counter()
        for slot in live:
            row = rows[slot]
            for t, (upstream, target) in enumerate(lay.targets):
                base = lay.target_offset(t) + len(TARGET_COUNTERS)
                for i, name in enumerate(TARGET_GAUGES):
                    out["target", upstream, target, name] += row[base + i]
            values = dict(zip(WORKER_GAUGES, row[lay.worker_at : lay.worker_at + len(WORKER_GAUGES)], strict=True))
            out["connections", str(self.generation), str(slot)] = values["connections"]
        return out

    def close(self) -> None:
        self.mm.close()


class MetricsHub:
    """The master's metrics: the tables of the generations that still have workers, what retired
    generations counted, and the master's own counters (restarts, reloads)."""

    def __init__(self) -> None:
        self.tables: dict[int, SharedMetrics] = {}
        self.retired: Counter[Key] = Counter()
        self.restarts = 0
        """Workers that exited unexpectedly and were replaced."""
        self.reloads: Counter[str] = Counter()
        """Reload outcomes: `ok`, `failed`."""
        self.started = time.time()

    def start(self, config: Config, slots: int, generation: int, buckets: Any = None) -> SharedMetrics:
        table = SharedMetrics(config, slots, generation, buckets)
        self.tables[generation] = table
        return table

    def retire(self, alive: Iterable[int]) -> None:
        """Folds the tables of generations in none of `alive` (generation numbers that still have
        a worker, or are serving or starting) into `retired`."""
        keep = set(alive)
        for number in [n for n in self.tables if n not in keep]:
            table = self.tables.pop(number)
            self.retired.update(table.counters(table.rows()))
            table.close()

    def snapshot(self, live: dict[int, dict[int, int]]) -> tuple[Counter[Key], Counter[Key]]:
        """(counters, gauges) now: counters over retired and current tables; gauges of the slots
        in `live` (generation -> {slot: pid} of running workers)."""
        counters: Counter[Key] = Counter(self.retired)
        gauges: Counter[Key] = Counter()
        for number, table in self.tables.items():
            rows = table.rows()
            counters.update(table.counters(rows))
            slots = live.get(number)
            if slots:
                gauges.update(table.gauges(rows, slots))
        return counters, gauges
