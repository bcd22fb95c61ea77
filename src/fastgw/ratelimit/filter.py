"""The rate-limit request filter and the local-scope limit it decides with.

One filter per limited route (`route_filter`), built once per worker; it runs in the pipeline's
RATE_LIMIT phase, after auth, so identity keys (`claim:`, `consumer`) are known. Per request it
computes each limit's key, takes one token from each bucket, and either lets the request go on
with `RateLimit-*` lines on whatever response it gets, or refuses it with 429 and `Retry-After`
(DESIGN §5, §8). Nothing here allocates beyond the key, its hash and the rendered header lines.
The common case, a route whose only limit is local, is served in C by the limit's compiled twin
(`fastgw._core.LocalLimitFilter`); `RateLimitFilter` serves the others with the same rules.

A limit (`LocalLimit` here, `ClusterLimit` in `cluster`) offers the same small interface:
`key(req)`, `take(key)` and `check(key)` (would one token be granted? takes nothing), after
either of which `remaining`, `reset_s` and `retry_s` describe that bucket, plus the prebuilt
`limit_line` and the counters.

Several limits on a route: every limit is checked first, without taking anything, and only when
all would grant is a token taken from each, so a refusal costs no limit a token. Two requests
racing for the last token of a later limit can both pass the check; the loser is then refused
after the limits before it took their token: at most one token per such race.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fastgw._core import BucketTable, Limit
from fastgw._proxy import LocalLimitFilter, Reply
from fastgw.config.model import RateLimit, Route
from fastgw.pipeline import RequestPhase

from .keys import limit_key, request_key, route_key

NS = 1_000_000_000
STATS = ("allowed", "refused", "shadow_refused")
"""Counters of every limit (`ratelimit.<counter>` in docs/operations.md), per worker."""


class Decider(Protocol):
    spec: RateLimit
    enforce: bool
    limit_line: bytes
    remaining: int
    reset_s: int
    retry_s: int
    allowed: int
    refused: int
    shadow_refused: int

    def key(self, req: Any) -> Any: ...
    def take(self, key: Any) -> bool: ...
    def check(self, key: Any) -> bool: ...
    def refusal_message(self) -> str | None: ...
    def stats(self) -> dict[str, int]: ...


def limit_line(spec: RateLimit) -> bytes:
    """The constant part of the headers: `RateLimit-Limit` is the burst (DESIGN §8)."""
    return b"ratelimit-limit: %d\r\n" % spec.burst


def limit_id(spec: RateLimit) -> bytes:
    return spec.identity.encode()


class LocalLimit:
    """A local-scope limit in one worker: its buckets live in the host's shared table. Its
    `compiled` twin (`fastgw._core.LocalLimitFilter`) is the whole filter of a route that has
    this limit alone, and holds the counters of both."""

    __slots__ = (
        "spec", "enforce", "limit", "table", "limit_id", "limit_line", "compiled", "_rkey", "_route_keys",
        "_peek_n", "remaining", "reset_s", "retry_s",
    )

    def __init__(self, spec: RateLimit, table: BucketTable, routes: Sequence[Route]) -> None:
        self.spec = spec
        self.enforce = spec.enforce
        self.limit = Limit(spec.rate, spec.burst)
        self.table = table
        self.limit_id = limit_id(spec)
        self.limit_line = limit_line(spec)
        self._rkey = request_key(spec.key)
        self._route_keys = tuple(table.key_hash(self.limit_id, route_key(r)) for r in routes)
        self.compiled = LocalLimitFilter(
            table, self.limit, self.limit_id, self.limit_line, self._rkey, self._route_keys, spec.enforce
        )
        # More tokens than the bucket can ever hold: the table refuses without touching the
        # bucket and reports what is left, which is how `check` peeks.
        self._peek_n = self.limit.max_n + 1
        self.remaining = 0
        self.reset_s = 0
        self.retry_s = 0

    @property
    def allowed(self) -> int:
        return self.compiled.allowed

    @allowed.setter
    def allowed(self, value: int) -> None:
        self.compiled.allowed = value

    @property
    def refused(self) -> int:
        return self.compiled.refused

    @refused.setter
    def refused(self, value: int) -> None:
        self.compiled.refused = value

    @property
    def shadow_refused(self) -> int:
        return self.compiled.shadow_refused

    @shadow_refused.setter
    def shadow_refused(self, value: int) -> None:
        self.compiled.shadow_refused = value

    def key(self, req: Any) -> int:
        if self.spec.key == "route":
            return self._route_keys[req.plan.index]  # type: ignore[no-any-return]
        return self.table.key_hash(self.limit_id, limit_key(self._rkey, req))

    def take(self, key: int) -> bool:
        table = self.table
        ok = table.consume(key, self.limit)
        self.remaining = table.remaining
        self.reset_s = -(-table.reset_after_ns // NS)
        if not ok:
            self.retry_s = -(-table.retry_after_ns // NS)
        return ok

    def check(self, key: int) -> bool:
        table = self.table
        table.consume(key, self.limit, self._peek_n)
        remaining = table.remaining
        debt = table.reset_after_ns
        self.remaining = remaining
        self.reset_s = -(-debt // NS)
        if remaining >= 1:
            return True
        limit = self.limit
        self.retry_s = -(-(debt + limit.interval_ns - limit.tau_ns) // NS)
        return False

    def refusal_message(self) -> str | None:
        return None

    def stats(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in STATS}


def _lines(lim: Decider) -> bytes:
    return lim.limit_line + b"ratelimit-remaining: %d\r\nratelimit-reset: %d\r\n" % (lim.remaining, lim.reset_s)


def _refuse(lim: Decider, retry_s: int) -> Reply:
    lines = b"retry-after: %d\r\n" % max(retry_s, 1) + _lines(lim)
    headers = [tuple(line.split(b": ", 1)) for line in lines.split(b"\r\n") if line]
    return Reply.error(429, lim.refusal_message(), headers)


def route_filter(limits: Sequence[Decider]) -> Any:
    """The request filter of a route with these limits: a local limit alone is served by its
    compiled twin (one C call per request), anything else by `RateLimitFilter`."""
    if len(limits) == 1 and isinstance(limits[0], LocalLimit):
        return limits[0].compiled
    return RateLimitFilter(limits)


class RateLimitFilter:
    """The request filter of one route whose limits are several, or cluster-scope."""

    __slots__ = ("limits", "_one")
    request_phase = RequestPhase.RATE_LIMIT

    def __init__(self, limits: Sequence[Decider]) -> None:
        if not limits:
            raise ValueError("a rate-limit filter needs at least one limit")
        self.limits = tuple(limits)
        self._one = self.limits[0] if len(self.limits) == 1 else None

    def on_request(self, req: Any) -> Reply | None:
        lim = self._one
        if lim is not None:
            if lim.take(lim.key(req)):
                lim.allowed += 1
            elif lim.enforce:
                lim.refused += 1
                return _refuse(lim, lim.retry_s)
            else:
                lim.shadow_refused += 1
            req.resp_extra += _lines(lim)
            return None
        return self._several(req)

    def _several(self, req: Any) -> Reply | None:
        limits = self.limits
        keys = [lim.key(req) for lim in limits]
        refusing = None
        retry_s = 0
        for lim, key in zip(limits, keys, strict=True):
            if lim.enforce and not lim.check(key):
                lim.refused += 1
                if refusing is None or lim.retry_s > retry_s:
                    refusing, retry_s = lim, lim.retry_s
        if refusing is not None:
            # Retry-After is the latest of the refusing limits: earlier, some would still refuse.
            return _refuse(refusing, retry_s)
        tightest = None
        for lim, key in zip(limits, keys, strict=True):
            if lim.take(key):
                lim.allowed += 1
            elif lim.enforce:
                lim.refused += 1
                return _refuse(lim, lim.retry_s)
            else:
                lim.shadow_refused += 1
            if tightest is None or lim.remaining < tightest.remaining or (
                lim.remaining == tightest.remaining and lim.reset_s > tightest.reset_s
            ):
                tightest = lim
        assert tightest is not None
        req.resp_extra += _lines(tightest)
        return None
