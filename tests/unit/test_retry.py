"""The retry policy (DESIGN §8): attempts count every try, only the configured outcomes are
retried, a request any part of which was sent is retried only when idempotent, and the budget
(share of requests over 10 s, floor of 3 per window) bounds retries. Fake clock throughout."""
from __future__ import annotations

import pytest

from fastgw._proxy import BUDGET_FLOOR, BUDGET_WINDOW, RetryBudget
from fastgw.config.model import Retries
from fastgw.upstream.retry import RetryPolicy


class FakeClock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now


def policy(clock: FakeClock | None = None, **kw: object) -> RetryPolicy:
    return RetryPolicy(Retries(**kw), clock or FakeClock())  # type: ignore[arg-type]


def test_default_is_two_attempts_on_connect_error_only() -> None:
    p = policy()
    assert p.allows("connect_error", 1, idempotent=False, request_sent=False)
    assert not p.allows("connect_error", 2, idempotent=True, request_sent=False)
    for outcome in ("reset", "timeout", 502, 503, 504):
        assert not p.allows(outcome, 1, idempotent=True, request_sent=True)
    assert p.statuses is None


def test_attempts_count_the_first_try() -> None:
    p = policy(attempts=3, on=("connect_error",))
    assert [p.allows("connect_error", n, True, False) for n in (1, 2, 3, 4)] == [True, True, False, False]


def test_attempts_one_means_never() -> None:
    assert not policy(attempts=1).allows("connect_error", 1, True, False)


def test_configured_outcomes_and_statuses() -> None:
    p = policy(attempts=5, on=("reset", "timeout", 503))
    assert p.statuses == frozenset({503})
    assert p.allows("reset", 1, True, True)
    assert p.allows("timeout", 1, True, True)
    assert p.allows(503, 1, True, True)
    assert not p.allows(502, 1, True, True)
    assert not p.allows("connect_error", 1, True, False)


@pytest.mark.parametrize("outcome", ["reset", "timeout", 503])
def test_non_idempotent_request_is_not_retried_once_sent(outcome: str | int) -> None:
    p = policy(attempts=3, on=("connect_error", "reset", "timeout", 503))
    assert not p.allows(outcome, 1, idempotent=False, request_sent=True)
    assert p.allows(outcome, 1, idempotent=True, request_sent=True)


def test_non_idempotent_request_is_retried_when_nothing_was_sent() -> None:
    p = policy(attempts=3, on=("connect_error", "reset"))
    assert p.allows("connect_error", 1, idempotent=False, request_sent=False)
    assert p.allows("reset", 1, idempotent=False, request_sent=False)


def test_refusals_take_nothing_from_the_budget() -> None:
    clock = FakeClock()
    p = policy(clock, attempts=2, on=("reset",))
    for _ in range(50):
        assert not p.allows("reset", 2, True, True)
        assert not p.allows("connect_error", 1, True, False)
        assert not p.allows("timeout", 1, True, True)
    assert [p.allows("reset", 1, True, True) for _ in range(4)] == [True, True, True, False]


def test_connect_errors_are_retried_outside_the_budget() -> None:
    """Issue 9, item 10: a request whose connection was refused reached no target, so trying it
    on another adds no load to anything, and the budget neither limits nor counts it: a dead
    target next to a live one costs no request at low traffic. `attempts` still bounds it."""
    clock = FakeClock()
    p = policy(clock, attempts=2, on=("connect_error", "reset"))
    for _ in range(10):
        p.on_request()
    assert all(p.allows("connect_error", 1, idempotent=False, request_sent=False) for _ in range(100))
    assert not p.allows("connect_error", 2, True, False)
    # ... and the budget is whole for the retries that do add load: the floor of 3 here.
    assert [p.allows("reset", 1, True, True) for _ in range(4)] == [True, True, True, False]
    assert p.allows("connect_error", 1, True, False)


def test_connect_errors_are_retried_however_long_the_outage() -> None:
    """A dead target among live ones over a minute at 1000 requests per second: every refused
    attempt is tried again (elsewhere), whatever the 20% budget has left."""
    clock = FakeClock()
    p = policy(clock)  # the default: {attempts: 2, on: [connect_error]}, budget 20%
    refused = 0
    for i in range(60_000):
        p.on_request()
        if i % 2 == 0:  # every other request is sent first to the dead target
            refused += 1
            assert p.allows("connect_error", 1, idempotent=True, request_sent=False), i
        clock.now += 0.001
    assert refused == 30_000


def test_timeouts_are_exposed() -> None:
    p = policy(per_try_timeout=0.5, total_timeout=3.0)
    assert (p.per_try_timeout, p.total_timeout) == (0.5, 3.0)
    assert (policy().per_try_timeout, policy().total_timeout) == (None, None)


# ---- budget -----------------------------------------------------------------------------------


def take(budget: RetryBudget, n: int) -> int:
    return sum(budget.try_acquire() for _ in range(n))


def test_budget_floor_of_three_per_window_without_traffic() -> None:
    clock = FakeClock()
    b = RetryBudget(0.2, clock)
    assert BUDGET_FLOOR == 3 and BUDGET_WINDOW == 10.0
    assert take(b, 10) == 3
    clock.now += 2 * BUDGET_WINDOW
    assert take(b, 10) == 3


def test_budget_is_a_share_of_requests() -> None:
    clock = FakeClock()
    b = RetryBudget(0.2, clock)
    for _ in range(100):
        b.on_request()
    assert take(b, 100) == 20
    for _ in range(10):
        b.on_request()
    assert take(b, 100) == 2


def test_budget_cannot_multiply_an_outage() -> None:
    """Every request fails and asks for a retry: retries stay within 20% of requests (plus the
    floor), however long the outage lasts."""
    clock = FakeClock()
    p = policy(clock, attempts=10, on=(503,), budget=0.2)
    requests = retries = 0
    for _ in range(6000):  # 1000 requests per second for 6 s... then another 6 s
        p.on_request()
        requests += 1
        attempts = 1
        while p.allows(503, attempts, True, True):
            attempts += 1
            retries += 1
        clock.now += 0.002
    assert retries <= 0.2 * requests + BUDGET_FLOOR
    assert retries >= 0.15 * requests


def test_budget_window_slides() -> None:
    """The previous window still counts for the part of it within the last 10 s, so the budget
    does not refill all at once on a window boundary."""
    clock = FakeClock()
    b = RetryBudget(0.1, clock)
    for _ in range(1000):
        b.on_request()
    assert take(b, 1000) == 100
    clock.now += BUDGET_WINDOW  # a new window: the old one still weighs fully
    assert take(b, 10) == 0
    clock.now += BUDGET_WINDOW / 2  # half of it left: 500 requests' worth, 50 retries used
    assert take(b, 10) == 0
    for _ in range(200):
        b.on_request()
    assert take(b, 100) == 20  # (500 + 200) × 10% = 70 allowed, 50 used
    clock.now += 2 * BUDGET_WINDOW
    assert take(b, 10) == BUDGET_FLOOR


def test_budget_with_zero_share_keeps_the_floor() -> None:
    clock = FakeClock()
    b = RetryBudget(0.0, clock)
    for _ in range(1000):
        b.on_request()
    assert take(b, 10) == BUDGET_FLOOR
