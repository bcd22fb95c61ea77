"""The compiled exchange in process, against fake transports (as httptools tests its parser): a
real worker `Runtime` built from a config, client bytes fed to `ClientProtocol.data_received`,
upstream connections that are real `UpstreamConnection`s over fake transports, placed in the
pools' idle lists so that no socket is ever opened. Every assertion is on the bytes written.

Also the filter contract: filters alone (`Filter.run_request`) and in a chain (phase order,
RESPONDED stopping it, suspension and resume, response filters and body transforms)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw._proxy import AccessFilter, CorsFilter, ListenerContext, Reply, Request, as_filter
from fastgw.config.load import load_text
from fastgw.http.protocol import ClientProtocol
from fastgw.pipeline import RequestPhase, ResponsePhase
from fastgw.runtime import ListenerInfo, Runtime
from fastgw.upstream.connection import UpstreamConnection

CONFIG = """\
listen: [{address: "127.0.0.1:8080"}]
upstreams:
  app: {targets: ["127.0.0.1:9001", "127.0.0.1:9002"], balance: round_robin,
        retries: {attempts: 2, on: [connect_error, 503], budget: 100%}}
routes:
  - match: {prefix: /}
    upstream: app
  - match: {path: /fixed}
    respond: {status: 418, body: teapot}
