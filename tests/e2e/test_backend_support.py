"""The test backend and clients themselves: every gateway test trusts them, so they are checked
against each other first, directly, without a gateway."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.support.backend import EXTRA_BYTES, body_bytes
from tests.support.client import (
    Conn,
    build_request,
    http_get,
    raw_request,
    run_load,
    start_load,
)
from tests.support.procs import Backend, start_backend


def _get(path: str) -> bytes:
    return build_request("GET", path, host="backend.test")


def test_echo_reports_request_exactly(backend: Backend) -> None:
    body = b"x" * 1000
    headers = [("X-B", "2"), ("x-a", "1"), ("X-B", "3")]
    with Conn(backend.port) as conn:
        resp = conn.request("PUT", "/echo/a//b?q=%20&r", headers, body)
    assert resp.status == 200
    echo = resp.json()
    assert echo["method"] == "PUT"
    assert echo["target"] == "/echo/a//b?q=%20&r"
    assert echo["headers"] == [
        ["Host", f"127.0.0.1:{backend.port}"],
        ["X-B", "2"],
        ["x-a", "1"],
        ["X-B", "3"],
        ["Content-Length", "1000"],
    ]
    assert echo["body_length"] == 1000
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["chunked"] is False


def test_echo_decodes_chunked_body_and_trailers(backend: Backend) -> None:
    data = build_request("POST", "/echo", [("Host", "h"), ("Transfer-Encoding", "chunked")]) + (
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    result = raw_request(backend.port, data, responses=1)
    assert result.status == 200, result.summary()
    echo = result.responses[0].json()
    assert (echo["chunked"], echo["chunks"], echo["body_length"]) == (True, 2, 11)
    assert echo["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert echo["trailers"] == [["X-Trailer", "t"]]


def test_expect_100_continue_answered_before_body(backend: Backend) -> None:
    with Conn(backend.port) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        interim = conn.read_response(skip_informational=False)
        assert interim.status == 100
        conn.send(b"abc")
        final = conn.read_response()
    assert final.status == 200
    assert final.json()["body_length"] == 3


def test_keepalive_pipelining_and_stats(backend: Backend) -> None:
    before = backend.stats()
    result = raw_request(backend.port, _get("/echo/1") + _get("/status/404") + _get("/echo/3"), responses=3)
    assert [r.status for r in result.responses] == [200, 404, 200], result.summary()
    assert result.responses[2].json()["target"] == "/echo/3"
    assert not result.closed
    after = backend.stats()
    assert after["requests"] - before["requests"] == 3
    # the raw connection and the one that read `after`
    assert after["connections"] - before["connections"] == 2


def test_http10_closes_unless_keepalive(backend: Backend) -> None:
    closing = raw_request(backend.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert closing.status == 200 and closing.closed and not closing.timed_out, closing.summary()
    with Conn(backend.port) as conn:
        conn.send(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = conn.read_response()
        assert first.header("Connection") == "keep-alive"
        conn.send(b"GET /echo HTTP/1.0\r\n\r\n")
        assert conn.read_response().status == 200
        assert conn.wait_closed(2.0)


@pytest.mark.parametrize("path, chunks", [("/bytes/100000", 0), ("/chunked/1000/7", 7), ("/close-delimited/5000", 0)])
def test_generated_bodies(backend: Backend, path: str, chunks: int) -> None:
    n = int(path.split("/")[2])
    result = raw_request(backend.port, _get(path), responses=1 if "close" not in path else None)
    resp = result.responses[0]
    assert resp.body == body_bytes(n), result.summary()
    assert resp.chunks == chunks
    assert result.closed == path.startswith("/close-delimited")


def test_head_and_bodiless_statuses(backend: Backend) -> None:
    with Conn(backend.port) as conn:
        head = conn.request("HEAD", "/head-test")
        assert (head.status, head.header("Content-Length"), head.body) == (200, "1234", b"")
        get = conn.request("GET", "/head-test")
        assert len(get.body) == 1234
        for path, status in [("/204", 204), ("/304", 304), ("/status/503", 503)]:
            assert conn.request("GET", path).status == status


def test_informational_responses(backend: Backend) -> None:
    hints = http_get(backend.port, "/early-hints")
    assert [m.status for m in hints.informational] == [103]
    assert hints.status == 200
    switched = raw_request(backend.port, _get("/switch-protocols"))
    assert switched.status == 101 and switched.closed
    assert switched.unparsed == b"bytes of another protocol"


def test_extra_bytes_after_response(backend: Backend) -> None:
    result = raw_request(backend.port, _get("/extra-bytes"), responses=2)
    assert [r.body for r in result.responses] == [b"complete", b"smuggled"], result.summary()
    assert EXTRA_BYTES.endswith(result.responses[1].body)


def test_broken_upstream_behaviours(backend: Backend) -> None:
    before_head = raw_request(backend.port, _get("/reset-before-head"))
    assert before_head.reset and not before_head.responses and not before_head.unparsed
    mid = raw_request(backend.port, _get("/reset-mid-body"))
    assert mid.reset and mid.partial is not None, mid.summary()
    assert mid.partial.status == 200 and len(mid.partial.body) == 1000
    garbage = raw_request(backend.port, _get("/garbage"))
    assert garbage.error is not None and "malformed" in garbage.error
    bad_length = raw_request(backend.port, _get("/bad-length"))
    assert bad_length.closed and not bad_length.reset and bad_length.partial is not None
    assert bad_length.partial.body == b"only ten b"


def test_headers_are_returned_verbatim(backend: Backend) -> None:
    resp = http_get(backend.port, "/headers?set=Keep-Alive:timeout%3D5&set=X-Two:a%20b&set=Proxy-Connection:x")
    assert resp.headers[:4] == [
        (b"Content-Type", b"text/plain"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Two", b"a b"),
        (b"Proxy-Connection", b"x"),
    ]
    closing = raw_request(backend.port, _get("/headers?set=Connection:close"))
    assert closing.status == 200 and closing.closed


def test_delays(backend: Backend) -> None:
    t0 = time.monotonic()
    assert http_get(backend.port, "/slow-head/200").status == 200
    assert time.monotonic() - t0 >= 0.2
    t0 = time.monotonic()
    assert http_get(backend.port, "/sleep/100").json() == {"slept_ms": 100}
    assert time.monotonic() - t0 >= 0.1
    t0 = time.monotonic()
    slow = http_get(backend.port, "/slow-body/200")
    assert slow.body == body_bytes(2048) and time.monotonic() - t0 >= 0.2


def test_bad_request_counts_as_parse_error(backend: Backend) -> None:
    before = backend.stats()
    result = raw_request(
        backend.port, b"GET /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert result.status == 400 and result.closed
    after = backend.stats()
    assert after["parse_errors"] - before["parse_errors"] == 1


def test_named_backend_stops(backend: Backend) -> None:
    with start_backend("other") as other:
        assert other.port != backend.port
        assert http_get(other.port, "/pid").json()["name"] == "other"
    assert other.proc.poll() is not None
    with pytest.raises(ConnectionRefusedError):
        http_get(other.port, "/pid")


@pytest.mark.parametrize("keepalive", [True, False])
def test_run_load_counts_everything(backend: Backend, keepalive: bool) -> None:
    result = run_load(backend.port, "/echo", concurrency=4, duration_s=10, max_requests=200, keepalive=keepalive)
    assert (result.ok, result.failed, result.retried_stale) == (200, 0, 0), result.failures


def test_run_load_retries_only_stale_keepalive_connections(backend: Backend) -> None:
    reused = run_load(backend.port, "/close-silently", concurrency=2, duration_s=10, max_requests=40, keepalive=True)
    assert reused.failed == 0, reused.failures
    assert reused.ok == 40
    # the server closes every connection after its first response: each of the two workers
    # sends its first request fresh, and every later one first on a stale reused connection
    assert reused.retried_stale == 38
    fresh = run_load(backend.port, "/close-silently", concurrency=2, duration_s=10, max_requests=40, keepalive=False)
    assert (fresh.ok, fresh.failed, fresh.retried_stale) == (40, 0, 0), fresh.failures


def test_run_load_never_retries_fresh_connections(backend: Backend) -> None:
    result = run_load(backend.port, "/reset-before-head", concurrency=2, duration_s=10, max_requests=10, keepalive=True)
    assert (result.ok, result.failed, result.retried_stale) == (0, 10, 0)
    assert all("fresh connection" in f for f in result.failures), result.failures


def test_start_load_runs_in_background(backend: Backend) -> None:
    future = start_load(backend.port, "/sleep/10", concurrency=2, duration_s=10, max_requests=20, keepalive=True)
    result = future.result(timeout=20)
    assert result.ok == 20 and result.failed == 0
