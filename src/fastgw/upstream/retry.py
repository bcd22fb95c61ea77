"""Whether a failed attempt may be tried again (DESIGN §8), and the budget that keeps retries
from multiplying an outage.

The protocol asks `allows(outcome, attempts, idempotent, request_sent)` after an attempt failed
before any of its response reached the client; a True answer has already taken a retry from the
budget, except for a `connect_error`. `on_request()` is called once per request so the budget
knows the request rate.

Why a `connect_error` is outside the budget: the budget bounds the extra work retries put on the
targets when they are failing (Finagle's and Envoy's retry budgets). A request whose connection
was refused or timed out reached no target, so trying it on another one is its first delivery,
not extra work, and nginx always moves to the next server on a refused connection. Counting it let
a single dead target among live ones fail requests at low traffic (issue 9, item 10: 2 of 10
sequential GETs, once the floor of 3 was spent). Its bound is `attempts`, and the protocol never
sends it back to the target that just refused (DESIGN §8 "Retry budget").
"""
from __future__ import annotations

from typing import Any

from fastgw.config.model import Retries

BUDGET_WINDOW = 10.0
BUDGET_FLOOR = 3
"""Retries always allowed per window, so that an upstream with little traffic can still retry."""


class RetryBudget:
    """Retries over requests in the last BUDGET_WINDOW seconds, per worker and upstream.

    Counts are kept for the current and the previous window, and the previous one is weighed by
    how much of it still lies within the last BUDGET_WINDOW seconds (the sliding-window estimate
    of Pingora's `Rate`), so the budget does not reset all at once on a window boundary."""

    __slots__ = ("ratio", "floor", "clock", "_start", "_requests", "_retries", "_prev_requests", "_prev_retries")

    def __init__(self, ratio: float, clock: Any, floor: int = BUDGET_FLOOR) -> None:
        self.ratio = ratio
        self.floor = floor
        self.clock = clock
        self._start = clock.now
        self._requests = 0
        self._retries = 0
        self._prev_requests = 0
        self._prev_retries = 0

    def on_request(self) -> None:
        if self.clock.now - self._start >= BUDGET_WINDOW:
            self._roll()
        self._requests += 1

    def try_acquire(self) -> bool:
        """Takes one retry if the budget has one left."""
        now = self.clock.now
        if now - self._start >= BUDGET_WINDOW:
            self._roll()
        weight = 1.0 - (now - self._start) / BUDGET_WINDOW
        retries = self._prev_retries * weight + self._retries
        allowed = self.ratio * (self._prev_requests * weight + self._requests)
        if retries + 1 > max(allowed, self.floor):
            return False
        self._retries += 1
        return True

    def _roll(self) -> None:
        now = self.clock.now
        windows = int((now - self._start) // BUDGET_WINDOW)
        if windows == 1:
            self._prev_requests = self._requests
            self._prev_retries = self._retries
        else:
            self._prev_requests = 0
            self._prev_retries = 0
        self._requests = 0
        self._retries = 0
        self._start += windows * BUDGET_WINDOW


class RetryPolicy:
    """`retries` of one upstream. `statuses` (None when empty) lets the protocol skip `allows`
    for every response whose status is not worth a retry."""

    __slots__ = ("attempts", "conditions", "statuses", "budget", "per_try_timeout", "total_timeout")

    def __init__(self, config: Retries, clock: Any) -> None:
        self.attempts = config.attempts
        self.conditions = frozenset(c for c in config.on if isinstance(c, str))
        self.statuses = frozenset(c for c in config.on if isinstance(c, int)) or None
        self.budget = RetryBudget(config.budget, clock)
        self.per_try_timeout = config.per_try_timeout
        """Seconds an attempt may wait for its response head (then it fails as `timeout`), or
        None for the upstream's `timeouts.read` alone."""
        self.total_timeout = config.total_timeout
        """Seconds the whole request, every attempt included, may wait for a response head
        (then 504 and no further attempt), or None for no overall bound."""

    def on_request(self) -> None:
        self.budget.on_request()

    def allows(self, outcome: str | int, attempts: int, idempotent: bool, request_sent: bool) -> bool:
        """May a request whose attempt number `attempts` (the first is 1) failed with `outcome`
        (`connect_error`, `reset`, `timeout` or a status) be tried again? Once any part of the
        request was sent, only an idempotent one may. A `connect_error` (nothing sent) needs no
        budget: see the module docstring."""
        if attempts >= self.attempts:
            return False
        if isinstance(outcome, int):
            statuses = self.statuses
            if statuses is None or outcome not in statuses:
                return False
        elif outcome not in self.conditions:
            return False
        elif outcome == "connect_error" and not request_sent:
            return True
        if request_sent and not idempotent:
            return False
        return self.budget.try_acquire()
