"""The targets of one upstream as a worker's request path sees them: which one to pick, whether a
failed attempt may be retried, and which targets are usable right now.

`TargetGroup` is the policy half of the protocol's `UpstreamGroup` (which adds the connection
pools, in `fastgw.upstream.pool`). The request path touches only `pick`, `on_request`, `retry` and
`retry_statuses`; `tick` runs from the worker's sweeper every 0.1 s and is where active-check
results and ended ejections are applied, and where the worker publishes what it sees.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from fastgw.config.model import Upstream
from fastgw.upstream.balancer import Balancer, make_balancer
from fastgw.upstream.outlier import OutlierDetector
from fastgw.upstream.retry import RetryPolicy
from fastgw.upstream.shared import UNHEALTHY, GroupView
from fastgw.upstream.target import TargetState


class TargetGroup:
    __slots__ = (
        "name", "balance", "pools", "pick", "on_request", "retry", "retry_statuses", "outlier", "balancer", "view",
    )

    pick: Callable[[Any, Any, Any], Any]
    """`pick(proto, req, exclude) -> target | None`: the target for the next attempt of `req`
    (from client connection `proto`), other than `exclude` unless it is the only usable one; None
    when no target is usable (the request gets 503). The balancer's own method, bound here so the
    request path pays one call."""
    on_request: Callable[[], None]
    """Called once per request routed to this upstream: the retry budget's denominator."""

    def __init__(
        self, upstream: Upstream, pools: Sequence[TargetState], labels: Sequence[str], clock: Any,
        view: GroupView | None = None, rng: random.Random | None = None,
    ) -> None:
        self.name = upstream.name
        self.balance = upstream.balance
        self.pools = list(pools)
        for index, pool in enumerate(self.pools):
            pool.index = index
        self.outlier = OutlierDetector(upstream.outlier, self.pools, clock) if upstream.outlier is not None else None
        """None with `outlier: off`: failures are counted, nothing is ejected."""
        for pool in self.pools:
            pool.outlier = self.outlier
        self.retry = RetryPolicy(upstream.retries, clock)
        self.retry_statuses = self.retry.statuses
        """Upstream statuses worth a retry (None: none), checked before `retry.allows`."""
        self.on_request = self.retry.budget.on_request
        self.balancer: Balancer = make_balancer(upstream, self.pools, labels, clock, rng)
        self.pick = self.balancer.pick
        self.view = view
        if view is not None:
            # Before the worker serves: a target the checker already holds unhealthy (kept over a
            # reload) must not get requests until the first tick.
            self.tick(clock.now)

    def tick(self, now: float) -> None:
        """Applies the shared health states and ended ejections to `usable`, then publishes this
        worker's view of the targets. A target marked unhealthy by the checker stops being picked
        here, so within a tick (0.1 s) of the checker's verdict."""
        view = self.view
        states = view.states if view is not None else None
        outlier = self.outlier
        for pool in self.pools:
            usable = outlier is None or not outlier.restore(pool, now)
            if states is not None and states[view.health_index[pool.index]] == UNHEALTHY:  # type: ignore[union-attr]
                usable = False
            pool.usable = usable
        if view is not None:
            view.publish(self.pools, now)
