"""End-to-end proxying: a real gateway (master + 2 workers) in front of a real backend process,
driven by raw-socket clients. Each test names the behaviour a user relies on."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backend import EXTRA_BYTES, body_bytes
from tests.support.client import Conn, build_request, http_get, raw_request
from tests.support.procs import Backend, Gateway, free_port, start_backend

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with start_backend("b1") as b:
        yield b


def base_config(backend_port: int, **over: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "workers": 2,
        "grace_period": "5s",
        "limits": {"max_body": "64MiB", "header_timeout": "1s", "body_timeout": "1s", "idle_timeout": "1s"},
        "upstreams": {
            "backend": {
                "targets": [f"127.0.0.1:{backend_port}"],
                "keepalive": 8,
                "timeouts": {"connect": "1s", "read": "1s"},
            },
        },
        "routes": [
            {"match": {"prefix": "/strip"}, "upstream": "backend", "strip_prefix": True},
            {
                "match": {"prefix": "/edit"},
                "upstream": "backend",
                "strip_prefix": True,
                "headers": {
                    "request": {"set": {"X-Gateway": "fastgw"}, "remove": ["X-Secret"]},
                    "response": {"set": {"X-Served-By": "fastgw"}, "remove": ["X-Head-Test"]},
                },
            },
            {"match": {"path": "/only-get", "methods": ["GET"]}, "upstream": "backend"},
            {"match": {"prefix": "/"}, "upstream": "backend"},
        ],
        "access_log": {"path": "off"},
    }
    config.update(over)
    return config


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(base_config(backend.port), tmp_path_factory.mktemp("gw")) as g:
        yield g


def headers_of(echo: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def test_routes_strips_prefix_and_returns_request_id(gw: Gateway) -> None:
    resp = http_get(gw.port, "/strip/echo/a?x=1")
    assert resp.status == 200, resp.summary()
    echo = resp.json()
    assert echo["target"] == "/echo/a?x=1"
    rid = resp.header("x-request-id")
    assert rid and headers_of(echo)["x-request-id"] == [rid]


def test_strip_prefix_of_exact_prefix_gives_root(gw: Gateway) -> None:
    resp = http_get(gw.port, "/strip?q=1")
    assert resp.status == 404  # the backend's own 404, naming the path it received
    assert resp.json() == {"no_such_path": "/"}


def test_404_and_405_are_json_errors(backend: Backend, tmp_path: Path) -> None:
    config = base_config(backend.port)
    config["routes"] = [{"match": {"path": "/only-get", "methods": ["GET"]}, "upstream": "backend"}]
    with Gateway(config, tmp_path) as g, Conn(g.port) as conn:
        assert conn.request("GET", "/only-get").status == 404  # the backend's 404 for that path
        not_allowed = conn.request("DELETE", "/only-get")
        assert not_allowed.status == 405
        assert not_allowed.header("allow") == "GET"
        assert not_allowed.json()["error"]["code"] == "method_not_allowed"
        assert not_allowed.keep_alive  # a bodiless request answered locally keeps the connection
        missing = conn.request("GET", "/nowhere")
        assert missing.status == 404
        err = missing.json()["error"]
        assert err["code"] == "route_not_found" and err["request_id"] == missing.header("x-request-id")
        assert missing.header("content-type") == "application/json"


def test_forwarded_headers_are_set_and_client_values_replaced(gw: Gateway) -> None:
    resp = http_get(
        gw.port,
        "/echo",
        headers=[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Original-URL", "/admin"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    h = headers_of(resp.json())
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-port"] == [str(gw.port)]
    assert h["x-forwarded-host"] == [f"127.0.0.1:{gw.port}"]
    assert h["host"] == [f"127.0.0.1:{gw.port}"]
    for absent in ("x-real-ip", "forwarded", "x-original-url"):
        assert absent not in h


def test_trusted_proxy_extends_x_forwarded_for(backend: Backend, tmp_path: Path) -> None:
    with Gateway(base_config(backend.port, trusted_proxies=["127.0.0.0/8"]), tmp_path) as g:
        resp = http_get(g.port, "/echo", headers=[("X-Forwarded-For", "203.0.113.7")])
        assert headers_of(resp.json())["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]


def test_request_id_kept_when_valid_replaced_when_not(gw: Gateway) -> None:
    good = http_get(gw.port, "/echo", headers=[("X-Request-ID", "abc-123.X:y_z")])
    assert good.header("x-request-id") == "abc-123.X:y_z"
    assert headers_of(good.json())["x-request-id"] == ["abc-123.X:y_z"]
    bad = http_get(gw.port, "/echo", headers=[("X-Request-ID", "has space/and slash")])
    rid = bad.header("x-request-id")
    assert rid and rid != "has space/and slash"
    assert headers_of(bad.json())["x-request-id"] == [rid]


def test_configured_header_edits(gw: Gateway) -> None:
    resp = http_get(gw.port, "/edit/echo", headers=[("X-Secret", "s3cr3t"), ("X-Gateway", "client")])
    h = headers_of(resp.json())
    assert h["x-gateway"] == ["fastgw"]
    assert "x-secret" not in h
    assert resp.header("x-served-by") == "fastgw"
    head = http_get(gw.port, "/edit/head-test")
    assert head.header("x-head-test") is None
    assert http_get(gw.port, "/head-test").header("x-head-test") == "1"


def test_hop_by_hop_response_headers_removed(gw: Gateway) -> None:
    resp = http_get(
        gw.port, "/headers?set=Connection:x-private&set=X-Private:1&set=Keep-Alive:timeout=5&set=X-Public:1"
    )
    assert resp.status == 200
    assert resp.header("x-private") is None
    assert resp.header("keep-alive") is None
    assert resp.header("x-public") == "1"


def test_keepalive_reuses_upstream_connections(gw: Gateway, backend: Backend) -> None:
    with Conn(gw.port) as conn:
        conn.request("GET", "/echo")  # warm one upstream connection in this worker
        before = backend.stats()["connections"]
        for _ in range(20):
            resp = conn.request("GET", "/echo")
            assert resp.status == 200
            assert resp.keep_alive
        after = backend.stats()["connections"]
    assert after - before <= 1  # the /stats request itself may open one


def test_large_content_length_body_streams_intact(gw: Gateway) -> None:
    body = os.urandom(5 * 1024 * 1024)
    with Conn(gw.port, timeout=20) as conn:
        resp = conn.request("POST", "/echo", body=body)
    echo = resp.json()
    assert echo["body_length"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["chunked"] is False


def test_chunked_request_body_is_reframed(gw: Gateway) -> None:
    parts = [os.urandom(n) for n in (1, 1000, 70000, 3)]
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    data = build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], host=f"127.0.0.1:{gw.port}") + chunked
    result = raw_request(gw.port, data, responses=1)
    echo = result.responses[0].json()
    whole = b"".join(parts)
    assert echo["body_length"] == len(whole)
    assert echo["body_sha256"] == hashlib.sha256(whole).hexdigest()
    assert echo["chunked"] is True
    assert "transfer-encoding" in headers_of(echo)


@pytest.mark.parametrize("path,size", [("/bytes/3000000", 3000000), ("/chunked/100000/7", 100000)])
def test_response_bodies_arrive_intact(gw: Gateway, path: str, size: int) -> None:
    with Conn(gw.port, timeout=20) as conn:
        resp = conn.request("GET", path)
    assert resp.body == body_bytes(size)


def test_close_delimited_response_is_chunked_for_http11_and_close_delimited_for_http10(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        resp = conn.request("GET", "/close-delimited/5000")
        assert resp.body == body_bytes(5000)
        assert resp.header("transfer-encoding") == "chunked"
        assert conn.request("GET", "/echo").status == 200  # keep-alive survived
    raw = raw_request(gw.port, b"GET /close-delimited/5000 HTTP/1.0\r\n\r\n")
    assert raw.closed and raw.responses[0].body == body_bytes(5000)


def test_http10_client(gw: Gateway) -> None:
    raw = raw_request(gw.port, b"GET /echo HTTP/1.0\r\n\r\n")
    resp = raw.responses[0]
    assert resp.status == 200 and raw.closed
    assert resp.json()["version"] == "1.1"  # the gateway speaks HTTP/1.1 upstream
    keep = raw_request(
        gw.port, b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo HTTP/1.0\r\n\r\n", responses=2
    )
    assert [r.status for r in keep.responses] == [200, 200]
    assert keep.responses[0].header("connection") == "keep-alive"


def test_head_204_304_have_no_body(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        head = conn.request("HEAD", "/head-test")
        assert head.status == 200 and head.body == b""
        assert head.header("content-length") == "1234"
        assert conn.request("GET", "/204").status == 204
        not_mod = conn.request("GET", "/304")
        assert not_mod.status == 304 and not_mod.body == b""
        assert conn.request("GET", "/echo").status == 200


def test_expect_100_continue(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        conn.send(build_request("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", "5")], host="x"))
        first = conn.read_response(skip_informational=False)
        assert first.status == 100
        conn.send(b"hello")
        final = conn.read_response()
    echo = final.json()
    assert echo["body_length"] == 5
    assert "expect" not in headers_of(echo)


def test_early_hints_relayed(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        conn.send(build_request("GET", "/early-hints", host="x"))
        first = conn.read_response(skip_informational=False)
        assert first.status == 103
        assert conn.read_response().status == 200


def test_pipelined_requests_answered_in_order(gw: Gateway) -> None:
    reqs = b"".join(build_request("GET", f"/echo/{i}", host="x") for i in range(5))
    result = raw_request(gw.port, reqs, responses=5)
    assert [r.json()["target"] for r in result.responses] == [f"/echo/{i}" for i in range(5)]


def test_upstream_refused_is_502_json(backend: Backend, tmp_path: Path) -> None:
    config = base_config(backend.port)
    config["upstreams"]["backend"]["targets"] = [f"127.0.0.1:{free_port()}"]
    with Gateway(config, tmp_path) as g:
        resp = http_get(g.port, "/echo")
    assert resp.status == 502
    err = resp.json()["error"]
    assert err["status"] == 502 and err["code"] == "upstream_failed"
    assert err["request_id"] == resp.header("x-request-id")


def test_connect_error_fails_over_to_other_target(backend: Backend, tmp_path: Path) -> None:
    config = base_config(backend.port)
    config["upstreams"]["backend"]["targets"] = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{backend.port}"]
    with Gateway(config, tmp_path) as g:
        statuses = [http_get(g.port, "/echo").status for _ in range(6)]
    assert statuses == [200] * 6


def test_connect_timeout_is_504(backend: Backend, tmp_path: Path) -> None:
    # A listener whose accept queue is full drops SYNs, so connects to it hang: a loopback
    # stand-in for an unreachable host.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(blackhole.getsockname())
            fillers.append(s)
        config = base_config(backend.port)
        config["upstreams"]["backend"]["targets"] = ["127.0.0.1:%d" % blackhole.getsockname()[1]]
        config["upstreams"]["backend"]["timeouts"] = {"connect": "300ms", "read": "1s"}
        with Gateway(config, tmp_path) as g:
            resp = http_get(g.port, "/echo", timeout=10)
        assert resp.status == 504, resp.summary()
        assert resp.json()["error"]["code"] == "upstream_timeout"
    finally:
        for s in fillers:
            s.close()
        blackhole.close()


def test_read_timeout_before_head_is_504(gw: Gateway) -> None:
    start = time.monotonic()
    resp = http_get(gw.port, "/slow-head/3000", timeout=10)
    assert resp.status == 504
    assert time.monotonic() - start < 2.5


def test_read_timeout_mid_body_resets_client(gw: Gateway) -> None:
    result = raw_request(gw.port, build_request("GET", "/slow-body/3000", host="x"), timeout=10)
    assert result.error is not None and result.partial is not None  # cut short, never "complete"
    assert result.partial.status == 200


@pytest.mark.parametrize("path,status", [("/reset-before-head", 502), ("/garbage", 502), ("/switch-protocols", 502)])
def test_broken_upstream_before_head_is_502(gw: Gateway, path: str, status: int) -> None:
    resp = http_get(gw.port, path)
    assert resp.status == status, resp.summary()
    assert resp.json()["error"]["status"] == status


@pytest.mark.parametrize("path", ["/reset-mid-body", "/bad-length"])
def test_broken_upstream_mid_body_cuts_client(gw: Gateway, path: str) -> None:
    result = raw_request(gw.port, build_request("GET", path, host="x"), timeout=5)
    assert result.closed
    assert result.error is not None, result.summary()  # incomplete response, never a clean one


def test_bytes_after_response_are_discarded(gw: Gateway, backend: Backend) -> None:
    with Conn(gw.port) as conn:
        first = conn.request("GET", "/extra-bytes")
        assert first.body == b"complete"
        for _ in range(3):
            nxt = conn.request("GET", "/echo")
            assert nxt.status == 200 and nxt.header("x-smuggled") is None
    assert b"smuggled" in EXTRA_BYTES


def test_header_timeout_408(gw: Gateway) -> None:
    result = raw_request(gw.port, b"GET /echo HTTP/1.1\r\nHost: x\r\n", timeout=5)
    assert result.status == 408 and result.closed


def test_idle_keepalive_closed_silently(gw: Gateway) -> None:
    with Conn(gw.port, timeout=5) as conn:
        assert conn.request("GET", "/echo").status == 200
        assert conn.wait_closed(timeout=4)


def test_body_timeout_408(gw: Gateway) -> None:
    data = build_request("POST", "/echo", [("Content-Length", "10")], host="x") + b"12345"
    result = raw_request(gw.port, data, timeout=5)
    assert result.status == 408 and result.closed


def test_body_over_limit_is_413_before_upstream(backend: Backend, tmp_path: Path) -> None:
    config = base_config(backend.port)
    config["limits"]["max_body"] = "1KiB"
    with Gateway(config, tmp_path) as g:
        before = backend.stats()["requests"]
        declared = raw_request(g.port, build_request("POST", "/echo", [("Content-Length", "2048")], host="x"))
        assert declared.status == 413 and declared.closed
        chunked = build_request("POST", "/echo", [("Transfer-Encoding", "chunked")], host="x")
        streamed = raw_request(g.port, chunked + b"800\r\n" + b"a" * 2048 + b"\r\n0\r\n\r\n")
        assert streamed.status in (413,) or streamed.closed
        assert backend.stats()["requests"] == before  # /stats does not count itself


def test_slow_reader_does_not_make_gateway_buffer_the_response(gw: Gateway) -> None:
    """A client that stops reading a 200 MiB response: the worker's memory must stay bounded,
    because flow control pauses the upstream instead of buffering."""
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        sock.sendall(build_request("GET", f"/bytes/{200 * 1024 * 1024}", host="x"))
        sock.settimeout(5)
        assert sock.recv(1024)  # the response started
        # An observation window, not a wait for an event: a buffering gateway would read the
        # backend's ~1 GB/s into memory during it.
        time.sleep(1.5)
        rss = max(_rss_kib(pid) for pid in gw.workers)
        assert rss < 150 * 1024, f"worker RSS {rss} KiB while a client is not reading"
    finally:
        sock.close()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_upstream_reader_pauses_the_client_upload(backend: Backend, tmp_path: Path) -> None:
    """An upstream that accepts but never reads: the client's 200 MiB upload must stall (the
    worker stops reading from it) rather than pile up in the worker's memory."""
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(8)
    config = base_config(backend.port)
    config["upstreams"]["backend"]["targets"] = ["127.0.0.1:%d" % sink.getsockname()[1]]
    config["upstreams"]["backend"]["timeouts"] = {"connect": "1s", "read": "30s"}
    config["limits"]["max_body"] = "1GiB"
    config["limits"]["body_timeout"] = "30s"
    try:
        with Gateway(config, tmp_path) as g:
            client = socket.create_connection(("127.0.0.1", g.port))
            client.setblocking(False)
            size = 200 * 1024 * 1024
            head = build_request("POST", "/echo", [("Content-Length", str(size))], host="x")
            client.setblocking(True)
            client.sendall(head)
            client.setblocking(False)
            chunk = b"x" * 65536
            sent = 0
            deadline = time.monotonic() + 5
            stalled_since = None
            while time.monotonic() < deadline and sent < size:
                try:
                    sent += client.send(chunk)
                    stalled_since = None
                except BlockingIOError:
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > 1.0:
                        break  # the gateway stopped reading: back-pressure reached the client
                    time.sleep(0.01)
            rss = max(_rss_kib(pid) for pid in g.workers)
            client.close()
        assert sent < size, "the whole body went through although nobody upstream read it"
        assert rss < 150 * 1024, f"worker RSS {rss} KiB after {sent} bytes uploaded"
    finally:
        sink.close()
