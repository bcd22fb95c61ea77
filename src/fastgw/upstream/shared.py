"""Upstream state shared between processes through anonymous shared memory (DESIGN §2).

The master creates one `UpstreamShared` per worker generation, before forking, so the health
checker and every worker of that generation map the same pages:

- a **health table**, written only by the health checker: one state byte per checked target
  (workers read it once per tick; a byte write is atomic) and a detail record per target for the
  admin API;
- a **stats table**, one area per worker slot, written only by that slot's worker once per tick:
  attempts in flight, latency EWMA, ejection, so that `GET /upstreams` can show what each worker
  sees. Detail records may be read while being written; they are informational only.

Nothing here is touched on the request path.
"""
from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from fastgw.config.model import Address, Config, HealthCheck, Upstream, UpstreamTls

UNKNOWN, HEALTHY, UNHEALTHY = 0, 1, 2
"""Health states. A target is UNKNOWN until its first probe and is picked meanwhile."""
STATE_NAMES = ("unknown", "healthy", "unhealthy")

_HEALTH = struct.Struct("<IIiIdd")
"""successes, failures (both consecutive), last status (0: no response), probes, changed_at and
checked_at (wall-clock seconds, 0 for never)."""
_SLOT = struct.Struct("<iIdd")
"""pid, generation, updated (monotonic seconds), spare."""
_TARGET = struct.Struct("<iIIIIxxxxdd")
"""active, failures (consecutive), ejections, completed, failed, EWMA (s), ejected for (s)."""


def _align(n: int) -> int:
    return (n + 7) & ~7


@dataclass(frozen=True, slots=True)
class HealthEntry:
    """One actively checked target; `index` is its place in the health table."""

    index: int
    upstream: str
    address: Address
    host_header: str | None
    check: HealthCheck
    tls: UpstreamTls | None = None
    """Probes go over TLS, as requests do, when the upstream has `tls`."""

    @property
    def key(self) -> tuple[str, Address, HealthCheck]:
        """What must stay equal across a reload for the target to keep its health state."""
        return (self.upstream, self.address, self.check)


@dataclass(frozen=True, slots=True)
class HealthRecord:
    state: int
    successes: int
    failures: int
    last_status: int
    probes: int
    changed_at: float
    checked_at: float


def health_entries(config: Config) -> list[HealthEntry]:
    entries: list[HealthEntry] = []
    for name, upstream in config.upstreams.items():
        if upstream.health is not None:
            for target in upstream.targets:
                entries.append(
                    HealthEntry(len(entries), name, target.address, upstream.host_header, upstream.health, upstream.tls)
                )
    return entries


