"""Per-worker upstream state: keep-alive pools per target and the group that picks a target.

The connections themselves (`fastgw.upstream.connection.UpstreamConnection`, compiled in
`fastgw._core`) parse responses and hand them to the client exchange they are bound to.
"""
from __future__ import annotations

import asyncio
from typing import Any

from fastgw.config.model import Target, Upstream
from fastgw.upstream.connection import UpstreamConnection


class Clock:
    """A coarse clock shared by a worker, ticked by its sweeper so that hot code reads a float
    attribute instead of calling into the loop."""

    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now


class TargetPool:
    __slots__ = (
        "target", "host", "port", "label", "idle", "busy", "max_idle", "connect_timeout",
        "read_timeout", "idle_timeout", "clock", "loop", "draining",
    )

    def __init__(
        self, target: Target, upstream: Upstream, clock: Clock, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.target = target
        self.host = target.address.host
        self.port = target.address.port
        self.label = str(target.address)
        self.idle: list[UpstreamConnection] = []
        self.busy: set[UpstreamConnection] = set()
        self.max_idle = upstream.keepalive
        self.connect_timeout = upstream.timeouts.connect
        self.read_timeout = upstream.timeouts.read
        self.idle_timeout = KEEPALIVE_IDLE
        self.clock = clock
        self.loop = loop
        self.draining = False

    def take(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                self.busy.add(conn)
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await self.loop.create_connection(
                lambda: UpstreamConnection(self), self.host, self.port
            )
        conn.reused = False
        self.busy.add(conn)
        return conn

    def give(self, conn: UpstreamConnection) -> None:
        self.busy.discard(conn)
        if len(self.idle) < self.max_idle and not self.draining:
            conn.last_active = self.clock.now
            self.idle.append(conn)
        else:
            conn.closed = True
            conn.transport.close()

    def forget(self, conn: UpstreamConnection) -> None:
        self.busy.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def sweep(self, now: float) -> None:
        """Closes idle connections before the upstream is likely to, so that a request is rarely
        sent on a connection the upstream is closing (the keep-alive race)."""
        idle = self.idle
        if idle and now - idle[0].last_active > self.idle_timeout:
            keep = []
            for conn in idle:
                if now - conn.last_active > self.idle_timeout:
                    conn.closed = True
                    conn.transport.close()
                else:
                    keep.append(conn)
            self.idle = keep
        for conn in tuple(self.busy):
            if conn.busy and now - conn.last_active > self.read_timeout:
                conn.timed_out()

    def begin(self) -> None:
        """An attempt on this target starts; exactly one of on_success, on_failure or on_cancel
        follows."""

    def on_success(self, status: int, elapsed: float) -> None:
        """An exchange with this target completed (any status): outlier detection and latency
        tracking hook in here."""

    def on_failure(self, kind: str) -> None:
        """An exchange failed: `connect_error`, `reset`, `timeout` or `protocol_error`."""

    def on_cancel(self) -> None:
        """The attempt ended for a reason that says nothing about the target (the client left,
        or a pooled connection turned out stale)."""

    def close_all(self) -> None:
        self.draining = True
        for conn in self.idle:
            conn.closed = True
            conn.transport.close()
        self.idle = []


KEEPALIVE_IDLE = 15.0
"""Seconds an idle upstream connection is kept: below the common backend defaults (nginx 75 s,
Node 5 s is the exception — a stale-connection retry covers it)."""


class UpstreamGroup:
    """The targets of one upstream, picked by smooth weighted round robin."""

    __slots__ = ("name", "pools", "retry", "retry_statuses", "_weights", "_current", "_total")

    def __init__(self, upstream: Upstream, clock: Clock, loop: asyncio.AbstractEventLoop) -> None:
        self.name = upstream.name
        self.retry: Any = ConnectErrorRetry()
        """Asked by the protocol whether a failed attempt may be tried again elsewhere."""
        self.retry_statuses: frozenset[int] | None = None
        """Upstream statuses worth a retry (None: none), checked before `retry.allows`."""
        self.pools = [TargetPool(t, upstream, clock, loop) for t in upstream.targets]
        self._weights = [t.weight for t in upstream.targets]
        self._current = [0] * len(self.pools)
        self._total = sum(self._weights)

    def on_request(self) -> None:
        """Once per request routed to this upstream (the retry budget's denominator)."""

    def pick(self, proto: Any, req: Any, exclude: TargetPool | None) -> TargetPool | None:
        """The target for the next attempt of `req` (from client connection `proto`), other than
        `exclude` where possible; None when no target may be used (the request gets 503)."""
        pools = self.pools
        if len(pools) == 1:
            return pools[0]
        current = self._current
        weights = self._weights
        best = -1
        for i in range(len(pools)):
            current[i] += weights[i]
            if pools[i] is not exclude and (best < 0 or current[i] > current[best]):
                best = i
        current[best] -= self._total
        return pools[best]


class ConnectErrorRetry:
    """The default policy (DESIGN §8): two attempts in all, and only after a connect error."""

    __slots__ = ()
    per_try_timeout = None
    total_timeout = None

    def allows(self, outcome: object, attempts: int, idempotent: bool, request_sent: bool) -> bool:
        return outcome == "connect_error" and attempts < 2
