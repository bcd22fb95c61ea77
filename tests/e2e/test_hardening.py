"""Request-handling defects found by black-box testing, each as a raw-socket case against a real
gateway and a backend that counts what it receives (`/count/...` paths), so that "nothing was
forwarded" is asserted, not assumed.

The cases that fit the shared reference gateway are in the hostile corpus (tests/data/requests);
these need a config of their own, a second request on the connection, or a half-close.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.support.client import Conn, http_get, raw_request
from tests.support.procs import Backend, Gateway, free_port, start_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One worker, so that a marker request sent after a case is handled by the same process,
    after anything the case made it do."""
    routes = [
        {"match": {"prefix": "/echo"}, "upstream": "backend"},
        {"match": {"prefix": "/count"}, "upstream": "backend"},
        {"match": {"prefix": "/public"}, "upstream": "backend"},
        {"match": {"prefix": "/unasked-continue"}, "upstream": "backend"},
        {"match": {"prefix": "/sleep"}, "upstream": "backend"},
    ]
    gateway = start_gateway(backend, tmp_path_factory.mktemp("hardening"), workers=1, routes=routes)
    yield gateway
    gateway.close()


def _reached(gw: Gateway, backend: Backend, path: str) -> int:
    """How many heads for `path` the backend received, once a marker request sent after the case
    on a new connection has come back through the same worker."""
    marker = f"/count/marker-{uuid.uuid4().hex}"
    assert http_get(gw.port, marker).status == 200
    assert backend.count(marker) == 1
    return backend.count(path)


SMUGGLED = "GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n"

REFUSED_THEN_PIPELINED = {
    "unknown transfer coding": (
        b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        501,
    ),
    "Host ending in 0xFF": (b"GET /echo HTTP/1.1\r\nHost: gw.test\xff\r\n\r\n", 400),
    "no route, body too large to drop": (
        b"POST /ech/p HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100000\r\n\r\nhello",
        404,
    ),
    "invalid path": (b"GET /a/../../b HTTP/1.1\r\nHost: gw.test\r\n\r\n", 400),
    "body over max_body": (b"POST /echo HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2000000\r\n\r\nab", 413),
}


@pytest.mark.parametrize("case", REFUSED_THEN_PIPELINED, ids=list(REFUSED_THEN_PIPELINED))
def test_nothing_after_a_refusal_that_closes_is_forwarded(case: str, gw: Gateway, backend: Backend) -> None:
    """Once the gateway answers a request itself and closes, no byte after it is parsed as a
    request or forwarded (a refused request must not let the next pipelined one through)."""
    first, status = REFUSED_THEN_PIPELINED[case]
    path = f"/count/smuggled-{uuid.uuid4().hex}"
    result = raw_request(gw.port, first + SMUGGLED.format(path=path).encode(), 5.0)
    assert [r.status for r in result.responses] == [status], result.summary()
    assert result.closed, result.summary()
    assert _reached(gw, backend, path) == 0


def test_a_small_refused_body_is_dropped_and_the_connection_goes_on(gw: Gateway, backend: Backend) -> None:
    """DESIGN §8: a request answered locally has its body read and dropped up to a bound, so the
    next request on the connection starts where that body ends, never inside it."""
    path = f"/count/after-{uuid.uuid4().hex}"
    body = b"GET /count/inside-the-body HTTP/1.1\r\nHost: gw.test\r\n\r\n"
    first = b"POST /ech/p HTTP/1.1\r\nHost: gw.test\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    result = raw_request(gw.port, first + SMUGGLED.format(path=path).encode(), 5.0, responses=2)
    assert [r.status for r in result.responses] == [404, 200], result.summary()
    assert result.responses[1].json()["target"] == path
    assert _reached(gw, backend, path) == 1
    assert backend.count("/count/inside-the-body") == 0


def test_a_header_named_like_content_length_is_just_a_header(gw: Gateway, backend: Backend) -> None:
    """`HContent-Length: 7` frames nothing: both pipelined requests are answered, in order, and
    the second reaches the backend exactly once."""
    path = f"/count/second-{uuid.uuid4().hex}"
    data = b"GET /echo HTTP/1.1\r\nHost: gw.test\r\nHContent-Length: 7\r\n\r\n" + SMUGGLED.format(path=path).encode()
    result = raw_request(gw.port, data, 5.0, responses=2)
    assert [r.status for r in result.responses] == [200, 200], result.summary()
    assert result.responses[1].json()["target"] == path
    assert _reached(gw, backend, path) == 1


