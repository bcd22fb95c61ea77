"""A worker's runtime: the compiled routes, upstream pools and per-worker services the hot path
uses, built once per worker from a validated `Config`."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import Any

from fastgw._core import monotonic
from fastgw._proxy import Clock, RequestIds
from fastgw.auth.build import WorkerAuth
from fastgw.auth.shared import AuthShared
from fastgw.bridge import attach_bridge
from fastgw.cache import SharedCache, attach_cache
from fastgw.config.model import Config, Listener
from fastgw.http.replies import Replies
from fastgw.log import AccessLogWriter, log_exception, process_log
from fastgw.metrics.shared import SharedMetrics
from fastgw.metrics.worker import WorkerMetrics
from fastgw.pipeline.chain import access_filter, attach_chains
from fastgw.ratelimit import SharedBuckets, attach_rate_limits
from fastgw.routing import compile_routes
from fastgw.tracing import attach_tracing
from fastgw.upstream.client import UpstreamClient
from fastgw.upstream.pool import UpstreamGroup
from fastgw.upstream.shared import UpstreamShared

TICK = 0.1
"""Seconds between sweeps: the resolution of every timeout, of the coarse clock and of the periods
of `Periodic` jobs."""


class Periodic:
    """A worker's periodic jobs (the heartbeat, copies of counters, checks of key sources, sweeps
    of leases, the drain's end), run by its sweeper: one timer for the whole worker, so no job
    schedules itself, keeps a handle or has to be cancelled. A job runs at the tick nearest its
    time, so its period is kept on average; one that raises is logged and stays scheduled."""

    __slots__ = ("_jobs",)

    def __init__(self) -> None:
        self._jobs: list[list[Any]] = []
        """[due, period, job] per job."""

    def every(self, period: float, job: Callable[[], None], now: float) -> None:
        """Runs `job()` every `period` seconds (at least TICK), the first time `period` after `now`."""
        period = max(period, TICK)
        self._jobs.append([now + period, period, job])

    def run_due(self, now: float) -> None:
        for entry in self._jobs:
            if now + TICK / 2 >= entry[0]:
                due = entry[0] + entry[1]
                entry[0] = due if due > now else now + entry[1]
                try:
                    entry[2]()
                except Exception as exc:
                    log_exception("periodic job", exc)


class ListenerInfo:
    """What a request needs from the listener it came in on, rendered once."""

    __slots__ = ("address", "scheme", "forwarded_lines", "underscores_in_headers")

    def __init__(self, listener: Listener) -> None:
        self.address = address = listener.address
        self.scheme = proto = b"https" if listener.tls is not None else b"http"
        self.forwarded_lines = b"x-forwarded-proto: %s\r\nx-forwarded-port: %d\r\n" % (proto, address.port)
        self.underscores_in_headers = listener.underscores_in_headers


class Runtime:
    def __init__(
        self, config: Config, loop: asyncio.AbstractEventLoop, generation: int,
        shared: UpstreamShared | None = None, slot: int = 0, buckets: SharedBuckets | None = None,
        metrics: SharedMetrics | None = None, auth: AuthShared | None = None, cache: SharedCache | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.generation = generation
        self.clock = Clock(monotonic())
        self.periodic = Periodic()
        self.groups = {
            name: UpstreamGroup(up, self.clock, loop, shared.view(up, slot) if shared is not None else None)
            for name, up in config.upstreams.items()
        }
        self.client = UpstreamClient(loop, {name: up.host_header for name, up in config.upstreams.items()})
        """The worker's own HTTP client over `groups` (aggregation calls, cache refreshes)."""
        self.trie, self.plans = compile_routes(config, self.groups)
        self.metrics = WorkerMetrics(self, metrics, slot)
        self.tracing = attach_tracing(self)
        self.rate_limits = attach_rate_limits(self, buckets, slot)
        self.global_access = access_filter(config.access)
        self.auth = WorkerAuth(config, loop, auth, self.every) if config.auth else None
        self.cache = attach_cache(self, cache, slot)
        self.bridge = attach_bridge(self, generation, slot)
        """The worker's bridged WebSocket connections (None without a bridge route)."""
        attach_chains(self)
        limits = config.limits
        self.max_head = limits.max_head
        self.max_headers = limits.max_headers
        self.max_url = limits.max_url
        self.max_body = limits.max_body
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.idle_timeout = limits.idle_timeout
        self.lingering_time = limits.lingering_time
        self.lingering_timeout = limits.lingering_timeout
        self.replies = Replies(config.errors)
        self.access = AccessLogWriter(config.access_log, self.metrics.clock)
        self.connections: set[Any] = set()
        self.draining = False
        self.drain_started = 0.0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ids = RequestIds(os.urandom(5).hex().encode() + b"-")
        self.date_line = b""
        self._date_second = -1
        self._sweeper: asyncio.TimerHandle | None = None

    def every(self, period: float, job: Callable[[], None]) -> None:
        """Runs `job()` from the sweeper every `period` seconds from now on (see `Periodic`)."""
        self.periodic.every(period, job, monotonic())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def internal_error(self, exc: BaseException | None) -> None:
        log_exception("request handling", exc)

    def upstream_error(self, target: str, kind: str, message: str, request_id: bytes) -> None:
        """The error-log line of a failed upstream exchange: which target, what went wrong."""
        process_log(f"upstream {target or '-'} failed ({kind}): {message} [request {request_id.decode('latin-1')}]")

    # sweeper

    def _tick_clock(self, wall: float) -> None:
        mono = monotonic()
        self.metrics.tick(wall, mono, len(self.connections))
        if self.tracing is not None:
            self.tracing.tick(mono)
        self.access.tick()
        second = int(wall)
        if second != self._date_second:
            self._date_second = second
            self.date_line = b"date: %s\r\n" % formatdate(second, usegmt=True).encode()

    def start(self) -> None:
        self._tick_clock(time.time())
        self._sweeper = self.loop.call_later(TICK, self._sweep)

    def _sweep(self) -> None:
        now = monotonic()
        self.clock.now = now
        try:
            for conn in tuple(self.connections):
                conn.sweep(now)
            for group in self.groups.values():
                for pool in group.pools:
                    pool.sweep(now)
                group.tick(now)
            self.client.sweep(now)
            self._tick_clock(time.time())
        except Exception as exc:
            log_exception("sweeper", exc)
        self.periodic.run_due(now)
        self._sweeper = self.loop.call_later(TICK, self._sweep)

    def drain(self) -> None:
        self.draining = True
        self.drain_started = monotonic()
        for conn in tuple(self.connections):
            conn.drain()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in tuple(self.connections):
            conn.close_tunnel()
        if self.bridge is not None:
            # The disconnect calls of the connections just closed with 1001, within what is left
            # before the master's kill (it waits a second past the grace period).
            if not self.loop.is_running() and not self.loop.is_closed():
                self.loop.run_until_complete(self.bridge.flush(0.5))
            self.bridge.close()
        for group in self.groups.values():
            for pool in group.pools:
                pool.close_all()
        self.client.close()
        self.metrics.close(time.time(), monotonic())
        if self.rate_limits is not None:
            self.rate_limits.copy()
        exporter = self.tracing.exporter if self.tracing is not None else None
        if exporter is not None and not self.loop.is_running() and not self.loop.is_closed():
            self.loop.run_until_complete(exporter.flush(1.0))
        self.access.flush()
