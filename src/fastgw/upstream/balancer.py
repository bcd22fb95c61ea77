"""Target selection, one class per `balance` mode, each with the protocol's
`pick(proto, req, exclude) -> target | None`.

Every balancer picks only `usable` targets (healthy and not ejected), avoids `exclude` (the target
an attempt just failed on) unless it is the only usable one, and returns None when no target is
usable (the request gets 503). Work that can be done once (the hash ring) is done at build time;
`round_robin`, `weighted` and `least_conn` allocate nothing per pick.
"""
from __future__ import annotations

import math
import random
from bisect import bisect
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

from fastgw._proxy import RequestKey
from fastgw.config.model import HashKey, Upstream
from fastgw.upstream.target import IDLE_ROUNDS, PickClock, TargetState

VNODES = 160
"""Ring points per unit of weight (ketama's figure): enough for an even spread and a ~1/N move
when a target comes or goes."""


class Single:
    """An upstream of one target, whatever its `balance`: nothing to choose."""

    __slots__ = ("target",)

    def __init__(self, target: TargetState) -> None:
        self.target = target

    def pick(self, proto: Any, req: Any, exclude: TargetState | None) -> TargetState | None:
        target = self.target
        return target if target.usable else None


class RoundRobin:
    """Each usable target in turn; weights are refused by the config for this mode."""

    __slots__ = ("targets", "_next")

    def __init__(self, targets: Sequence[TargetState]) -> None:
        self.targets = targets
        self._next = 0

    def pick(self, proto: Any, req: Any, exclude: TargetState | None) -> TargetState | None:
        targets = self.targets
        n = len(targets)
        i = self._next
        fallback = None
        for _ in range(n):
            target = targets[i]
            i += 1
            if i == n:
                i = 0
            if target.usable:
                if target is not exclude:
                    self._next = i
                    return target
                fallback = target
        return fallback


class Weighted:
    """Smooth weighted round robin (nginx): over any span of sum(weights) picks each target gets
    exactly its weight, interleaved rather than in bursts. Unusable targets take no part, so the
    usable ones share the traffic in proportion to their weights."""

    __slots__ = ("targets",)

    def __init__(self, targets: Sequence[TargetState]) -> None:
        self.targets = targets

    def pick(self, proto: Any, req: Any, exclude: TargetState | None) -> TargetState | None:
        best = None
        fallback = None
        total = 0
        for target in self.targets:
            if not target.usable:
                continue
            if target is exclude:
                fallback = target
                continue
            target.current += target.weight
            total += target.weight
            if best is None or target.current > best.current:
                best = target
        if best is None:
            return fallback
        best.current -= total
        return best


class LeastConn:
    """The usable target with the fewest attempts in flight in this worker, relative to its
    weight. Ties go round robin: the scan starts just after the last target chosen."""

    __slots__ = ("targets", "_next", "_weighted")

    def __init__(self, targets: Sequence[TargetState]) -> None:
        self.targets = targets
        self._next = 0
        self._weighted = any(t.weight != 1 for t in targets)
        """With equal weights the in-flight counts compare as they are, as integers."""

    def pick(self, proto: Any, req: Any, exclude: TargetState | None) -> TargetState | None:
        targets = self.targets
        n = len(targets)
        i = self._next
        best = None
        fallback = None
        best_score: float = math.inf
        weighted = self._weighted
        for _ in range(n):
            target = targets[i]
            i += 1
            if i == n:
                i = 0
            if not target.usable:
                continue
            if target is exclude:
                fallback = target
                continue
            score = (target.active + 1) / target.weight if weighted else target.active
            if score < best_score:
                best = target
                best_score = score
        if best is None:
            return fallback
        self._next = best.index + 1 if best.index + 1 < n else 0
        return best


