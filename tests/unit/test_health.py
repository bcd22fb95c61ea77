"""Active health checks without sockets: the threshold state machine, the checker's schedule and
verdicts with fake probes, the shared tables workers read, and how a worker's tick applies them.
"""
from __future__ import annotations

import asyncio
import os
import random
import statistics
from collections import Counter

import pytest

from fastgw._proxy import TargetGroup, TargetState
from fastgw.config.model import Address, Config, HealthCheck, Target, Upstream
from fastgw.upstream.health import HealthChecker, HealthMachine, expected
from fastgw.upstream.shared import (
    HEALTHY,
    UNHEALTHY,
    UNKNOWN,
    HealthEntry,
    HealthRecord,
    HealthTable,
    UpstreamShared,
)

CHECK = HealthCheck("/healthz", interval=2.0, timeout=0.05, unhealthy_after=3, healthy_after=2, jitter=0.2)
BLANK = HealthRecord(UNKNOWN, 0, 0, 0, 0, 0.0, 0.0)


def run(machine: HealthMachine, results: str) -> list[int]:
    states = []
    for i, r in enumerate(results):
        machine.observe(r == "+", 200 if r == "+" else 503, float(i))
        states.append(machine.record.state)
    return states


U, H, D = UNKNOWN, HEALTHY, UNHEALTHY


@pytest.mark.parametrize(
    ("results", "states"),
    [
        ("+", [H]),
        ("-", [D]),  # a new target takes its first probe's verdict
        ("+--+---", [H, H, H, H, H, H, D]),  # three failures in a row, not three in all
        ("-+-++", [D, D, D, D, H]),
        ("+---++", [H, H, H, D, D, H]),
    ],
)
def test_thresholds(results: str, states: list[int]) -> None:
    assert run(HealthMachine(CHECK, BLANK), results) == states


def test_record_counts_and_change_time() -> None:
    m = HealthMachine(CHECK, BLANK)
    run(m, "++---")
    r = m.record
    assert (r.state, r.successes, r.failures, r.last_status, r.probes) == (D, 0, 3, 503, 5)
    assert (r.changed_at, r.checked_at) == (4.0, 4.0)
    m.observe(True, 204, 9.0)
    assert (m.record.state, m.record.changed_at, m.record.checked_at) == (D, 4.0, 9.0)


@pytest.mark.parametrize(
    ("expect", "status", "ok"),
    [(((200, 399),), 200, True), (((200, 399),), 399, True), (((200, 399),), 400, False),
     (((204, 204), (301, 302)), 302, True), (((204, 204), (301, 302)), 200, False)],
)
def test_expected_statuses(expect: tuple[tuple[int, int], ...], status: int, ok: bool) -> None:
    assert expected(HealthCheck("/", expect=expect), status) is ok


def entry(index: int = 0, check: HealthCheck = CHECK, port: int = 9000) -> HealthEntry:
    return HealthEntry(index, "app", Address("127.0.0.1", port), None, check)


def test_schedule_is_jittered_around_the_interval() -> None:
    table = HealthTable(1)
    checker = HealthChecker([entry()], table, rng=random.Random(1))
    delays = [checker.next_delay(CHECK) for _ in range(2000)]
    assert all(1.8 <= d <= 2.2 for d in delays)
    assert abs(statistics.mean(delays) - 2.0) < 0.01
    assert len({round(d, 3) for d in delays}) > 100
    firsts = [checker.first_delay(entry()) for _ in range(200)]
    assert all(0.0 <= d <= 0.2 for d in firsts)  # no state yet: probed within the jitter
    table.write(0, HealthRecord(HEALTHY, 1, 0, 200, 1, 1.0, 1.0))
    firsts = [checker.first_delay(entry()) for _ in range(200)]
    assert all(0.0 <= d <= 2.0 for d in firsts) and max(firsts) > 1.0


def verdicts(outcomes: list[object]) -> list[int]:
    """Feed probe outcomes (a status, an exception, or 'hang') through check_once."""
    table = HealthTable(1)
    logged: list[str] = []
    it = iter(outcomes)

    async def probe(e: HealthEntry) -> int:
        outcome = next(it)
        if outcome == "hang":
            await asyncio.sleep(10)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[return-value]

    checker = HealthChecker([entry()], table, probe=probe, log=logged.append)
    machine = HealthMachine(CHECK, table.read(0))

    async def main() -> list[int]:
        states = []
        for _ in outcomes:
            await checker.check_once(entry(), machine)
            states.append(table.state(0))
        return states

    return asyncio.run(main())


def test_probe_failures_of_every_kind() -> None:
    assert verdicts([200, 503, ConnectionRefusedError(111, "Connection refused"), "hang", ValueError("garbage")]) == [
        H, H, H, D, D,
    ]


def test_checker_probes_each_target_about_once_per_interval() -> None:
    check = HealthCheck("/h", interval=0.05, timeout=0.02, jitter=0.01)
    entries = [entry(i, check, 9000 + i) for i in range(3)]
    table = HealthTable(3)
    probes: Counter[int] = Counter()

    async def probe(e: HealthEntry) -> int:
        probes[e.index] += 1
        return 503 if e.index == 1 else 200

    async def main() -> None:
        task = asyncio.ensure_future(HealthChecker(entries, table, probe=probe, log=lambda m: None).run())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert all(7 <= probes[i] <= 12 for i in range(3)), probes
    assert [table.state(i) for i in range(3)] == [H, D, H]
    assert table.read(1).last_status == 503 and table.read(0).probes == probes[0]


# ---- shared tables and what a worker does with them --------------------------------------------


def config(*upstreams: Upstream) -> Config:
    return Config(source="x", workers=2, upstreams={u.name: u for u in upstreams})


