"""A burst of requests that finds no idle upstream connection (issue 14).

Before: the worker opened one connection per request within one loop iteration. Through a target
too busy to accept, its listen backlog overflowed, the kernel dropped the SYNs past it, resent them
after its initial 1 s retransmission timeout, past the connect timeout: 504 for most of the burst.
Now a pool opens at most `max_connecting` connections at a time (a connection counts until the
target answers on it), queues the rest FIFO, and serves them with the connections that come free;
`max_connections` caps the pool, and a request that gets no connection in time gets 503.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastgw.server.fdlimit import raise_nofile
from tests.support.client import LOOPBACK, http_get
from tests.support.procs import Backend, Gateway, gateway_config, start_backend

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

BURST = 500
"""Requests sent at once, each on a client connection of its own (far more than the backlog)."""
BACKLOG = 64


@pytest.fixture()
def busy_backend() -> Iterator[Backend]:
    """A backend with a small listen backlog, as many servers have (Python's asyncio: 100)."""
    with start_backend("backlog64", args=["--backlog", str(BACKLOG)]) as b:
        yield b


def config(backend: Backend, **upstream: Any) -> dict[str, Any]:
    return gateway_config(
        backend.port,
        workers=1,
        upstreams={"backend": {"timeouts": {"connect": "900ms", "read": "10s"}, **upstream}},
    )


async def _status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


async def _burst(port: int, n: int, path: str, before: Callable[[], None] | None = None) -> list[tuple[int, bytes]]:
    """`n` client connections opened first, then (after `before`) one request written on each at
    once; the responses, in connection order."""
    conns = [await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), 10) for _ in range(n)]
    try:
        if before is not None:
            before()
        request = f"GET {path} HTTP/1.1\r\nHost: burst.test\r\n\r\n".encode()
        for _, writer in conns:
            writer.write(request)
        return await asyncio.wait_for(asyncio.gather(*(_status(r) for r, _ in conns)), 30)
    finally:
        for _, writer in conns:
            writer.close()


def burst(port: int, n: int, path: str, before: Callable[[], None] | None = None) -> list[tuple[int, bytes]]:
    raise_nofile(4 * n)
    return asyncio.run(_burst(port, n, path, before))


def metrics(g: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = http_get(g.admin_port, "/metrics")
    assert resp.status == 200, resp.summary()
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("upstream", "target")))): s.value
        for family in text_string_to_metric_families(resp.body.decode())
        for s in family.samples
    }


def wait_metric(g: Gateway, name: str, value: float, timeout: float = 10.0) -> None:
    """Until /metrics shows `name` (no labels but upstream and target) at `value` (workers publish
    every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while (seen := metrics(g).get((name, ()))) != value:
        assert time.monotonic() < deadline, f"{name} is {seen}, not {value}, after {timeout}s"


def test_a_burst_into_a_stalled_target_is_paced_not_timed_out(busy_backend: Backend, tmp_path: Path) -> None:
    def stall() -> None:
        # The backend answers, then stops accepting for 600 ms: the burst arrives meanwhile.
        assert http_get(busy_backend.port, "/control/stall/600").status == 200

    with Gateway(config(busy_backend), tmp_path) as g:
        results = burst(g.port, BURST, "/count/burst", stall)
        statuses = Counter(status for status, _ in results)
        assert statuses == {200: BURST}, f"{statuses}: {[body for status, body in results if status != 200][:3]}"
        assert busy_backend.count("/count/burst") == BURST
        # The burst was served over far fewer connections than requests: those that came free.
        opened = busy_backend.stats()["connections"]
        assert opened < BURST // 2, f"{opened} upstream connections for {BURST} requests"
        wait_metric(g, "fastgw_upstream_queued_requests", 0)
        assert metrics(g)[("fastgw_upstream_queued_total", ())] > 0


def test_max_connections_caps_the_pool_and_the_queue_is_served_in_order(
    busy_backend: Backend, tmp_path: Path
) -> None:
    with Gateway(config(busy_backend, max_connections=2), tmp_path) as g:
        results = burst(g.port, 100, "/count/capped")
        assert Counter(status for status, _ in results) == {200: 100}
        assert busy_backend.stats()["connections"] <= 2 + 1  # and the connection of this /stats request
        assert metrics(g)[("fastgw_upstream_connections", ())] <= 2


def test_a_request_that_gets_no_connection_in_time_is_503(busy_backend: Backend, tmp_path: Path) -> None:
    cfg = config(busy_backend, max_connections=1, queue={"size": 1, "timeout": "1s"})
    with Gateway(cfg, tmp_path) as g:

        async def scenario() -> list[tuple[int, bytes]]:
            # The only connection is held for 3 s; the next request waits, the one after finds
            # the queue full.
            slow = asyncio.create_task(_burst(g.port, 1, "/sleep/3000"))
            await asyncio.to_thread(wait_metric, g, "fastgw_upstream_connections", 1)
            waiting = asyncio.create_task(_burst(g.port, 1, "/count/waits"))
            await asyncio.to_thread(wait_metric, g, "fastgw_upstream_queued_requests", 1)
            [full] = await _burst(g.port, 1, "/count/full")
            [timed_out] = await waiting
            [held] = await slow
            return [full, timed_out, held]

        started = time.monotonic()
        (full_status, full_body), (late_status, late_body), (held_status, _) = asyncio.run(scenario())
        assert held_status == 200
        assert full_status == 503 and b'"code":"no_upstream"' in full_body
        assert b"too many requests waiting for an upstream connection" in full_body
        assert late_status == 503 and b"no upstream connection came free in time" in late_body
        assert time.monotonic() - started < 10
        assert busy_backend.count("/count/waits") == 0 and busy_backend.count("/count/full") == 0
        wait_metric(g, "fastgw_upstream_queued_requests", 0)
        m = metrics(g)
        assert m[("fastgw_upstream_queue_refused_total", (("reason", "full"),))] == 1
        assert m[("fastgw_upstream_queue_refused_total", (("reason", "timeout"),))] == 1
        assert m[("fastgw_upstream_queued_total", ())] == 1
