"""Plain-Python twins of the rate-limit core (`fastgw._core` TokenBucket, BucketTable, Limit).

Deliberately the textbook token bucket (a token count refilled lazily on each call), not GCRA,
so that property tests check the compiled GCRA against the classic definition rather than
against itself. Arithmetic follows the type of `rate` and `burst`: floats as the gateway would
use them, or `fractions.Fraction` to make the model exact for tests.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

NS = 1_000_000_000
_M64 = (1 << 64) - 1
_P0 = 0xA0761D6478BD642F
_P1 = 0xE7037ED1A0B428DB
_P2 = 0x8EBC6AF09C88C6E3
_P3 = 0x589965CC75374CC3


def _mum(a: int, b: int) -> int:
    r = a * b
    return (r & _M64) ^ (r >> 64)


def hash64(data: bytes, seed: int) -> int:
    """The C `fg_hash` bit for bit, so a test can pin the compiled hash to a readable one."""
    h = seed ^ _P0
    full = len(data) - len(data) % 8
    for i in range(0, full, 8):
        h = _mum(h ^ int.from_bytes(data[i : i + 8], "little"), _P1)
    h = _mum(h ^ int.from_bytes(data[full:], "little"), _P2 ^ len(data))
    return _mum(h ^ _P3, _P1 ^ (h >> 29))


def key_hash(limit_id: bytes, key: bytes, seed: int) -> int:
    """Table key for (limit, client key); never 0, which marks an empty slot in the core."""
    return hash64(key, hash64(limit_id, seed)) or _P0


class Limit:
    """A (rate, burst) pair; the model needs no precomputation, the core does."""

    __slots__ = ("burst", "rate")

    def __init__(self, rate, burst):
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        if not (burst >= 1 and math.isfinite(burst)):
            raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")
        self.rate = rate
        self.burst = burst


class _Bucket:
    """Token count, the instant it was last refilled, and the limit it was last used with."""

    __slots__ = ("last", "limit", "tokens")

    def __init__(self, limit: Limit, now: int):
        self.limit = limit
        self.tokens = limit.burst
        self.last = now

    def refill(self, now: int) -> None:
        if now > self.last:
            elapsed = now - self.last
            self.tokens = min(self.limit.burst, self.tokens + elapsed * self.limit.rate / NS)
            self.last = now

    def take(self, n: int) -> bool:
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def wait(self, n: int):
        """Seconds until `n` tokens are in the bucket; inf if it can never hold them."""
        if n > self.limit.burst:
            return math.inf
        return max(0, (n - self.tokens) / self.limit.rate)

    def reset_after(self):
        return (self.limit.burst - self.tokens) / self.limit.rate


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


class TokenBucket:
    """One token bucket; starts full; `clock` returns monotonic ns."""

    def __init__(self, rate, burst, clock: Callable[[], int] | None = None):
        self.limit = Limit(rate, burst)
        self._clock = clock or time.monotonic_ns
        self._bucket = _Bucket(self.limit, self._clock())

    def _refilled(self) -> _Bucket:
        self._bucket.refill(self._clock())
        return self._bucket

    def consume(self, n: int = 1) -> bool:
        _check_n(n)
        return self._refilled().take(n)

    def time_to_next(self):
        return self._refilled().wait(1)

    @property
    def remaining(self) -> int:
        return math.floor(self._refilled().tokens)

    @property
    def reset_after(self):
        return self._refilled().reset_after()


class BucketTable:
    """A dict of buckets, unbounded: the twin of the shared table without its eviction."""

    def __init__(self, clock: Callable[[], int] | None = None):
        self._clock = clock or time.monotonic_ns
        self._buckets: dict[Hashable, _Bucket] = {}
        self.remaining = 0
        self.retry_after = 0
        self.reset_after = 0

    def consume(self, key: Hashable, limit: Limit, n: int = 1) -> bool:
        _check_n(n)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit, now)
        bucket.limit = limit
        bucket.refill(now)
        allowed = bucket.take(n)
        self.remaining = math.floor(bucket.tokens)
        self.retry_after = bucket.wait(n)
        self.reset_after = bucket.reset_after()
        return allowed

    def stats(self) -> dict:
        now = self._clock()
        active = 0
        for bucket in self._buckets.values():
            bucket.refill(now)
            active += bucket.tokens < bucket.limit.burst
        return {"capacity": None, "used": len(self._buckets), "active": active, "evictions": 0}