class HealthTable:
    """`n` state bytes, then `n` detail records."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._details = _align(max(n, 1))
        self.mm = mmap.mmap(-1, self._details + max(n, 1) * _HEALTH.size)

    def states(self) -> memoryview:
        """The state bytes, for a worker to keep and index (never call in the master: an
        exported view keeps the mapping from being closed)."""
        return memoryview(self.mm)[: self.n]

    def state(self, i: int) -> int:
        return self.mm[i]

    def write(self, i: int, record: HealthRecord) -> None:
        """Details first, then the state byte that workers act on."""
        _HEALTH.pack_into(
            self.mm, self._details + i * _HEALTH.size, record.successes, record.failures, record.last_status,
            record.probes, record.changed_at, record.checked_at,
        )
        self.mm[i] = record.state

    def read(self, i: int) -> HealthRecord:
        fields = _HEALTH.unpack_from(self.mm, self._details + i * _HEALTH.size)
        return HealthRecord(self.mm[i], *fields)

    def close(self) -> None:
        self.mm.close()


class StatsTable:
    """Per worker slot: a slot header, then one record per target of the generation."""

    def __init__(self, slots: int, targets: int) -> None:
        self.slots = slots
        self.targets = targets
        self._stride = _SLOT.size + targets * _TARGET.size
        self.mm = mmap.mmap(-1, max(slots * self._stride, 1))

    def slot_offset(self, slot: int) -> int:
        return slot * self._stride

    def target_offset(self, slot: int, target: int) -> int:
        return slot * self._stride + _SLOT.size + target * _TARGET.size

    def read_slot(self, slot: int) -> tuple[int, int, float]:
        pid, generation, updated, _ = _SLOT.unpack_from(self.mm, self.slot_offset(slot))
        return pid, generation, updated

    def read_target(self, slot: int, target: int) -> tuple[Any, ...]:
        return _TARGET.unpack_from(self.mm, self.target_offset(slot, target))

    def close(self) -> None:
        self.mm.close()


class GroupView:
    """One worker's window on the shared state of one upstream: the health state of each of its
    targets (None when the upstream has no active checks) and where to publish its stats."""

    __slots__ = ("states", "health_index", "mm", "slot_offset", "target_offsets", "pid", "generation")

    def __init__(
        self,
        states: memoryview | None,
        health_index: Sequence[int],
        stats: StatsTable,
        slot: int,
        target_index: Sequence[int],
        pid: int,
        generation: int,
    ) -> None:
        self.states = states
        self.health_index = list(health_index)
        self.mm = stats.mm
        self.slot_offset = stats.slot_offset(slot)
        self.target_offsets = [stats.target_offset(slot, t) for t in target_index]
        self.pid = pid
        self.generation = generation

    def publish(self, targets: Sequence[Any], now: float) -> None:
        mm = self.mm
        _SLOT.pack_into(mm, self.slot_offset, self.pid, self.generation, now, 0.0)
        for target, offset in zip(targets, self.target_offsets, strict=True):
            until = target.ejected_until
            _TARGET.pack_into(
                mm, offset, target.active, target.failures, target.ejected_total, target.completed & 0xFFFFFFFF,
                target.failed & 0xFFFFFFFF, target.ewma, until - now if until > now else 0.0,
            )


class UpstreamShared:
    """The shared upstream state of one worker generation."""

    def __init__(self, config: Config, slots: int, generation: int, previous: UpstreamShared | None = None) -> None:
        self.generation = generation
        self.entries = health_entries(config)
        self.health = HealthTable(len(self.entries)) if self.entries else None
        self._health_index = {(e.upstream, e.address): e.index for e in self.entries}
        self.target_index: dict[tuple[str, Address], int] = {}
        for name, upstream in config.upstreams.items():
            for target in upstream.targets:
                self.target_index[(name, target.address)] = len(self.target_index)
        self.stats = StatsTable(slots, len(self.target_index))
        if previous is not None:
            self._carry_over(previous)

    def _carry_over(self, previous: UpstreamShared) -> None:
        """Targets whose upstream, address and check are unchanged keep their health, so a
        reload neither resurrects a dead target nor sidelines a healthy one."""
        if self.health is None or previous.health is None:
            return
        old = {e.key: e.index for e in previous.entries}
        for entry in self.entries:
            index = old.get(entry.key)
            if index is not None:
                self.health.write(entry.index, previous.health.read(index))

    def view(self, upstream: Upstream, slot: int) -> GroupView:
        """The view of `upstream` for the worker of `slot` (call it in that worker)."""
        addresses = [t.address for t in upstream.targets]
        health_index = [self._health_index.get((upstream.name, a), -1) for a in addresses]
        states = None
        if self.health is not None and upstream.health is not None:
            states = self.health.states()
        target_index = [self.target_index[(upstream.name, a)] for a in addresses]
        return GroupView(states, health_index, self.stats, slot, target_index, os.getpid(), self.generation)

    def describe(self, upstream: Upstream, live: Collection[int]) -> list[dict[str, Any]]:
        """Each target of `upstream` as the admin API shows it: the checker's verdict, and what
        each worker of `live` (pids) sees, with the totals over them. Ejection is per worker, so
        `ejected` is true when any worker has the target out and `ejected_by` counts them."""
        slots = []
        for slot in range(self.stats.slots):
            pid, _, _ = self.stats.read_slot(slot)
            if pid and pid in live:
                slots.append((slot, pid))
        out = []
        for target in upstream.targets:
            item: dict[str, Any] = {"address": str(target.address), "weight": target.weight}
            hi = self._health_index.get((upstream.name, target.address))
            if hi is None or self.health is None:
                item["healthy"] = True
                item["health"] = None
            else:
                h = self.health.read(hi)
                item["healthy"] = h.state != UNHEALTHY
                item["health"] = {
                    "state": STATE_NAMES[h.state], "last_status": h.last_status or None, "successes": h.successes,
                    "failures": h.failures, "probes": h.probes, "changed_at": h.changed_at or None,
                    "checked_at": h.checked_at or None,
                }
            workers = []
            ti = self.target_index[(upstream.name, target.address)]
            for slot, pid in slots:
                active, failures, ejections, completed, failed, ewma, ejected_for = self.stats.read_target(slot, ti)
                workers.append({
                    "pid": pid, "active": active, "ewma_ms": round(ewma * 1000, 3) if ewma else None,
                    "ejected": ejected_for > 0, "ejected_for_s": round(ejected_for, 1), "ejections": ejections,
                    "consecutive_failures": failures, "completed": completed, "failed": failed,
                })
            ewmas = [w["ewma_ms"] for w in workers if w["ewma_ms"] is not None]
            item["ejected_by"] = sum(1 for w in workers if w["ejected"])
            item["ejected"] = item["ejected_by"] > 0
            item["active"] = sum(w["active"] for w in workers)
            item["ewma_ms"] = round(sum(ewmas) / len(ewmas), 3) if ewmas else None
            item["workers"] = workers
            out.append(item)
        return out

    def close(self) -> None:
        if self.health is not None:
            self.health.close()
        self.stats.close()
