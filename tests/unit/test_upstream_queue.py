"""The compiled connection queue of a target's pool (issue 14), in process: real client exchanges
and upstream connections over fake transports (as in test_exchange), so every hand-off, refusal
and slot is seen in the bytes written. A request that finds no idle connection and no free slot
waits FIFO; a connection given back goes to the oldest waiting request; a connect slot is held
until the target answers on the new connection; a request that leaves the queue (its client went
away, it waited too long, the queue was full) is accounted for exactly once."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw._proxy import ListenerContext, TargetPool
from fastgw.config.load import load_text
from fastgw.http.protocol import ClientProtocol
from fastgw.runtime import ListenerInfo, Runtime
from fastgw.upstream.connection import UpstreamConnection
from tests.unit.test_exchange import FakeTransport, respond


def config(target: str = "127.0.0.1:9001", **upstream: Any) -> str:
    keys = ", ".join(f"{k}: {json.dumps(v)}" for k, v in upstream.items())
    return f"""\
listen: [{{address: "127.0.0.1:8080"}}]
upstreams:
  app: {{targets: ["{target}"], timeouts: {{connect: 1s, read: 5s}}, {keys}}}
routes:
  - match: {{prefix: /}}
    upstream: app
access_log: {{path: off}}
"""


class Harness:
    """One worker's runtime with one target, clients made on demand, and `conns` upstream
    connections over fake transports placed in the pool's idle list."""

    def __init__(self, text: str, conns: int = 1) -> None:
        self.loop = asyncio.new_event_loop()
        self.config = load_text(text, "gw.yaml", "/tmp")
        self.rt = Runtime(self.config, self.loop, 1)
        self.ctx = ListenerContext(self.rt, ListenerInfo(self.config.listen[0]))
        self.pool: TargetPool = self.rt.groups["app"].pools[0]
        self.upstreams: list[tuple[Any, FakeTransport]] = []
        for _ in range(conns):
            conn = UpstreamConnection(self.pool)
            transport = FakeTransport()
            conn.connection_made(transport)
            self.pool.idle.append(conn)
            self.upstreams.append((conn, transport))

    def client(self, path: str) -> tuple[Any, FakeTransport]:
        """A new client connection that sends `GET path`."""
        transport = FakeTransport()
        proto = ClientProtocol(self.ctx)
        proto.connection_made(transport)
        proto.data_received(f"GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n".encode())
        return proto, transport

    def sent(self) -> list[bytes]:
        """The request lines written upstream since last asked, in order."""
        out = []
        for _, transport in self.upstreams:
            data = transport.take()
            out += [part.split(b"\r\n", 1)[0] for part in data.split(b"\r\n\r\n") if part.startswith(b"GET")]
        return out

    def close(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


def status(transport: FakeTransport) -> tuple[int, bytes]:
    data = transport.take()
    return (int(data.split(b" ", 2)[1]), data.split(b"\r\n\r\n", 1)[1]) if data else (0, b"")


@pytest.fixture
def capped() -> Iterator[Harness]:
    """One connection, and no room for another: everything past the first request queues."""
    h = Harness(config(max_connections=1, queue={"size": 3, "timeout": "2s"}))
    yield h
    h.close()


def test_a_connection_given_back_goes_to_the_oldest_waiting_request(capped: Harness) -> None:
    h = capped
    [(conn, _)] = h.upstreams
    clients = [h.client(f"/{n}") for n in "abcd"]
    assert h.sent() == [b"GET /a HTTP/1.1"]
    assert h.pool.waiting == 3 and h.pool.queued == 3 and h.pool.active == 4
    for n, (_, transport) in zip("abcd", clients, strict=True):
        respond(conn, body=n.encode())
        assert status(transport) == (200, n.encode())
        # handed over at once, never parked idle while someone waits
        assert h.sent() == ([f"GET /{chr(ord(n) + 1)} HTTP/1.1".encode()] if n != "d" else [])
    assert h.pool.idle == [conn] and h.pool.waiting == 0 and h.pool.active == 0


def test_a_full_queue_answers_503_at_once(capped: Harness) -> None:
    h = capped
    waiting = [h.client(f"/{n}") for n in "abcd"]
    _, late = h.client("/e")
    code, body = status(late)
    assert code == 503
    error = json.loads(body)["error"]
    assert error["code"] == "no_upstream" and error["message"] == "too many requests waiting for an upstream connection"
    assert h.pool.queue_full == 1 and h.pool.waiting == 3 and h.pool.active == 4
    assert h.sent() == [b"GET /a HTTP/1.1"] and not any(t.written for _, t in waiting[1:])


def test_a_client_that_goes_away_leaves_the_queue(capped: Harness) -> None:
    h = capped
    [(conn, _)] = h.upstreams
    _, first = h.client("/a")
    gone, _ = h.client("/b")
    _, last = h.client("/c")
    gone.connection_lost(None)
    assert h.pool.waiting == 1 and h.pool.active == 2
    respond(conn)
    assert status(first)[0] == 200
    assert h.sent() == [b"GET /a HTTP/1.1", b"GET /c HTTP/1.1"]
    respond(conn)
    assert status(last)[0] == 200 and h.pool.active == 0


def test_a_request_that_waits_past_the_timeout_gets_503(capped: Harness) -> None:
    h = capped
    _, first = h.client("/a")
    _, late = h.client("/b")
    h.pool.sweep(h.rt.clock.now + 1.0)
    assert h.pool.waiting == 1
    h.pool.sweep(h.rt.clock.now + 3.0)  # past queue.timeout (2s), within the read timeout (5s)
    code, body = status(late)
    assert code == 503 and json.loads(body)["error"]["message"] == "no upstream connection came free in time"
    assert h.pool.waiting == 0 and h.pool.queue_timeouts == 1 and h.pool.active == 1
    # Not the target's fault: no failure counted, nothing that could eject it.
    assert h.pool.failed == 0 and h.pool.failures == 0
    assert status(first) == (0, b"")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["arrive", "answer", "leave", "expire"]), max_size=40), st.randoms())