class P2CEwma:
    """Power of two choices: of two usable targets drawn at random, the one whose latency EWMA
    (faded while it is idle, by seconds and by this upstream's picks: `PickClock`) times its
    attempts in flight, over its weight, is lower. Random draws keep workers from herding onto
    the same target."""

    __slots__ = ("targets", "clock", "_random", "_picks")

    def __init__(
        self, targets: Sequence[TargetState], clock: Any, rng: random.Random | None = None,
        idle_rounds: float = IDLE_ROUNDS,
    ) -> None:
        self.targets = targets
        self.clock = clock
        self._random = (rng or random.Random()).random
        self._picks = PickClock(len(targets), idle_rounds)
        for target in targets:
            target.picks = self._picks

    def pick(self, proto: Any, req: Any, exclude: TargetState | None) -> TargetState | None:
        targets = self.targets
        n = len(targets)
        rand = self._random
        self._picks.now += 1
        if n > 1:
            i = int(rand() * n)
            j = int(rand() * (n - 1))
            if j >= i:
                j += 1
            a = targets[i]
            b = targets[j]
            if a.usable and b.usable and a is not exclude and b is not exclude:
                return a if self._cost(a) <= self._cost(b) else b
        candidates = [t for t in targets if t.usable and t is not exclude]
        if not candidates:
            return exclude if exclude is not None and exclude.usable else None
        if len(candidates) == 1:
            return candidates[0]
        i = int(rand() * len(candidates))
        j = int(rand() * (len(candidates) - 1))
        if j >= i:
            j += 1
        a = candidates[i]
        b = candidates[j]
        return a if self._cost(a) <= self._cost(b) else b

    @staticmethod
    def _cost(target: TargetState) -> float:
        return target.estimate() * (target.active + 1) / target.weight


def hash64(data: bytes) -> int:
    """A stable 64-bit hash: the same key maps to the same target across workers, restarts and
    gateway hosts (Python's own `hash` is salted per process)."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


class ConsistentHash:
    """A ketama-style ring: each target owns VNODES × weight points placed by hashing its
    address, so points depend on the target alone and adding or removing one target moves only
    the keys it gains or loses (about 1/N). A key goes to the owner of the first point at or after
    its hash; when that target is not usable, to the next distinct one along the ring. Requests
    without the key (no such header or cookie) are spread round robin."""

    __slots__ = ("targets", "_points", "_owners", "_key", "_fallback")

    def __init__(self, targets: Sequence[TargetState], labels: Sequence[str], key: HashKey) -> None:
        self.targets = targets
        ring = sorted(
            (hash64(f"{label}#{v}".encode()), target.index)
            for target, label in zip(targets, labels, strict=True)
            for v in range(VNODES * target.weight)
        )
        self._points = [point for point, _ in ring]
        self._owners = [targets[index] for _, index in ring]
        self._key = request_key(key)
        self._fallback = RoundRobin(targets)

    def pick(self, proto: Any, req: Any, exclude: TargetState | None) -> TargetState | None:
        key = self._key.of(req)
        if key is None:
            return self._fallback.pick(proto, req, exclude)
        return self.owner(hash64(key), exclude)

    def owner(self, point: int, exclude: TargetState | None) -> TargetState | None:
        owners = self._owners
        m = len(owners)
        i = bisect(self._points, point)
        fallback = None
        for _ in range(m):
            if i >= m:
                i = 0
            target = owners[i]
            if target.usable:
                if target is not exclude:
                    return target
                fallback = target
            i += 1
        return fallback


def request_key(key: HashKey) -> RequestKey:
    """The request key a `hash_key` names: the pipeline's, shared with rate limits."""
    return RequestKey(key.kind, key.name) if key.name else RequestKey(key.kind)


Balancer = Single | RoundRobin | Weighted | LeastConn | P2CEwma | ConsistentHash


def make_balancer(
    upstream: Upstream, targets: Sequence[TargetState], labels: Sequence[str], clock: Any,
    rng: random.Random | None = None,
) -> Balancer:
    """The balancer for `upstream.balance`; `rng` (default: a fresh one) draws `p2c_ewma`'s pairs."""
    balance = upstream.balance
    if len(targets) == 1:
        return Single(targets[0])
    if balance == "round_robin":
        return RoundRobin(targets)
    if balance == "least_conn":
        return LeastConn(targets)
    if balance == "p2c_ewma":
        return P2CEwma(targets, clock, rng)
    if balance == "hash":
        return ConsistentHash(targets, labels, upstream.hash_key or HashKey())
    return Weighted(targets)
