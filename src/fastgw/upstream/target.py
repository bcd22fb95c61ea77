"""What a worker knows about one target besides its connections: in-flight attempts, a latency
EWMA, and the consecutive failures that feed outlier ejection.

`TargetPool` (the keep-alive pool) inherits this, so the protocol reports each attempt's outcome
to the object it already holds: `begin()` once per attempt, then exactly one of `on_success`,
`on_failure` or `on_cancel`. Balancers read `usable`, `active`, `ewma` and `weight` directly;
nothing here allocates.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastgw.upstream.outlier import OutlierDetector

EWMA_ALPHA = 0.3
"""Weight of the newest latency sample: a target turning slow shows within a few requests."""
EWMA_DECAY = 5.0
"""Seconds over which the estimate of an idle target fades by 1/e: a target that was slow is
tried again once it has been left alone for a while, and its next samples start from the faded
value rather than from a stale one."""
FAILURE_PENALTY = 1.0
"""Latency (seconds) a failed or 5xx attempt counts as at least, so that a target failing fast
never looks like the fastest one to `p2c_ewma`."""


class TargetState:
    __slots__ = (
        "index", "weight", "usable", "current", "active", "ewma", "samples", "sampled_at", "failures",
        "ejected_until", "ejections", "returned_at", "ejected_total", "completed", "failed", "clock",
        "outlier",
    )

    def __init__(self, weight: int, clock: Any) -> None:
        self.index = 0
        """Position in its group: balancers and the shared tables index by it."""
        self.weight = weight
        self.usable = True
        """Healthy (active checks) and not ejected, as of the worker's last tick or ejection."""
        self.current = 0
        """Smooth weighted round robin's running score."""
        self.active = 0
        self.ewma = 0.0
        """Seconds; 0 until the first sample."""
        self.samples = 0
        self.sampled_at = 0.0
        self.failures = 0
        """Consecutive failed attempts (5xx included) since the last good one."""
        self.ejected_until = 0.0
        """When an ejection ends (monotonic seconds); 0 when the target is not ejected."""
        self.ejections = 0
        """Repeat level of the last ejection: each level doubles `eject_for`."""
        self.returned_at = 0.0
        self.ejected_total = 0
        self.completed = 0
        self.failed = 0
        self.clock = clock
        """Anything with a `now` attribute in monotonic seconds (the worker's coarse clock)."""
        self.outlier: OutlierDetector | None = None

    def begin(self) -> None:
        """An attempt on this target starts: called once per attempt, before a pooled
        connection is taken or a new one opened."""
        self.active += 1

    def on_success(self, status: int, elapsed: float) -> None:
        """An exchange completed with `status` after `elapsed` seconds. A 5xx is a failure for
        outlier detection (DESIGN §8), though the exchange itself worked."""
        if self.active > 0:
            self.active -= 1
        self.completed += 1
        if status >= 500:
            self.failed += 1
            self._sample(elapsed if elapsed > FAILURE_PENALTY else FAILURE_PENALTY)
            outlier = self.outlier
            if outlier is not None:
                outlier.failed(self)
        else:
            self._sample(elapsed)
            self.failures = 0

    def on_failure(self, kind: str) -> None:
        """An attempt failed: `connect_error` (a connect timeout included), `reset`, `timeout`,
        `protocol_error` or `status`; every kind counts towards ejection."""
        if self.active > 0:
            self.active -= 1
        self.failed += 1
        penalty = self.ewma * 2
        self._sample(penalty if penalty > FAILURE_PENALTY else FAILURE_PENALTY)
        outlier = self.outlier
        if outlier is not None:
            outlier.failed(self)

    def on_cancel(self) -> None:
        """The attempt ended for a reason that says nothing about the target (the client went
        away, a pooled connection was stale)."""
        if self.active > 0:
            self.active -= 1

    def _sample(self, seconds: float) -> None:
        now = self.clock.now
        if self.samples:
            ewma = self.ewma
            if now != self.sampled_at:
                ewma *= math.exp((self.sampled_at - now) / EWMA_DECAY)
            self.ewma = ewma + EWMA_ALPHA * (seconds - ewma)
        else:
            self.ewma = seconds
        self.samples += 1
        self.sampled_at = now