def test_http09_request_line_gets_400_and_close(gw: Gateway) -> None:
    result = raw_request(gw.port, b"GET /\r\n", 5.0)
    assert [r.status for r in result.responses] == [400], result.summary()
    assert result.closed and not result.timed_out, result.summary()


def test_unsolicited_100_continue_is_relayed(gw: Gateway) -> None:
    """DESIGN §8: informational responses are relayed to HTTP/1.1 clients, a 100 the client did
    not ask for included; then the final response."""
    with Conn(gw.port) as conn:
        conn.send(b"GET /unasked-continue HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        first = conn.read_response(skip_informational=False)
        assert first.status == 100, first.summary()
        final = conn.read_response()
        assert final.status == 200 and final.json() == {"unasked_continue": True}, final.summary()


def test_100_continue_is_sent_once_when_asked(gw: Gateway) -> None:
    """With `Expect: 100-continue` the gateway answers the 100 itself; the upstream's own 100 is
    not sent a second time."""
    with Conn(gw.port) as conn:
        conn.send(
            b"POST /unasked-continue HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        assert conn.read_response(skip_informational=False).status == 100
        conn.send(b"hello")
        final = conn.read_response()
        assert final.status == 200, final.summary()
        assert final.informational == [], final.summary()


def test_half_close_after_a_complete_request_gets_the_response(gw: Gateway) -> None:
    """A client that shuts down its sending side after a complete request still gets the
    response, then the close (a request fully received is not an aborted one)."""
    with Conn(gw.port) as conn:
        conn.send(b"GET /sleep/200 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        conn._sock.shutdown(socket.SHUT_WR)
        resp = conn.read_response()
        assert resp.status == 200, resp.summary()
        assert conn.wait_closed(5.0)


def test_half_close_after_pipelined_requests_answers_them_all(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        conn.send(b"GET /echo/1 HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /echo/2 HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        conn._sock.shutdown(socket.SHUT_WR)
        assert conn.read_response().json()["target"] == "/echo/1"
        assert conn.read_response().json()["target"] == "/echo/2"
        assert conn.wait_closed(5.0)


def test_half_close_inside_a_request_head_closes(gw: Gateway, backend: Backend) -> None:
    path = f"/count/cut-{uuid.uuid4().hex}"
    result = raw_request(gw.port, f"GET {path} HTTP/1.1\r\nHost: gw".encode(), 5.0, shutdown=True)
    assert result.closed and not result.timed_out, result.summary()
    assert result.responses == [], result.summary()
    assert _reached(gw, backend, path) == 0


UNDERSCORE_NAMES = ["Transfer_Encoding", "X_Forwarded_For", "Content_Length", "X_Request_ID", "X_Custom"]


def test_underscored_header_names_are_dropped_by_default(gw: Gateway) -> None:
    """CGI, WSGI and PHP fold `_` and `-` together, so such names spoof framing and gateway-owned
    headers: dropped, as nginx does (`underscores_in_headers off`)."""
    headers = "".join(f"{n}: 1.2.3.4\r\n" for n in UNDERSCORE_NAMES)
    result = raw_request(gw.port, f"GET /echo HTTP/1.1\r\nHost: gw.test\r\n{headers}\r\n".encode(), 5.0, responses=1)
    assert result.status == 200, result.summary()
    names = [n for n, _ in result.responses[0].json()["headers"]]
    assert not [n for n in names if "_" in n], names


def test_underscores_allowed_never_pass_a_name_that_folds_to_an_owned_one(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gateway = start_gateway(
        backend,
        tmp_path_factory.mktemp("underscores"),
        workers=1,
        listen=[{"address": f"127.0.0.1:{free_port()}", "underscores_in_headers": True}],
    )
    try:
        headers = "".join(f"{n}: 1.2.3.4\r\n" for n in UNDERSCORE_NAMES)
        data = f"GET /echo HTTP/1.1\r\nHost: gw.test\r\n{headers}\r\n".encode()
        result = raw_request(gateway.port, data, 5.0, responses=1)
        assert result.status == 200, result.summary()
        names = [n for n, _ in result.responses[0].json()["headers"]]
        assert [n for n in names if "_" in n] == ["X_Custom"], names
    finally:
        gateway.close()
