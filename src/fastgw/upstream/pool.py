"""Per-worker upstream connections: keep-alive pools per target and the upstream side of an
exchange.

An `UpstreamConnection` parses responses with httptools and hands every event straight to the
client protocol it is bound to; it carries no per-request object of its own, so an exchange on a
pooled connection allocates nothing here.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from fastgw.config.model import Target, Upstream

if TYPE_CHECKING:
    from fastgw.http.protocol import ClientProtocol


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "pool", "transport", "parser", "client", "headers", "closed", "reused", "last_active",
        "got_bytes", "done", "broken", "write_paused", "until_close", "keep_alive",
    )

    def __init__(self, pool: TargetPool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.parser = HttpResponseParser(self)
        self.client: ClientProtocol | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.closed = False
        self.reused = False
        self.last_active = 0.0
        self.got_bytes = False
        self.done = False
        self.broken = False
        self.write_paused = False
        self.keep_alive = False
        """llhttp's verdict, read at message complete: it resets its flags right after."""
        self.until_close = False
        """The response in progress has no length and ends when the upstream closes."""

    # asyncio callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or self.done:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.broken = True
            self.transport.abort()
            return
        self.got_bytes = True
        self.last_active = self.pool.clock.now
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            client.upstream_failed(self, 502, "upstream switched protocols unrequested")
            return
        except HttpParserError as exc:
            if self.client is not None:
                client.upstream_failed(self, 502, f"invalid upstream response: {exc}")
            return
        if self.done and self.client is not None:
            client.upstream_complete(self)
        else:
            client.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        client = self.client
        if client is not None and not self.done:
            if self.until_close and exc is None:
                client.upstream_message_complete(self)
                self.done = True
                client.upstream_complete(self)
                return
            client.upstream_lost(self)
        else:
            self.pool.forget(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.client is not None:
            self.client.pause_for_upstream()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.client is not None:
            self.client.resume_for_upstream()

    # httptools callbacks

    # Once the response is complete (`done`), whatever llhttp still parses from the same read is
    # bytes after the response: ignored, and the connection is not reused (DESIGN §8).

    def on_message_begin(self) -> None:
        if self.done:
            self.broken = True
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        client = self.client
        if client is not None and not self.done:
            client.upstream_head(self, self.parser.get_status_code(), self.headers)

    def on_body(self, body: bytes) -> None:
        client = self.client
        if client is not None and not self.done:
            client.upstream_body(body)

    def on_message_complete(self) -> None:
        client = self.client
        if client is not None and not self.done and client.upstream_message_complete(self):
            self.keep_alive = self.parser.should_keep_alive()
            self.done = True

    # exchange lifecycle

    def bind(self, client: ClientProtocol) -> None:
        self.client = client
        self.done = False
        self.until_close = False
        self.got_bytes = False
        self.last_active = self.pool.clock.now

    def release(self, reusable: bool) -> None:
        """Ends the exchange: back to the pool when the response was complete and framed, closed
        otherwise (any doubt about where the next response starts means no reuse)."""
        self.client = None
        if reusable and not self.broken and not self.closed and self.keep_alive:
            self.pool.give(self)
        else:
            self.abort()

    def abort(self) -> None:
        self.client = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)


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
            client = conn.client
            if client is not None and now - conn.last_active > self.read_timeout:
                client.upstream_timeout(conn)

    def on_success(self, status: int, elapsed: float) -> None:
        """An exchange with this target completed (any status): outlier detection and latency
        tracking hook in here."""

    def on_failure(self, kind: str) -> None:
        """An exchange failed: `connect_error`, `reset`, `timeout` or `protocol_error`."""

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

    __slots__ = ("name", "pools", "_weights", "_current", "_total")

    def __init__(self, upstream: Upstream, clock: Clock, loop: asyncio.AbstractEventLoop) -> None:
        self.name = upstream.name
        self.pools = [TargetPool(t, upstream, clock, loop) for t in upstream.targets]
        self._weights = [t.weight for t in upstream.targets]
        self._current = [0] * len(self.pools)
        self._total = sum(self._weights)

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
