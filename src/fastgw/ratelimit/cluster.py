"""Cluster-scope limits (`scope: cluster`): the buckets live in Redis, shared by every gateway
host; each worker decides from tokens it leases from them, so no request waits for Redis.

Redis keeps one GCRA bucket per (limit, key), changed only by `LEASE_SCRIPT`, which runs
atomically on the server with the server's clock (one clock for every host). A call of the script
charges the tokens the worker has already spent on credit (`debt`, below) and grants up to `want`
more; it answers what it granted and how the bucket stands.

Per key, a worker holds a `Lease`: tokens granted and not yet used. A request takes one of them,
and when the lease runs low the worker asks for more in the background (requests of one loop
iteration go in one pipelined round trip, one in flight per limit and worker). When the lease is
empty:

- if the last answer showed Redis holding plenty (at least a lease more), or the key is new, the
  request is allowed on credit, up to one lease of debt, charged by the next call: a client's
  first requests never wait for a round trip;
- otherwise the bucket is empty: the request is refused, with `Retry-After` from Redis's answer,
  and Redis is asked again only once a token can be there.

Accuracy: Redis grants exactly what its bucket allows. A worker can exceed that by at most its
credit (one lease) per key, charged right after, and can strand at most one lease per key unused
(it is dropped when the key goes idle). With `W` workers over all hosts and a lease of `L`
tokens, the cluster lets through `R×T + burst` within ± `W×L` per key over any window, and
the lease is small: `L = max(1, min(ceil(rate × LEASE_TIME), ceil(burst / 4)))`, 20 ms of rate.

Redis slow or down (`on_redis_error`, `redis_timeout`): a call that fails or has not answered
within `redis_timeout` marks Redis unavailable for this limit in this worker. From then on,
tokens already leased are still used, and every other decision is made by the policy: `open`
allows the request, `closed` refuses it with 429. Redis is probed again after 0.1 s, doubling to
1 s, by the next request that needs it; the first answer ends the outage. A decision is always
made at once, from local state: requests never wait for Redis.
"""
from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastgw.backoff import Backoff
from fastgw.config.model import RateLimit, Route

from .filter import STATS, limit_line
from .keys import limit_key, request_key, route_key

LEASE_TIME = 0.02
"""Seconds of the limit's rate that one lease holds (bounded by a quarter of the burst)."""
MAX_ENTRIES = 100_000
"""Keys a worker keeps leases for, per limit; beyond, the least recently created go first."""
MAX_KEY = 64
"""Key bytes kept as they are in a worker's table of leases; longer keys are kept as a digest."""
IDLE = 10.0
"""Seconds without a request after which a key's lease is dropped."""
SWEEP = 1.0
"""Seconds between two sweeps of a worker's idle leases."""
MAX_PIPELINE = 512
BACKOFF_MIN = 0.1
BACKOFF_MAX = 1.0
EPOCH = 1_700_000_000
"""Redis time is kept in µs since this Unix time, so that a float holds it to a few ns."""
CLUSTER_STATS = (*STATS, "fail_open", "fail_closed", "redis_calls", "redis_errors")

LEASE_SCRIPT = """
-- GCRA bucket in KEYS[1]: the theoretical arrival time, in µs since EPOCH (Redis's clock).
-- ARGV: µs per token, bucket depth in µs (burst × interval), debt (tokens already spent on
-- credit: charged whatever the bucket holds), want (tokens to lease: granted as far as held).
-- Returns {granted, whole tokens left, µs until full, µs until one token is there}.
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local debt = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = (tonumber(t[1]) - %d) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + debt * interval
local avail = math.floor((now + tau - tat) / interval + 1e-6)
local grant = want
if avail < grant then grant = avail end
if grant < 0 then grant = 0 end
tat = tat + grant * interval
local left = math.floor((now + tau - tat) / interval + 1e-6)
if left < 0 then left = 0 end
local retry = 0
if left < 1 then retry = tat + interval - tau - now end
local reset = tat - now
if reset > 0 then
  redis.call('SET', KEYS[1], string.format('%%.3f', tat), 'PX', math.ceil(reset / 1000) + 1)
end
return {grant, left, math.ceil(reset), math.ceil(retry)}
""" % EPOCH


