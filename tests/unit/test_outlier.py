"""Passive health (DESIGN §8 "Passive health"): consecutive failures eject a target for
`eject_for`, doubled on each repeat up to 10×, never more than `max_ejected` of an upstream at
once; and what the outcome hooks (`begin`, `on_success`, `on_failure`, `on_cancel`) count. Time
is a fake clock; ejections end when the group's tick sees them due, as in a worker."""
from __future__ import annotations

import pytest

from fastgw._proxy import FAILURE_PENALTY, TargetGroup, TargetState
from fastgw.config.model import Address, Outlier, Target, Upstream


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now


def make(n: int, clock: FakeClock, off: bool = False, **outlier: object) -> TargetGroup:
    """A group of `n` targets with `outlier` (the default when empty), or none when `off`."""
    targets = tuple(Target(Address("10.0.0.1", 9000 + i)) for i in range(n))
    upstream = Upstream("u", targets, outlier=None if off else Outlier(**outlier))  # type: ignore[arg-type]
    pools = [TargetState(1, clock) for _ in targets]
    return TargetGroup(upstream, pools, [str(t.address) for t in targets], clock)


def fail(target: TargetState, times: int, kind: str = "connect_error") -> None:
    for _ in range(times):
        target.begin()
        target.on_failure(kind)


def advance(g: TargetGroup, clock: FakeClock, seconds: float) -> None:
    clock.now += seconds
    g.tick(clock.now)


def test_consecutive_failures_eject_for_eject_for() -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=5, eject_for=30.0)
    t = g.pools[0]
    fail(t, 4)
    assert t.usable and not t.ejected_until
    fail(t, 1)
    assert not t.usable and t.ejected_until == clock.now + 30.0
    advance(g, clock, 29.9)
    assert not t.usable
    advance(g, clock, 0.2)
    assert t.usable and not t.ejected_until and t.failures == 0


@pytest.mark.parametrize("kind", ["connect_error", "reset", "timeout", "protocol_error", "status"])
def test_every_failure_kind_counts(kind: str) -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=3)
    fail(g.pools[0], 3, kind)
    assert not g.pools[0].usable


def test_5xx_responses_count_and_a_good_response_resets_the_streak() -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=3)
    t = g.pools[0]
    for status in (502, 503, 200, 500, 504, 404):
        t.begin()
        t.on_success(status, 0.01)
    assert t.usable and t.failures == 0
    t.begin()
    t.on_success(500, 0.01)
    t.begin()
    t.on_success(599, 0.01)
    t.begin()
    t.on_success(503, 0.01)
    assert not t.usable


def test_cancel_is_neutral() -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=2)
    t = g.pools[0]
    fail(t, 1)
    t.begin()
    t.on_cancel()
    assert t.failures == 1 and t.active == 0 and t.usable


def test_repeat_ejections_double_up_to_ten_times() -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=1, eject_for=10.0)
    t = g.pools[0]
    durations = []
    for _ in range(7):
        fail(t, 1)
        durations.append(t.ejected_until - clock.now)
        advance(g, clock, durations[-1])
        assert t.usable
    assert durations == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0, 100.0]


def test_time_in_service_lowers_the_repeat_level() -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=1, eject_for=10.0)
    t = g.pools[0]
    for _ in range(3):
        fail(t, 1)
        advance(g, clock, t.ejected_until - clock.now)
    assert t.ejections == 3  # next would be 80 s
    advance(g, clock, 25.0)  # two eject_for periods in service: level 3 → 1
    fail(t, 1)
    assert t.ejected_until - clock.now == 20.0


def test_failures_while_ejected_do_not_extend_or_carry_over() -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=3, eject_for=10.0)
    t = g.pools[0]
    for _ in range(6):
        t.begin()
    fail(t, 3)
    until = t.ejected_until
    for _ in range(3):
        t.on_failure("timeout")  # attempts that were in flight when it was ejected
    assert t.ejected_until == until
    advance(g, clock, 10.0)
    assert t.usable and t.failures == 0
    fail(t, 2)
    assert t.usable


@pytest.mark.parametrize(
    ("n", "max_ejected", "most"),
    [(1, 0.5, 0), (2, 0.5, 1), (3, 0.5, 1), (4, 0.5, 2), (5, 0.5, 2), (4, 1.0, 4), (4, 0.0, 0), (10, 0.25, 2)],
)
def test_never_more_than_max_ejected(n: int, max_ejected: float, most: int) -> None:
    clock = FakeClock()
    g = make(n, clock, consecutive_failures=2, max_ejected=max_ejected)
    for t in g.pools:
        fail(t, 5)
    assert sum(1 for t in g.pools if not t.usable) == most


def test_single_target_upstream_is_never_ejected() -> None:
    clock = FakeClock()
    g = make(1, clock, consecutive_failures=1)
    fail(g.pools[0], 100)
    assert g.pools[0].usable and g.pick(None, None, None) is g.pools[0]


def test_when_an_ejected_target_returns_another_can_be_ejected() -> None:
    clock = FakeClock()
    g = make(2, clock, consecutive_failures=2, eject_for=5.0)
    a, b = g.pools
    fail(a, 2)
    fail(b, 2)
    assert not a.usable and b.usable
    advance(g, clock, 5.0)
    fail(b, 1)
    assert not b.usable and a.usable


def test_outlier_off_never_ejects() -> None:
    """Issue 9, item 9 (`outlier: off`): failures are still counted and shown, but no target is
    ever taken out, however many fail and for however long."""
    clock = FakeClock()
    g = make(3, clock, off=True)
    assert g.outlier is None
    for t in g.pools:
        fail(t, 10_000, "connect_error")
        t.begin()
        t.on_success(503, 0.001)
    advance(g, clock, 3600.0)
    assert all(t.usable and not t.ejected_until and t.ejected_total == 0 for t in g.pools)
    assert [t.failed for t in g.pools] == [10_001] * 3
    assert {g.pick(None, None, None) for _ in range(30)} == set(g.pools)


def test_traffic_moves_away_from_an_ejected_target_and_back() -> None:
    clock = FakeClock()
    g = make(3, clock, consecutive_failures=3, eject_for=2.0)
    bad = g.pools[1]
    fail(bad, 3)
    seen = {g.pick(None, None, None) for _ in range(30)}
    assert bad not in seen
    advance(g, clock, 2.0)
    assert bad in {g.pick(None, None, None) for _ in range(30)}


# ---- the counters the balancers read ----------------------------------------------------------


def test_active_counts_attempts_in_flight() -> None:
    t = TargetState(1, FakeClock())
    for _ in range(3):
        t.begin()
    t.on_success(200, 0.01)
    t.on_failure("reset")
    t.on_cancel()
    assert t.active == 0
    t.on_cancel()  # an end without a begin never makes it negative
    assert t.active == 0


def test_ewma_follows_latency_and_penalises_failures() -> None:
    clock = FakeClock()
    t = TargetState(1, clock)
    t.on_success(200, 0.100)
    assert t.ewma == 0.100
    for _ in range(30):
        t.on_success(200, 0.010)
    assert abs(t.ewma - 0.010) < 0.001
    t.on_failure("connect_error")
    assert t.ewma > 0.010 + 0.2 * (FAILURE_PENALTY - 0.010)


def test_ewma_of_an_idle_target_fades() -> None:
    clock = FakeClock()
    t = TargetState(1, clock)
    t.on_success(200, 0.500)
    clock.now += 30.0
    t.on_success(200, 0.010)
    assert t.ewma < 0.010