def test_the_queue_against_a_fifo_model(ops: list[str], rnd: Any) -> None:
    """Any interleaving of arrivals, answers, clients leaving and timeouts: requests are served in
    arrival order, skipping those that left; the pool's counts match the model's."""
    h = Harness(config(max_connections=1, queue={"timeout": "10s"}))
    # Only the queue's timeout is under test: the sweeps below must not close the connection.
    h.pool.idle_timeout = h.pool.read_timeout = 1e9
    try:
        [(conn, _)] = h.upstreams
        serving: tuple[int, Any] | None = None
        waiting: deque[tuple[int, Any, FakeTransport]] = deque()
        served: list[int] = []
        clock = h.rt.clock.now
        for i, op in enumerate(ops):
            if op == "arrive":
                proto, transport = h.client(f"/{i}")
                if serving is None:
                    serving = (i, proto)
                    served.append(i)
                else:
                    waiting.append((i, proto, transport))
            elif op == "answer" and serving is not None:
                respond(conn)
                serving = None
                if waiting:
                    j, proto, _ = waiting.popleft()
                    serving = (j, proto)
                    served.append(j)
            elif op == "leave" and waiting:
                k = rnd.randrange(len(waiting))
                waiting[k][1].connection_lost(None)
                del waiting[k]
            elif op == "expire" and waiting:
                clock += 20.0
                h.pool.sweep(clock)
                for _, _, transport in waiting:
                    assert status(transport)[0] == 503
                waiting.clear()
            assert h.pool.waiting == len(waiting)
            assert h.pool.active == len(waiting) + (serving is not None)
        assert [int(line.split(b" ")[1][1:]) for line in h.sent()] == served
    finally:
        h.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(h: Harness) -> None:
    """Runs the loop until the connects under way are done (bounded)."""
    h.loop.run_until_complete(asyncio.wait_for(asyncio.gather(*tuple(h.rt.tasks)), 5.0))


def test_a_failed_connect_fails_every_waiting_request_when_nothing_else_can_serve_them() -> None:
    h = Harness(config(f"127.0.0.1:{closed_port()}", max_connecting=1), conns=0)
    try:
        clients = [h.client(f"/{n}") for n in "abc"]
        assert h.pool.connecting == 1 and h.pool.waiting == 2
        run(h)
        for _, transport in clients:
            code, body = status(transport)
            assert code == 502 and b"cannot connect to the upstream" in body
        assert h.pool.connecting == 0 and h.pool.waiting == 0 and h.pool.active == 0
    finally:
        h.close()


def test_a_new_connection_holds_its_slot_until_the_target_answers_on_it() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # never accepted: the kernel completes the connects all the same
        h = Harness(config(f"127.0.0.1:{listener.getsockname()[1]}", max_connecting=1), conns=0)
        try:
            _, first = h.client("/a")
            h.client("/b")
            run(h)
            [conn] = h.pool.busy
            assert conn.fresh and h.pool.unproven == [conn] and h.pool.waiting == 1
            respond(conn)
            # the answer proves it: the slot goes to the waiting request, which opens its own
            assert status(first)[0] == 200 and not conn.fresh and h.pool.unproven == []
            assert h.pool.waiting == 0 and h.pool.connecting == 1
            run(h)
            assert h.pool.connecting == 0 and len(h.pool.unproven) == 1 and h.pool.unproven[0] is not conn
        finally:
            h.close()
