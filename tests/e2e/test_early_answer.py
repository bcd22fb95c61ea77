"""Large request bodies answered before they are read in full (issue 14): by the upstream (the
backend's `/early/{status}/{then}` answers as soon as the head is in) or by the gateway itself
(413). What users expect from nginx: the answer reaches the client intact, the rest of the body
is not forwarded, and the client connection ends with a lingering close, never with a reset that
destroys the answer or fails the client's upload half-way.

The client here is the kind that resets hurt most: it sends its whole body before it reads
anything (Python's http.client, requests and many SDKs do)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.client import LOOPBACK, Response, ResponseReader, build_request
from tests.support.procs import Backend, Gateway, gateway_config

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
UPLOAD = 100 * MiB


@dataclass
class Upload:
    sent: int
    send_error: OSError | None
    responses: list[Response]
    reset: bool
    closed: bool

    def summary(self) -> str:
        return (f"sent {self.sent} bytes, send error {self.send_error!r}, reset={self.reset}, "
                f"closed={self.closed}, responses: {[r.summary() for r in self.responses]}")


def upload(port: int, path: str, size: int, *, chunked: bool, declared: int | None = None,
           timeout: float = 20.0) -> Upload:
    """POSTs `size` bytes of body in 1 MiB writes (Content-Length `declared`, default `size`, or
    chunked), then reads until the server closes or `timeout` passes."""
    framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(declared or size))
    piece = b"x" * MiB
    if chunked:
        piece = b"%x\r\n%s\r\n" % (len(piece), piece)
    sent, send_error = 0, None
    reader = ResponseReader()
    responses: list[Response] = []
    reset = closed = False
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        try:
            sock.sendall(build_request("POST", path, [framing], host="gw.test"))
            while sent < size:
                sock.sendall(piece)
                sent += MiB
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:
            send_error = exc
        deadline = time.monotonic() + timeout
        while not closed and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                reset = closed = True
                break
            if not data:
                closed = True
                reader.feed_eof()
            else:
                reader.feed(data)
            while (resp := reader.next_response()) is not None:
                responses.append(resp)
    return Upload(sent, send_error, responses, reset, closed)


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = gateway_config(backend.port, limits={"max_body": "1GiB"})
    with Gateway(config, tmp_path_factory.mktemp("gw")) as g:
        yield g


def assert_answered_intact(result: Upload, status: int, early: bool) -> Response:
    """One complete response with `status`, the whole upload accepted, a FIN and no reset."""
    assert result.send_error is None and result.sent == UPLOAD, result.summary()
    assert len(result.responses) == 1 and result.responses[0].status == status, result.summary()
    assert result.closed and not result.reset, result.summary()
    resp = result.responses[0]
    assert not resp.keep_alive, result.summary()
    if early:
        assert resp.json()["early"] == status, result.summary()
    return resp


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize(("status", "then"), [(413, "drain"), (413, "linger"), (413, "stall"), (200, "linger")])
def test_an_early_answer_reaches_a_client_still_uploading(gw: Gateway, status: int, then: str, chunked: bool) -> None:
    """The backend answers a 100 MiB upload right after its head, then reads and drops the rest
    (drain), closes gracefully (linger) or stops reading (stall): the client gets that answer
    whole, its upload is read (and dropped) to the end, and the connection ends with a FIN."""
    assert_answered_intact(upload(gw.port, f"/early/{status}/{then}", UPLOAD, chunked=chunked), status, True)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_an_upstream_reset_after_an_early_answer_is_never_a_client_reset(gw: Gateway, chunked: bool) -> None:
    """The backend answers, then closes with the upload unread: its kernel resets the upstream
    connection, so the gateway may get its answer or only the reset (nginx gives 502 then too).
    Either way the client gets one complete response and a FIN."""
    result = upload(gw.port, "/early/413/close", UPLOAD, chunked=chunked)
    assert len(result.responses) == 1 and result.responses[0].status in (413, 502), result.summary()
    assert result.send_error is None and result.closed and not result.reset, result.summary()


def test_the_gateways_own_413_reaches_a_client_still_uploading(backend: Backend, tmp_path: Path) -> None:
    """Content-Length over max_body: the gateway's 413 goes out at once, and the 100 MiB the
    client sends anyway are read and dropped, not answered with a reset."""
    config = gateway_config(backend.port)        # max_body 1MiB
    with Gateway(config, tmp_path) as g:
        before = backend.stats()["requests"]
        result = upload(g.port, "/echo", UPLOAD, chunked=False)
        resp = assert_answered_intact(result, 413, False)
        assert resp.json()["error"]["status"] == 413
        assert backend.stats()["requests"] == before


def test_a_small_rest_is_dropped_and_the_connection_kept(gw: Gateway) -> None:
    """An early answer while at most 64 KiB of a Content-Length body is still to come: the rest
    is read and dropped, and the connection serves the next request."""
    with socket.create_connection((LOOPBACK, gw.port), timeout=10) as sock:
        sock.sendall(build_request("POST", "/early/200/drain", [("Content-Length", "40000")], host="gw.test")
                     + b"a" * 1000)
        reader = ResponseReader()
        first = _read_response(sock, reader)
        assert first.status == 200 and first.keep_alive, first.summary()
        sock.sendall(b"b" * 39000 + build_request("GET", "/echo/next", host="gw.test"))
        second = _read_response(sock, reader)
        assert second.status == 200 and second.json()["target"] == "/echo/next", second.summary()


def _read_response(sock: socket.socket, reader: ResponseReader) -> Response:
    while (resp := reader.next_response()) is None:
        data = sock.recv(65536)
        assert data, "the gateway closed the connection"
        reader.feed(data)
    return resp


def _send_until_closed(sock: socket.socket, piece: bytes, pause: float, limit: float) -> tuple[int, float]:
    """Sends `piece` every `pause` seconds until a send fails (the gateway closed: the kernel
    answers the next bytes with a reset); (bytes sent, seconds it took). Bounded by `limit`."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < limit:
        try:
            sock.sendall(piece)
        except OSError:
            return sent, time.monotonic() - start
        sent += len(piece)
        if pause:
            time.sleep(pause)
    return sent, time.monotonic() - start