class Lease:
    """One key's state in one worker."""

    __slots__ = ("rkey", "tokens", "debt", "flush", "queued", "next_fetch", "remaining", "reset_at", "used")

    def __init__(self, rkey: str, burst: int, now: float) -> None:
        self.rkey = rkey
        self.tokens = 0
        """Granted by Redis, not yet used."""
        self.debt = 0
        """Used on credit, not yet charged."""
        self.flush = True
        """Redis held at least a lease more at the last answer (or never answered): credit is
        allowed."""
        self.queued = False
        self.next_fetch = 0.0
        """When the empty bucket has a token again: no call before."""
        self.remaining = burst
        self.reset_at = now
        self.used = now


class ClusterLimit:
    """A cluster-scope limit in one worker (same interface as `filter.LocalLimit`)."""

    def __init__(
        self,
        spec: RateLimit,
        loop: asyncio.AbstractEventLoop,
        routes: Sequence[Route],
        *,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.enforce = spec.enforce
        self.limit_line = limit_line(spec)
        self.lease = max(1, min(math.ceil(spec.rate * LEASE_TIME), math.ceil(spec.burst / 4)))
        self._low = self.lease // 2
        self._interval = 1.0 / spec.rate
        self._args = (repr(1e6 / spec.rate), repr(spec.burst * 1e6 / spec.rate))
        self._rkey = request_key(spec.key)
        self._route_keys = tuple(route_key(r) for r in routes)
        digest = hashlib.blake2b(spec.identity.encode(), digest_size=6).hexdigest()
        self._prefix = f"fastgw:rl:{spec.name}:{digest}:"
        self._loop = loop
        self._clock = clock
        self._client = client if client is not None else _client(spec)
        self._sha: str | None = None
        self.entries: dict[bytes, Lease] = {}
        self._pending: list[Lease] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None
        self.down = False
        self._retry_at = 0.0
        self._backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX)
        self._policy_refused = False
        self.remaining = 0
        self.reset_s = 0
        self.retry_s = 0
        self.allowed = 0
        self.refused = 0
        self.shadow_refused = 0
        self.fail_open = 0
        self.fail_closed = 0
        self.redis_calls = 0
        self.redis_errors = 0

    # ---- decisions (request path) -------------------------------------------------------------

    def key(self, req: Any) -> bytes:
        if self.spec.key == "route":
            return self._route_keys[req.plan.index]
        return limit_key(self._rkey, req)

    def _entry(self, key: bytes, now: float) -> Lease:
        if len(key) > MAX_KEY:
            # A client choosing long keys must not choose how much memory its entries hold.
            key = hashlib.blake2b(key, digest_size=16, person=b"fastgw-long-key").digest()
        e = self.entries.get(key)
        if e is None:
            if len(self.entries) >= MAX_ENTRIES:
                self._evict()
            e = Lease(self._prefix + hashlib.blake2b(key, digest_size=16).hexdigest(), self.spec.burst, now)
            self.entries[key] = e
        e.used = now
        return e

    def take(self, key: bytes) -> bool:
        now = self._clock()
        e = self._entry(key, now)
        self._policy_refused = False
        if e.tokens > 0:
            e.tokens -= 1
            if e.tokens <= self._low and not e.queued and not self.down and (e.flush or now >= e.next_fetch):
                self._queue(e)
            return self._granted(e, now)
        if self.down:
            if now >= self._retry_at and not e.queued:
                self._queue(e)
            if self.spec.on_redis_error == "open":
                self.fail_open += 1
                return self._granted(e, now)
            self.fail_closed += 1
            return self._policy_refusal(now)
        if e.flush and e.debt < self.lease:
            e.debt += 1
            e.reset_at = max(e.reset_at, now) + self._interval
            if not e.queued:
                self._queue(e)
            return self._granted(e, now)
        if not e.queued and now >= e.next_fetch:
            self._queue(e)
        return self._empty(e, now)

    def check(self, key: bytes) -> bool:
        """Takes nothing, but asks Redis when `take` would: a route whose requests are all
        refused at the check must still see its bucket refill."""
        now = self._clock()
        e = self._entry(key, now)
        self._policy_refused = False
        if e.tokens > 0 or (not self.down and e.flush and e.debt < self.lease):
            return self._granted(e, now)
        if self.down:
            if now >= self._retry_at and not e.queued:
                self._queue(e)
            if self.spec.on_redis_error == "open":
                return self._granted(e, now)
            return self._policy_refusal(now)
        if not e.queued and now >= e.next_fetch:
            self._queue(e)
        return self._empty(e, now)

    def _granted(self, e: Lease, now: float) -> bool:
        self.remaining = min(max(e.remaining + e.tokens - e.debt, 0), self.spec.burst)
        self.reset_s = max(math.ceil(e.reset_at - now), 0)
        return True

    def _empty(self, e: Lease, now: float) -> bool:
        self.remaining = 0
        self.reset_s = max(math.ceil(e.reset_at - now), 1)
        self.retry_s = max(math.ceil(e.next_fetch - now), 1)
        return False

    def _policy_refusal(self, now: float) -> bool:
        self._policy_refused = True
        self.remaining = 0
        self.retry_s = self.reset_s = max(math.ceil(self._retry_at - now), 1)
        return False

    def refusal_message(self) -> str | None:
        if self._policy_refused:
            return "the rate limiter's store is unavailable; refused by on_redis_error: closed"
        return None

    def stats(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in CLUSTER_STATS}

    # ---- leases (background) ------------------------------------------------------------------

    def _queue(self, e: Lease) -> None:
        e.queued = True
        self._pending.append(e)
        if not self._flushing:
            self._flushing = True
            # Started on the next loop iteration, so that every request parsed in this one
            # shares the round trip.
            self._task = self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_PIPELINE]
                del self._pending[:MAX_PIPELINE]
                calls = []
                for e in batch:
                    calls.append((e, e.debt, max(self.lease - e.tokens, 0)))
                    e.debt = 0
                self.redis_calls += 1
                try:
                    results = await self._call(calls)
                except Exception:
                    self._failed(batch)
                    return
                self._answered(calls, results)
        finally:
            self._flushing = False

    async def _call(self, calls: list[tuple[Lease, int, int]]) -> list[Any]:
        """One pipelined round trip, bounded by `redis_timeout` (connecting included). Debt sent
        in a call that fails is not sent again: the call may have been applied."""
        from redis.exceptions import NoScriptError

        interval, tau = self._args
        async with asyncio.timeout(self.spec.redis_timeout):
            for _ in range(2):
                if self._sha is None:
                    self._sha = await self._client.script_load(LEASE_SCRIPT)
                pipe = self._client.pipeline(transaction=False)
                for e, debt, want in calls:
                    pipe.evalsha(self._sha, 1, e.rkey, interval, tau, debt, want)
                results: list[Any] = await pipe.execute(raise_on_error=False)
                if not any(isinstance(r, NoScriptError) for r in results):
                    return results
                # Redis restarted or its scripts were flushed: nothing was applied.
                self._sha = None
        raise ConnectionError("the lease script could not be loaded")

    def _answered(self, calls: list[tuple[Lease, int, int]], results: list[Any]) -> None:
        now = self._clock()
        self.down = False
        self._backoff.reset()
        for (e, _, want), result in zip(calls, results, strict=True):
            e.queued = False
            if isinstance(result, Exception):
                self.redis_errors += 1
                e.flush = False
                e.next_fetch = now + BACKOFF_MIN
                continue
            grant, left, reset_us, retry_us = (int(x) for x in result)
            e.tokens += grant
            e.remaining = left
            e.reset_at = now + reset_us / 1e6
            e.flush = left >= self.lease
            e.next_fetch = now + retry_us / 1e6 if grant < want else now

    def _failed(self, batch: list[Lease]) -> None:
        self.redis_errors += 1
        self.down = True
        self._retry_at = self._clock() + self._backoff.failed()
        for e in (*batch, *self._pending):
            e.queued = False
        self._pending.clear()

    def sweep(self) -> None:
        """Every SWEEP seconds (the worker's `Runtime.every`): drops leases of keys idle for IDLE
        seconds (owing nothing), so memory follows the keys in use."""
        horizon = self._clock() - IDLE
        idle = [k for k, e in self.entries.items() if e.used < horizon and not e.queued]
        for k in idle:
            e = self.entries[k]
            if e.debt and not self.down:
                self._queue(e)  # charged first, dropped by a later sweep
            else:
                del self.entries[k]

    def _evict(self) -> None:
        for k in list(self.entries)[: max(1, MAX_ENTRIES // 100)]:
            del self.entries[k]


def _client(spec: RateLimit) -> Any:
    """An asyncio Redis client whose every wait ends within `redis_timeout`, with no retries of
    its own (the lease logic decides what a failure means)."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis.from_url(
        spec.redis,
        socket_timeout=spec.redis_timeout,
        socket_connect_timeout=spec.redis_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
