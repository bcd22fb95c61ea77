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
IDLE_ROUNDS = 4.0
"""For `p2c_ewma`: rounds of its upstream's picks (a round: one pick per target) over which the
estimate of a target with nothing in flight also fades by 1/e. See `PickClock`."""
FAILURE_PENALTY = 1.0
"""Latency (seconds) a failed or 5xx attempt counts as at least, so that a target failing fast
never looks like the fastest one to `p2c_ewma`."""


class PickClock:
    """Counts the picks of one upstream in one worker: the time by which `p2c_ewma` fades the
    latency estimate of a target that is passed over (issue 9, item 11).

    Why picks and not only seconds: an estimate moves only when its target is picked, and p2c
    never picks the dearest of three targets when requests come one at a time (nothing is in
    flight to even the costs). One early slow answer (a first connection, a GC pause) then kept
    an equal target out: 60 sequential requests over three equal targets went 32 / 2 / 26. Fading
    by seconds (EWMA_DECAY) cannot bring it back at the rate requests come, since a time constant
    short enough would forget a slow target within one burst. So, like the peak EWMA of Finagle
    and Linkerd but with time counted in the upstream's own requests, an idle target's estimate
    fades by 1/e every IDLE_ROUNDS × (number of targets) picks. Once picked, its next sample
    moves on from the faded value: one good answer puts an equal target back in line, while a
    slow one gets a slow sample that sends it out again. The price is a probe share for a target
    that really is slow: with requests one at a time, about 2% of them for one 20 × slower than
    three others (IDLE_ROUNDS sets the balance: 6 gives 1.4% but leaves an equal target out for
    half as long again). With requests in flight the `active` counts decide, as before: a target
    with attempts in flight is not idle and does not fade by picks until they end."""

    __slots__ = ("now", "fade")

    def __init__(self, targets: int, idle_rounds: float = IDLE_ROUNDS) -> None:
        self.now = 0
        self.fade = 1.0 / (idle_rounds * targets)
        """e-folds of the estimate per pick that passes an idle target by."""


class TargetState:
    __slots__ = (
        "index", "weight", "usable", "current", "active", "ewma", "samples", "sampled_at", "failures",
        "ejected_until", "ejections", "returned_at", "ejected_total", "completed", "failed", "clock",
        "outlier", "picks", "idle_from", "kept", "errors",
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
        self.errors: dict[str, int] = {}
        """Failed attempts by kind (`connect_error`, `reset`, ...), for metrics."""
        self.clock = clock
        """Anything with a `now` attribute in monotonic seconds (the worker's coarse clock)."""
        self.outlier: OutlierDetector | None = None
        self.picks: PickClock | None = None
        """The upstream's pick count when its balancer fades idle estimates by picks
        (`p2c_ewma`), else None."""
        self.idle_from = 0
        """`picks.now` when the estimate was last brought up to date, the target being idle."""
        self.kept = 1.0
        """How much of the estimate the fading since the last sample has kept (1: none faded).
        The next sample weighs at least what was lost, so after a long idle spell it all but
        replaces the faded estimate (as in Finagle's peak EWMA), else it weighs EWMA_ALPHA."""

    def estimate(self) -> float:
        """The latency EWMA as of now (0 before the first sample): faded by 1/e for every
        EWMA_DECAY seconds since it was last brought up to date and, with a `PickClock` and no
        attempt in flight, for every IDLE_ROUNDS rounds of picks since then."""
        ewma = self.ewma
        if ewma:
            ewma *= self._fading()
        return ewma

    def _fading(self) -> float:
        idle = (self.clock.now - self.sampled_at) / EWMA_DECAY
        picks = self.picks
        if picks is not None and not self.active:
            idle += (picks.now - self.idle_from) * picks.fade
        return math.exp(-idle) if idle > 0.0 else 1.0

    def _settle(self) -> None:
        """Keeps the faded estimate as the estimate, before `active` changes (with a
        `PickClock` only): fading by picks stops while attempts are in flight and starts again
        from when the last one ended."""
        if self.ewma:
            fading = self._fading()
            self.ewma *= fading
            self.kept *= fading
        self.sampled_at = self.clock.now
        self.idle_from = self.picks.now  # type: ignore[union-attr]

    def begin(self) -> None:
        """An attempt on this target starts: called once per attempt, before a pooled
        connection is taken or a new one opened."""
        if self.picks is not None and not self.active:
            self._settle()
        self.active += 1

    def on_success(self, status: int, elapsed: float) -> None:
        """An exchange completed with `status` after `elapsed` seconds. A 5xx is a failure for
        outlier detection (DESIGN §8), though the exchange itself worked."""
        if self.active > 0:
            if self.picks is not None:
                self._settle()
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
            if self.picks is not None:
                self._settle()
            self.active -= 1
        self.failed += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        penalty = self.ewma * 2
        self._sample(penalty if penalty > FAILURE_PENALTY else FAILURE_PENALTY)
        outlier = self.outlier
        if outlier is not None:
            outlier.failed(self)

    def on_cancel(self) -> None:
        """The attempt ended for a reason that says nothing about the target (the client went
        away, a pooled connection was stale)."""
        if self.active > 0:
            if self.picks is not None:
                self._settle()
            self.active -= 1

    def _sample(self, seconds: float) -> None:
        now = self.clock.now
        if self.samples:
            ewma = self.ewma
            kept = self.kept
            if now != self.sampled_at:
                fading = math.exp((self.sampled_at - now) / EWMA_DECAY)
                ewma *= fading
                kept *= fading
            weight = 1.0 - kept
            if weight < EWMA_ALPHA:
                weight = EWMA_ALPHA
            self.ewma = ewma + weight * (seconds - ewma)
        else:
            self.ewma = seconds
        self.kept = 1.0
        self.samples += 1
        self.sampled_at = now