def _answered_early(port: int, declared: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    sock.sendall(build_request("POST", "/early/413/stall", [("Content-Length", str(declared))], host="gw.test")
                 + b"a" * MiB)
    resp = _read_response(sock, ResponseReader())
    assert resp.status == 413 and not resp.keep_alive, resp.summary()
    return sock


def test_a_lingering_close_ends_after_lingering_time(backend: Backend, tmp_path: Path) -> None:
    """A client that keeps trickling its body after the answer is read from for lingering_time,
    not for as long as it sends."""
    config = gateway_config(backend.port, limits={"max_body": "1GiB", "lingering_time": "1s",
                                                   "lingering_timeout": "10s"})
    with Gateway(config, tmp_path) as g, _answered_early(g.port, 64 * MiB) as sock:
        sent, took = _send_until_closed(sock, b"c" * 1024, 0.05, 15.0)
        assert took < 8.0, f"still reading after {took:.1f}s ({sent} bytes)"


def test_a_lingering_close_ends_when_the_client_is_silent(backend: Backend, tmp_path: Path) -> None:
    """A client that neither sends nor closes after the answer is waited for lingering_timeout.
    Only a send can tell it the gateway closed (its FIN came with the answer), so the client stays
    silent for three lingering timeouts, then probes: the gateway must have closed by then."""
    config = gateway_config(backend.port, limits={"max_body": "1GiB", "lingering_timeout": "500ms"})
    with Gateway(config, tmp_path) as g, _answered_early(g.port, 64 * MiB) as sock:
        time.sleep(1.5)                 # the silence under test: there is no event to wait for
        sent, took = _send_until_closed(sock, b"d", 0.05, 5.0)
        assert took < 4.0, f"still open {took:.1f}s after the client fell silent ({sent} probe bytes)"


def test_a_lingering_close_reads_at_most_the_rest_of_the_body(backend: Backend, tmp_path: Path) -> None:
    """A client that sends far more than its Content-Length after the answer: the gateway drops
    the rest of the body and 64 KiB more, then closes, however fast the client sends."""
    config = gateway_config(backend.port, limits={"max_body": "1GiB", "lingering_timeout": "30s"})
    with Gateway(config, tmp_path) as g, _answered_early(g.port, 2 * MiB) as sock:
        sent, took = _send_until_closed(sock, b"e" * 65536, 0.0, 15.0)
        # The socket buffers on both sides hold some MiB that never count as read.
        assert sent < 64 * MiB, f"{sent} bytes sent in {took:.1f}s without the gateway closing"
