"""Passive health: consecutive failures eject a target from one worker's picks for a while.

Per worker, like Envoy's outlier detection (DESIGN §8): each worker sees its own share of the
traffic and reacts on its own, with no coordination on the request path. Ejection never takes
more than `max_ejected` of an upstream's targets at once, so a single-target upstream is never
ejected (a dead one answers 502, which is more honest than 503). A target ejected again soon after
returning stays out longer: each repeat doubles `eject_for`, up to MAX_MULTIPLIER times; each
`eject_for` it then spends in service lowers the repeat level by one.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastgw._proxy import TargetState
from fastgw.config.model import Outlier

MAX_MULTIPLIER = 10


class OutlierDetector:
    __slots__ = ("targets", "threshold", "eject_for", "max_ejected", "clock")

    def __init__(self, config: Outlier, targets: Sequence[TargetState], clock: Any) -> None:
        self.targets = targets
        self.threshold = config.consecutive_failures
        self.eject_for = config.eject_for
        self.max_ejected = int(config.max_ejected * len(targets) + 1e-9)
        """Targets that may be out at once: the configured share, rounded down."""
        self.clock = clock

    def failed(self, target: TargetState) -> None:
        target.failures += 1
        if target.failures >= self.threshold and not target.ejected_until:
            self._eject(target)

    def _eject(self, target: TargetState) -> None:
        ejected = 0
        for other in self.targets:
            if other.ejected_until:
                ejected += 1
        if ejected >= self.max_ejected:
            return
        now = self.clock.now
        level = target.ejections
        if level:
            level = max(0, level - int((now - target.returned_at) / self.eject_for))
        level += 1
        target.ejections = level
        target.ejected_until = now + self.eject_for * min(2 ** (level - 1), MAX_MULTIPLIER)
        target.ejected_total += 1
        target.failures = 0
        target.usable = False

    def restore(self, target: TargetState, now: float) -> bool:
        """Ends `target`'s ejection if it is due; True while it stays ejected."""
        until = target.ejected_until
        if not until:
            return False
        if until > now:
            return True
        target.ejected_until = 0.0
        target.returned_at = now
        target.failures = 0
        return False
