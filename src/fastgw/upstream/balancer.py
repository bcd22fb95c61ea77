"""Which target an attempt goes to: one balancer per `balance` mode, built here from the config.

Every balancer picks only `usable` targets (healthy and not ejected), avoids `exclude` (the target
an attempt just failed on) unless it is the only usable one, and returns None when no target is
usable (the request gets 503). They are compiled (`fastgw._proxy`: `Single`, `RoundRobin`,
`Weighted`, `LeastConn`, `P2CEwma`, `ConsistentHash`), since the exchange picks once per attempt;
what can be done once (the hash ring) is done here, at build time, and `round_robin`, `weighted`
and `least_conn` allocate nothing per pick.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

from fastgw._proxy import (
    Balancer,
    ConsistentHash,
    LeastConn,
    P2CEwma,
    RequestKey,
    RoundRobin,
    Single,
    TargetState,
    Weighted,
)
from fastgw.config.model import HashKey, Upstream

VNODES = 160
"""Ring points per unit of weight (ketama's figure): enough for an even spread and a ~1/N move
when a target comes or goes."""


def hash64(data: bytes) -> int:
    """A stable 64-bit hash: the same key maps to the same target across workers, restarts and
    gateway hosts (Python's own `hash` is salted per process)."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


def request_key(key: HashKey) -> RequestKey:
    """The request key a `hash_key` names: the pipeline's, shared with rate limits."""
    return RequestKey(key.kind, key.name) if key.name else RequestKey(key.kind)


def consistent_hash(targets: Sequence[TargetState], labels: Sequence[str], key: HashKey) -> ConsistentHash:
    """The ketama-style ring of `balance: hash`: each target owns VNODES × weight points placed
    by hashing its address, so points depend on the target alone and adding or removing one
    target moves only the keys it gains or loses (about 1/N)."""
    ring = sorted(
        (hash64(f"{label}#{v}".encode()), target.index)
        for target, label in zip(targets, labels, strict=True)
        for v in range(VNODES * target.weight)
    )
    points = [point for point, _ in ring]
    owners = [targets[index] for _, index in ring]
    return ConsistentHash(targets, points, owners, request_key(key), hash64)


def make_balancer(
    upstream: Upstream,
    targets: Sequence[TargetState],
    labels: Sequence[str],
    clock: Any,
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
        return consistent_hash(targets, labels, upstream.hash_key or HashKey())
    return Weighted(targets)
