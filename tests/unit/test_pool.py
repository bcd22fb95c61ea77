"""The keep-alive pool's policy: how many idle connections it keeps (issue 14: connection churn
made a request cost 2.6× as much at 256 connections with keepalive 32)."""

from __future__ import annotations

from typing import Any

from fastgw._proxy import KEEPALIVE_IDLE, PEAK_WINDOW, Clock, TargetPool
from fastgw.config.model import Address, Target, Upstream
from fastgw.upstream.connection import UpstreamConnection


class FakeTransport:
    """What the pool touches of a connection's transport."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def pool(keepalive: int, clock: Clock) -> TargetPool:
    target = Target(Address("127.0.0.1", 9001))
    return TargetPool(target, Upstream("u", (target,), keepalive=keepalive), clock, loop=None)  # type: ignore[arg-type]


def busy(p: TargetPool, n: int) -> list[Any]:
    """`n` real connections over fake transports, in use at once, as connect() leaves them."""
    conns = []
    for _ in range(n):
        conn = UpstreamConnection(p)
        conn.connection_made(FakeTransport())
        conns.append(conn)
    for conn in conns:
        p.busy.add(conn)
        p.peak = max(p.peak, len(p.busy))
    return conns


def test_keeps_what_recent_load_needed_beyond_keepalive() -> None:
    clock = Clock(100.0)
    p = pool(2, clock)
    conns = busy(p, 8)
    for conn in conns:
        p.give(conn)
    assert len(p.idle) == 8 and not any(c.transport.closed for c in conns)
    # The next burst reuses them all: nothing opened, nothing closed.
    again = [p.take() for _ in range(8)]
    assert set(map(id, again)) == set(map(id, conns))


def test_the_peak_is_forgotten_after_two_windows_and_idle_ones_time_out() -> None:
    clock = Clock(100.0)
    p = pool(2, clock)
    for conn in busy(p, 6):
        p.give(conn)
    clock.now += PEAK_WINDOW
    p.sweep(clock.now)  # this window's peak becomes the previous one
    assert (p.prev_peak, p.peak, len(p.idle)) == (6, 0, 6)
    clock.now += KEEPALIVE_IDLE - PEAK_WINDOW + 1
    p.sweep(clock.now)  # idle for KEEPALIVE_IDLE seconds: closed, whatever the peak was
    assert p.idle == []


def test_beyond_keepalive_and_the_recent_peak_a_returned_connection_closes() -> None:
    clock = Clock(100.0)
    p = pool(2, clock)
    conns = busy(p, 3)
    p.peak = p.prev_peak = 0  # the load that needed three is two windows old
    for conn in conns:
        p.give(conn)
    assert len(p.idle) == 2 and conns[2].transport.closed and conns[2].closed


def test_keepalive_alone_when_load_stays_below_it() -> None:
    clock = Clock(100.0)
    p = pool(4, clock)
    first = busy(p, 1)[0]
    p.give(first)
    second = busy(p, 1)[0]
    p.give(second)
    assert len(p.idle) == 2
