"""Per-worker upstream state: keep-alive pools per target and the group that picks a target.

The connections themselves (`fastgw.upstream.connection.UpstreamConnection`, compiled in
`fastgw._proxy`) parse responses and hand them to the client exchange they are bound to.
"""
from __future__ import annotations

import asyncio
from typing import Any

from fastgw.config.model import Target, Upstream
from fastgw.tls import upstream_context, upstream_server_hostname
from fastgw.upstream.connection import UpstreamConnection
from fastgw.upstream.group import TargetGroup
from fastgw.upstream.shared import GroupView
from fastgw.upstream.target import TargetState


class Clock:
    """A coarse clock shared by a worker, ticked by its sweeper so that hot code reads a float
    attribute instead of calling into the loop."""

    __slots__ = ("now",)

    def __init__(self, now: float) -> None:
        self.now = now


class TargetPool(TargetState):
    """One target's keep-alive connections; attempt outcomes (`begin`, `on_success`,
    `on_failure`, `on_cancel`) are `TargetState`'s.

    How many idle connections are kept: at least `keepalive` (`max_idle`), and as many as were
    busy at once in the last PEAK_WINDOW seconds. nginx keeps exactly `keepalive` idle and closes
    the rest, which is cheap for nginx: it opens the next one in C. A connection opened from the
    event loop costs about 100,000 instructions here against nginx's 800 (bench/RESULTS.md), so
    with more requests in flight than `keepalive` (256 client connections, 32 kept) closing and
    reopening made a request cost 2.6 times as much. Keeping what recent load needed removes that
    churn; the sweeper still closes connections idle for KEEPALIVE_IDLE seconds, so a burst does
    not hold its connections after it."""

    __slots__ = (
        "target", "host", "port", "label", "idle", "busy", "max_idle", "connect_timeout",
        "read_timeout", "idle_timeout", "loop", "draining", "peak", "prev_peak", "window_start", "tls",
    )

    def __init__(
        self, target: Target, upstream: Upstream, clock: Clock, loop: asyncio.AbstractEventLoop
    ) -> None:
        TargetState.__init__(self, target.weight, clock)
        self.target = target
        self.host = target.address.host
        self.port = target.address.port
        self.label = str(target.address)
        self.tls: dict[str, Any] = {}
        """`create_connection` arguments for an upstream with `tls` (see fastgw.tls)."""
        if upstream.tls is not None:
            self.tls = {
                "ssl": upstream_context(upstream.tls),
                "server_hostname": upstream_server_hostname(upstream.tls, upstream.host_header, self.host),
            }
        self.idle: list[UpstreamConnection] = []
        self.busy: set[UpstreamConnection] = set()
        self.max_idle = upstream.keepalive
        self.connect_timeout = upstream.timeouts.connect
        self.read_timeout = upstream.timeouts.read
        self.idle_timeout = KEEPALIVE_IDLE
        self.loop = loop
        self.draining = False
        self.peak = 0
        """Most connections busy at once in this window (see the class docstring)."""
        self.prev_peak = 0
        self.window_start = clock.now

    def take(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if conn.has_pending():
                conn.abort()
                continue
            conn.reused = True
            busy = self.busy
            busy.add(conn)
            if len(busy) > self.peak:
                self.peak = len(busy)
            return conn
        return None

    async def connect(self) -> UpstreamConnection:
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await self.loop.create_connection(
                lambda: UpstreamConnection(self), self.host, self.port, **self.tls
            )
        conn.reused = False
        busy = self.busy
        busy.add(conn)
        if len(busy) > self.peak:
            self.peak = len(busy)
        return conn

    def give(self, conn: UpstreamConnection) -> None:
        self.busy.discard(conn)
        idle = len(self.idle)
        if (idle < self.max_idle or idle < self.peak or idle < self.prev_peak) and not self.draining:
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
        if now - self.window_start >= PEAK_WINDOW:
            self.prev_peak = self.peak
            self.peak = len(self.busy)
            self.window_start = now
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

    def close_all(self) -> None:
        self.draining = True
        for conn in self.idle:
            conn.closed = True
            conn.transport.close()
        self.idle = []


PEAK_WINDOW = 10.0
"""Seconds over which the pool remembers how many connections were busy at once."""
KEEPALIVE_IDLE = 15.0
"""Seconds an idle upstream connection is kept: below the common backend defaults (nginx 75 s,
Node 5 s is the exception — a stale-connection retry covers it)."""


class UpstreamGroup(TargetGroup):
    """The targets of one upstream with their pools. Picking, retries and health are
    `TargetGroup`'s (`fastgw.upstream.group`): `pick`, `on_request`, `retry`, `retry_statuses`."""

    __slots__ = ("default_host_line",)

    def __init__(
        self, upstream: Upstream, clock: Clock, loop: asyncio.AbstractEventLoop, view: GroupView | None = None
    ) -> None:
        pools = [TargetPool(t, upstream, clock, loop) for t in upstream.targets]
        super().__init__(upstream, pools, [p.label for p in pools], clock, view)
        self.default_host_line = b"host: %s\r\n" % pools[0].label.encode()
        """For HTTP/1.0 clients that sent no Host: the first target's address."""
