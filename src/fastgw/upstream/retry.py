"""Whether a failed attempt may be tried again (DESIGN §8), and the budget that keeps retries
from multiplying an outage.

The budget itself (`RetryBudget`: retries over requests in a sliding 10 s window, with a floor of
3 retries per window) is compiled, since every request counts in it; this is the policy around it.

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

from fastgw._proxy import RetryBudget
from fastgw.config.model import Retries


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