def upstream(name: str, ports: list[int], check: HealthCheck | None = CHECK) -> Upstream:
    return Upstream(name, tuple(Target(Address("127.0.0.1", p)) for p in ports), health=check)


def test_health_table_round_trip() -> None:
    table = HealthTable(3)
    record = HealthRecord(UNHEALTHY, 0, 4, 503, 9, 12.5, 13.0)
    table.write(2, record)
    assert table.read(2) == record and table.state(2) == UNHEALTHY and table.state(0) == UNKNOWN
    view = table.states()
    table.write(2, HealthRecord(HEALTHY, 1, 0, 200, 10, 14.0, 14.0))
    assert view[2] == HEALTHY
    view.release()
    table.close()


def test_reload_keeps_the_state_of_unchanged_targets() -> None:
    old = UpstreamShared(config(upstream("a", [1, 2, 3]), upstream("b", [4])), 2, 1)
    assert old.health is not None
    for e in old.entries:
        old.health.write(e.index, HealthRecord(UNHEALTHY if e.address.port == 2 else HEALTHY, 0, 3, 503, 3, 1.0, 2.0))
    other = HealthCheck("/other")
    new = UpstreamShared(config(upstream("a", [2, 3, 5]), upstream("b", [4], other), upstream("c", [1])), 2, 2, old)
    assert new.health is not None
    states = {(e.upstream, e.address.port): new.health.state(e.index) for e in new.entries}
    assert states == {
        ("a", 2): UNHEALTHY, ("a", 3): HEALTHY,  # unchanged: kept
        ("a", 5): UNKNOWN,  # new target
        ("b", 4): UNKNOWN,  # its check changed
        ("c", 1): UNKNOWN,  # same address, another upstream
    }


def test_no_health_table_without_checks() -> None:
    shared = UpstreamShared(config(upstream("a", [1], None)), 2, 1)
    assert shared.health is None and shared.entries == []


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now


def worker_group(shared: UpstreamShared, up: Upstream, slot: int, clock: FakeClock) -> TargetGroup:
    pools = [TargetState(t.weight, clock) for t in up.targets]
    return TargetGroup(up, pools, [str(t.address) for t in up.targets], clock, shared.view(up, slot))


def test_tick_applies_the_checker_verdict() -> None:
    up = upstream("a", [1, 2])
    shared = UpstreamShared(config(up), 2, 1)
    assert shared.health is not None
    clock = FakeClock()
    g = worker_group(shared, up, 0, clock)
    shared.health.write(1, HealthRecord(UNHEALTHY, 0, 3, 503, 3, 1.0, 1.0))
    assert g.pools[1].usable  # until the next tick
    g.tick(clock.now)
    assert not g.pools[1].usable
    assert {g.pick(None, None, None) for _ in range(10)} == {g.pools[0]}
    shared.health.write(0, HealthRecord(UNHEALTHY, 0, 3, 503, 3, 1.0, 1.0))
    g.tick(clock.now)
    assert g.pick(None, None, None) is None  # every target unhealthy: 503
    shared.health.write(1, HealthRecord(HEALTHY, 2, 0, 200, 5, 1.0, 1.0))
    g.tick(clock.now)
    assert g.pick(None, None, None) is g.pools[1]


def test_upstream_without_checks_ignores_the_table() -> None:
    checked, plain = upstream("a", [1]), upstream("b", [2], None)
    shared = UpstreamShared(config(checked, plain), 1, 1)
    g = worker_group(shared, plain, 0, FakeClock())
    assert g.view is not None and g.view.states is None
    g.tick(1.0)
    assert g.pools[0].usable


def test_workers_publish_what_they_see_for_the_admin_api() -> None:
    up = upstream("a", [1, 2])
    shared = UpstreamShared(config(up), 2, 7)
    clock = FakeClock()
    g = worker_group(shared, up, 1, clock)
    t0, t1 = g.pools
    t0.begin()
    t0.begin()
    t1.begin()
    t1.on_success(200, 0.020)
    g.outlier.max_ejected = 1
    for _ in range(5):
        t1.begin()
        t1.on_failure("reset")
    g.tick(clock.now)
    assert shared.health is not None
    shared.health.write(0, HealthRecord(HEALTHY, 3, 0, 200, 3, 50.0, 60.0))
    described = shared.describe(up, live={os.getpid()})
    a, b = described
    assert a["healthy"] and a["health"]["state"] == "healthy" and a["health"]["last_status"] == 200
    assert a["active"] == 2 and not a["ejected"] and a["ewma_ms"] is None
    assert b["health"]["state"] == "unknown" and b["healthy"]
    assert b["ejected"] and b["ejected_by"] == 1 and b["workers"][0]["ejected_for_s"] == 30.0
    assert b["workers"][0] == {
        "pid": os.getpid(), "active": 0, "ewma_ms": b["ewma_ms"], "ejected": True, "ejected_for_s": 30.0,
        "ejections": 1, "consecutive_failures": 0, "completed": 1, "failed": 5,
    }
    assert shared.stats.read_slot(1)[:2] == (os.getpid(), 7)
    # A slot whose worker is gone (or of another generation) is left out.
    assert shared.describe(up, live=set())[0]["workers"] == []


def test_a_new_worker_applies_known_verdicts_before_serving() -> None:
    up = upstream("a", [1, 2])
    shared = UpstreamShared(config(up), 2, 1)
    assert shared.health is not None
    shared.health.write(0, HealthRecord(UNHEALTHY, 0, 3, 503, 3, 1.0, 1.0))
    g = worker_group(shared, up, 0, FakeClock())
    assert not g.pools[0].usable and g.pools[1].usable