access_log: {path: off}
"""


class FakeTransport:
    """Records what a protocol writes and how it treats the connection."""

    def __init__(self, peer: str = "192.0.2.10") -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.peer = peer

    def write(self, data: bytes) -> None:
        assert not self.closed and not self.aborted, "write after close"
        self.written.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 40000) if name == "peername" else default

    def take(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data


class Harness:
    """One worker's runtime, one client connection, and one idle upstream connection per target
    (refilled after each exchange)."""

    def __init__(self, text: str = CONFIG) -> None:
        self.loop = asyncio.new_event_loop()
        self.config = load_text(text, "gw.yaml", "/tmp")
        self.rt = Runtime(self.config, self.loop, 1)
        self.rt.date_line = b"date: Sat, 05 Dec 2026 00:00:00 GMT\r\n"
        self.client = FakeTransport()
        self.proto = ClientProtocol(ListenerContext(self.rt, ListenerInfo(self.config.listen[0])))
        self.proto.connection_made(self.client)
        self.upstreams: list[tuple[Any, FakeTransport]] = []
        self.refill()

    def refill(self) -> None:
        for group in self.rt.groups.values():
            for pool in group.pools:
                if not pool.idle:
                    conn = UpstreamConnection(pool)
                    transport = FakeTransport()
                    conn.connection_made(transport)
                    pool.idle.append(conn)
                    self.upstreams.append((conn, transport))

    def sent_upstream(self) -> list[tuple[Any, bytes]]:
        """(connection, bytes) of every upstream connection that was written to since last asked."""
        out = []
        for conn, transport in self.upstreams:
            data = transport.take()
            if data:
                out.append((conn, data))
        return out

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def respond(conn: Any, status: int = 200, body: bytes = b"ok", headers: bytes = b"") -> None:
    conn.data_received(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), headers, body))


# ---- the exchange -------------------------------------------------------------------------------


def test_a_request_is_forwarded_and_the_response_relayed(h: Harness) -> None:
    h.proto.data_received(b"GET /a?x=1 HTTP/1.1\r\nHost: gw.test\r\nX-Forwarded-For: 1.1.1.1\r\nServer: no\r\n\r\n")
    [(conn, head)] = h.sent_upstream()
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /a?x=1 HTTP/1.1"
    assert b"x-forwarded-for: 192.0.2.10" in lines  # an untrusted peer's X-Forwarded-For is replaced
    assert b"Host: gw.test" in lines and b"x-forwarded-host: gw.test" in lines
    respond(conn, body=b"hello", headers=b"Server: secret/1.0\r\nX-App: 1\r\n")
    out = h.client.take()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nhello")
    assert b"X-App: 1" in out and b"secret" not in out  # backend identity hidden by default
    assert b"x-request-id: " in out and not h.client.closed


def test_pipelined_requests_are_answered_in_order(h: Harness) -> None:
    h.proto.data_received(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    [(conn, head)] = h.sent_upstream()
    assert head.startswith(b"GET /1 ")
    assert not h.client.reading  # the second waits, and reading pauses until it can start
    respond(conn, body=b"one")
    h.refill()
    [(conn2, head2)] = h.sent_upstream()
    assert head2.startswith(b"GET /2 ")
    respond(conn2, body=b"two")
    out = h.client.take()
    assert out.index(b"one") < out.index(b"two") and h.client.reading


def test_a_refusal_that_closes_stops_the_parser(h: Harness) -> None:
    h.proto.data_received(b"GET /a HTTP/1.1\r\nHost: bad..host\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    out = h.client.take()
    assert out.count(b"HTTP/1.1 ") == 1 and out.startswith(b"HTTP/1.1 400 ")
    assert h.client.closed and h.sent_upstream() == []


def test_an_upstream_503_is_retried_on_the_other_target(h: Harness) -> None:
    h.proto.data_received(b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n")
    [(first, _)] = h.sent_upstream()
    respond(first, status=503, body=b"busy")
    [(second, head)] = h.sent_upstream()
    assert second is not first and head.startswith(b"GET /r ")
    respond(second, body=b"fine")
    assert h.client.take().endswith(b"fine")


def test_a_fixed_response_never_touches_the_upstream(h: Harness) -> None:
    h.proto.data_received(b"GET /fixed HTTP/1.1\r\nHost: a\r\n\r\n")
    out = h.client.take()
    assert out.startswith(b"HTTP/1.1 418 ") and out.endswith(b"\r\n\r\nteapot")
    assert b"date: Sat, 05 Dec 2026 00:00:00 GMT" in out and h.sent_upstream() == []


def test_a_small_refused_body_is_dropped_and_the_connection_goes_on(h: Harness) -> None:
    h.rt.plans[0].request_filters = (as_filter(Refuse()),)
    h.proto.data_received(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
    assert h.client.take().startswith(b"HTTP/1.1 401 ") and not h.client.closed
    h.rt.plans[0].request_filters = ()
    h.proto.data_received(b"56789GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    [(_, head)] = h.sent_upstream()
    assert head.startswith(b"GET /next ")


# ---- the filter contract -------------------------------------------------------------------------


class Recorder:
    def __init__(self, name: str, phase: int, log: list[str], result: Any = None) -> None:
        self.name = name
        self.request_phase = phase
        self.log = log
        self.result = result

    def on_request(self, req: Request) -> Any:
        self.log.append(self.name)
        return self.result


class Refuse:
    request_phase = RequestPhase.AUTH

    def on_request(self, req: Request) -> Reply:
        return Reply.error(401, "no", [(b"www-authenticate", b"Bearer")])


def chain(h: Harness, *filters: Any) -> None:
    """The chain as pipeline.chain builds it: sorted by phase."""
    built = sorted((as_filter(f) for f in filters), key=lambda f: f.request_phase)
    h.rt.plans[0].request_filters = tuple(built)


def test_request_filters_run_in_phase_order_and_a_reply_stops_them(h: Harness) -> None:
    log: list[str] = []
    chain(
        h,
        Recorder("transform", RequestPhase.TRANSFORM, log),
        Recorder("auth", RequestPhase.AUTH, log, Reply(200, [(b"x-local", b"1")], b"local")),
        Recorder("access", RequestPhase.ACCESS, log),
    )
    h.proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert log == ["access", "auth"]
    out = h.client.take()
    assert out.startswith(b"HTTP/1.1 200 ") and b"x-local: 1" in out and out.endswith(b"local")
    assert h.sent_upstream() == []


def test_a_suspended_filter_resumes_the_chain(h: Harness) -> None:
    log: list[str] = []
    waiting: list[Request] = []

    class Suspend:
        request_phase = RequestPhase.AUTH

        def on_request(self, req: Request) -> Any:
            waiting.append(req)
            future = h.loop.create_future()
            req.vars["future"] = future
            return future

    chain(h, Suspend(), Recorder("limit", RequestPhase.RATE_LIMIT, log))
    h.proto.data_received(b"GET /s HTTP/1.1\r\nHost: a\r\n\r\n")
    assert log == [] and h.sent_upstream() == []
    [req] = waiting
    req.identity = b"alice"
    req.set_upstream_header(b"X-Consumer", b"alice")
    req.vars["future"].set_result(None)
    h.loop.run_until_complete(asyncio.sleep(0))  # the task that awaited the filter runs
    assert log == ["limit"]
    [(_, head)] = h.sent_upstream()
    assert b"X-Consumer: alice\r\n" in head


def test_a_client_cannot_inject_a_header_a_filter_sets(h: Harness) -> None:
    class SetConsumer:
        request_phase = RequestPhase.AUTH

        def on_request(self, req: Request) -> None:
            req.set_upstream_header(b"X-Consumer", b"real")

    chain(h, SetConsumer())
    h.proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nx-consumer: forged\r\n\r\n")
    [(_, head)] = h.sent_upstream()
    assert b"forged" not in head and head.count(b"X-Consumer: real") == 1


def test_response_filters_edit_the_head_and_transform_the_body(h: Harness) -> None:
    class Upper:
        response_phase = ResponsePhase.TRANSFORM

        def on_response(self, req: Request, head: Any) -> None:
            head.set(b"X-Filtered", b"yes")
            head.remove(b"x-drop")
            head.stream_through(self)

        def on_body(self, req: Request, data: bytes) -> bytes:
            return data.upper()

        def on_end(self, req: Request) -> bytes:
            return b"!"

    h.rt.plans[0].response_filters = (as_filter(Upper()),)
    h.proto.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    [(conn, _)] = h.sent_upstream()
    respond(conn, body=b"abc", headers=b"X-Drop: 1\r\n")
    out = h.client.take()
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"X-Filtered: yes" in head and b"X-Drop" not in head
    assert b"transfer-encoding: chunked" in head and b"content-length" not in head  # length changed
    assert body == b"3\r\nABC\r\n1\r\n!\r\n0\r\n\r\n"


def test_filters_alone() -> None:
    access = AccessFilter(
        [__import__("ipaddress").ip_network("10.0.0.0/8")], [__import__("ipaddress").ip_network("10.9.0.0/16")]
    )
    assert access.check(b"10.1.1.1") and not access.check(b"10.9.1.1") and not access.check(b"192.0.2.1")
    assert not access.check(b"not-an-ip")
    assert access.run_request(Request.build(peer=b"10.2.0.1")) is None
    refused = access.run_request(Request.build(peer=b"10.9.0.1"))
    assert refused is not None and refused.status == 403 and refused.is_error
    cors = CorsFilter(["https://*.example.com"], ["GET"], None, [], False, None)
    pre = Request.build(
        [(b"Origin", b"https://a.example.com"), (b"Access-Control-Request-Method", b"GET")], method=b"OPTIONS"
    )
    reply = cors.run_request(pre)
    assert reply is not None and reply.status == 204
    bad = Request.build(
        [(b"Origin", b"https://example.com"), (b"Access-Control-Request-Method", b"GET")], method=b"OPTIONS"
    )
    assert cors.run_request(bad).status == 403  # type: ignore[union-attr]


def test_a_local_101_hands_the_connection_to_its_handler(h: Harness) -> None:
    """`Reply.switching`: the contract the WebSocket bridge is built on."""

    class Handler:
        def __init__(self) -> None:
            self.events: list[Any] = []

        def connection_made(self, transport: Any, req: Request) -> None:
            self.events.append(("made", req.path))
            transport.write(b"server hello")

        def data_received(self, data: bytes) -> None:
            self.events.append(("data", data))

        def connection_lost(self, exc: Any) -> None:
            self.events.append(("lost", exc))

    handler = Handler()

    class Switch:
        request_phase = RequestPhase.RESPOND

        def on_request(self, req: Request) -> Reply:
            return Reply.switching([(b"upgrade", b"websocket"), (b"connection", b"upgrade")], handler)

    h.rt.plans[0].responder = as_filter(Switch())
    h.rt.plans[0].websocket = True
    h.proto.data_received(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nearly frame bytes"
    )
    out = h.client.take()
    assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n") and out.endswith(
        b"server hello"
    )
    h.proto.data_received(b"later")
    h.proto.connection_lost(None)
    assert handler.events == [("made", b"/chat"), ("data", b"early frame bytes"), ("data", b"later"), ("lost", None)]
    assert h.sent_upstream() == []


# ---- HTTP versions and the access log's JSON --------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\n\r\n"],  # pipelined in one read
        [b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /b HT", b"TP/1.0\r\n\r\n"],  # line cut short
        [b"GET /a HTTP/1.1\r\nHo", b"st: a\r\n\r\nGET /b HTTP/1.0\r\n", b"\r\n"],
    ],
)
def test_each_request_gets_its_own_http_version(h: Harness, chunks: list[bytes]) -> None:
    """The version is read per request, whether its line starts a read or not: an HTTP/1.0
    request behind an HTTP/1.1 one needs no Host, and without keep-alive it closes the connection
    after its answer."""
    for chunk in chunks:
        h.proto.data_received(chunk)
    [(conn, head)] = h.sent_upstream()
    assert head.startswith(b"GET /a HTTP/1.1\r\n")
    respond(conn, body=b"one")
    assert h.client.take().startswith(b"HTTP/1.1 200 ") and not h.client.closed
    h.refill()
    [(conn, head)] = h.sent_upstream()
    assert head.startswith(b"GET /b HTTP/1.1\r\n")  # always HTTP/1.1 upstream
    respond(conn, body=b"two")
    out = h.client.take()
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"two") and b"connection: close" in out.lower()
    assert h.client.closed


def test_a_versionless_request_line_in_one_read_is_refused(h: Harness) -> None:
    h.proto.data_received(b"GET /a\r\n\r\n")
    assert h.client.take().startswith(b"HTTP/1.1 400 ") and h.client.closed


_QUERY_BYTES = st.binary(min_size=0, max_size=80).map(
    lambda b: bytes(c for c in b if (0x21 <= c <= 0x7E or c >= 0x80) and c != 0x23)
)


@settings(max_examples=300, deadline=None)
@given(query=_QUERY_BYTES)
def test_access_log_records_are_json_for_any_request_target(tmp_path_factory: Any, query: bytes) -> None:
    """The request target is client bytes: every record stays one valid JSON line whose `uri`
    reads back as those bytes taken as Latin-1 (quotes, backslashes and high bytes escaped, in
    runs of any length and position)."""
    log = tmp_path_factory.mktemp("log") / "access.log"
    harness = Harness(CONFIG.replace("access_log: {path: off}", f"access_log: {{path: {log}}}"))
    try:
        harness.proto.data_received(b"GET /fixed?%s HTTP/1.1\r\nHost: a\r\n\r\n" % query)
        out = harness.client.take()
        harness.rt.access.flush()
        [line] = log.read_bytes().splitlines()
        record = json.loads(line)
        if out.startswith(b"HTTP/1.1 418 "):
            assert record["uri"] == "/fixed?" + query.decode("latin-1")
        else:  # a target llhttp refuses: logged as a 400 all the same
            assert record["status"] == 400
    finally:
        harness.close()


def test_closed_connections_are_freed_without_the_cycle_collector() -> None:
    """A client or upstream connection that closed leaves no reference cycle (its parser holds
    bound methods of it): it is freed when the last reference goes, not at the next collection,
    so a worker taking thousands of connections a second never piles up garbage for the cycle
    collector to pause on."""
    gc.collect()
    gc.disable()
    try:
        h = Harness()
        h.proto.data_received(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        [(conn, _)] = h.sent_upstream()
        respond(conn, body=b"bye", headers=b"connection: close\r\n")
        assert h.client.closed
        conn.connection_lost(None)
        h.proto.connection_lost(None)
        for group in h.rt.groups.values():
            for pool in group.pools:
                for idle in list(pool.idle):
                    idle.connection_lost(None)
        h.close()
        del h, conn, idle
        left = [type(o).__name__ for o in gc.get_objects() if isinstance(o, (ClientProtocol, UpstreamConnection))]
        assert left == []
    finally:
        gc.enable()
