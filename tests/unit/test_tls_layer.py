"""The compiled TLS layer (`fastgw._tls`) in process: a real OpenSSL server context, the exchange
tests' fake transport below it, a recording HTTP protocol above it, and a real TLS client on the other side
(the stdlib `ssl` module over memory BIOs). Every assertion is on what crossed each side."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from fastgw._tls import ServerContext, TlsConnection, TlsListener
from tests.unit.test_exchange import FakeTransport

RECORD_HEADER = 5
COUNTERS = (10, 11, 12, 13)
HANDSHAKES, RESUMED, ERRORS, TIMEOUTS = COUNTERS


class App:
    """The HTTP protocol above: records its calls."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.received = b""
        self.events: list[str] = []
        self.keep_open = False
        self.on_data: Callable[[App, bytes], None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.on_data is not None:
            self.on_data(self, data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


class FakeLoop:
    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def run(self) -> None:
        while self.soon:
            self.soon.pop(0)()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def certs(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    out = {}
    base = tmp_path_factory.mktemp("tls")
    for name in ("a.example", "b.example"):
        leaf = ca.issue_cert(name)
        cert, key = base / f"{name}.pem", base / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(cert)
        for pem in leaf.cert_chain_pems[1:]:
            cert.write_bytes(cert.read_bytes() + pem.bytes())
        leaf.private_key_pem.write_to_path(key)
        out[name] = (str(cert), str(key))
    return out


class Pair:
    """One TLS client (stdlib, memory BIOs) connected to one TlsConnection over a FakeTransport."""

    def __init__(self, context: ServerContext, client_ctx: ssl.SSLContext, server_name: str = "a.example",
                 timeout: float = 10.0) -> None:
        self.loop = FakeLoop()
        self.apps: list[App] = []

        def make() -> App:
            app = App()
            self.apps.append(app)
            return app

        self.counts: list[int] = []
        self.listener = TlsListener(context, make, self.loop, timeout, self.counts.append, COUNTERS)
        self.conn: TlsConnection = self.listener()
        self.tcp = FakeTransport()
        self.conn.connection_made(self.tcp)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_name)

    @property
    def app(self) -> App:
        assert len(self.apps) == 1
        return self.apps[0]

    def to_server(self) -> None:
        data = self.outgoing.read()
        if data:
            self.conn.data_received(data)

    def to_client(self) -> None:
        self.incoming.write(self.tcp.take())

    def handshake(self) -> None:
        for _ in range(10):
            try:
                self.client.do_handshake()
                self.to_server()
                self.to_client()
                return
            except ssl.SSLWantReadError:
                self.to_server()
                self.to_client()
        raise AssertionError("no handshake")

    def client_read(self) -> bytes:
        out = b""
        while True:
            try:
                chunk = self.client.read(65536)
            except ssl.SSLWantReadError:
                return out
            if not chunk:
                return out
            out += chunk


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def test_handshake_then_data_both_ways(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    pair = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca))
    assert pair.listener.handshaking == 1
    pair.handshake()
    assert pair.listener.handshaking == 0
    assert pair.counts == [HANDSHAKES]
    assert pair.app.events == ["made"] and pair.app.transport is pair.conn
    assert pair.client.selected_alpn_protocol() is None
    pair.client.write(b"GET / HTTP/1.1\r\n\r\n")
    pair.to_server()
    assert pair.app.received == b"GET / HTTP/1.1\r\n\r\n"
    pair.conn.write(b"HTTP/1.1 200 OK\r\n")
    pair.conn.write(memoryview(b"content-length: 0\r\n\r\n"))
    pair.to_client()
    assert pair.client_read() == b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    assert pair.conn.get_extra_info("peername") == (pair.tcp.peer, 40000)
    assert pair.conn.get_extra_info("peercert") is None


def test_alpn_http11_only(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    ctx = client_context(ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    pair = Pair(ServerContext([(*certs["a.example"], ())]), ctx)
    pair.handshake()
    assert pair.client.selected_alpn_protocol() == "http/1.1"


def test_sni_picks_the_certificate(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    context = ServerContext([(*certs["a.example"], ("a.example",)), (*certs["b.example"], ("*.example",))])
    for name, expected in (("a.example", "a.example"), ("x.example", "b.example"), ("X.EXAMPLE", "b.example"),
                           ("other.test", "a.example")):
        ctx = client_context(ca)
        ctx.check_hostname = False
        pair = Pair(context, ctx, server_name=name)
        pair.handshake()
        alt = [value for kind, value in pair.client.getpeercert()["subjectAltName"] if kind == "DNS"]
        assert alt == [expected], name


def test_writelines_coalesces_small_parts_into_one_record(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    pair = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca))
    pair.handshake()
    pair.tcp.take()
    pair.conn.writelines([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"hello"])
    (wire,) = pair.tcp.written
    assert wire[0] == 23  # application data
    assert RECORD_HEADER + int.from_bytes(wire[3:5], "big") == len(wire), "one record"
    pair.to_client()
    assert pair.client_read() == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    big = b"x" * 40000
    pair.conn.writelines([b"head", big, b"tail"])
    pair.to_client()
    assert pair.client_read() == b"head" + big + b"tail"


def test_paused_reading_holds_plaintext_until_resumed(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    pair = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca))
    pair.handshake()
    pair.app.on_data = lambda app, data: app.transport.pause_reading()
    pair.client.write(b"first")
    pair.to_server()
    assert pair.app.received == b"first" and not pair.tcp.reading
    pair.client.write(b"second")
    pair.to_server()
    assert pair.app.received == b"first", "nothing is handed up while paused"
    pair.app.on_data = None
    pair.conn.resume_reading()
    assert pair.tcp.reading and pair.app.received == b"first", "handed up from the loop, not from resume_reading"
    pair.loop.run()
    assert pair.app.received == b"firstsecond"


def test_close_sends_close_notify(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    pair = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca))
    pair.handshake()
    pair.conn.write(b"bye")
    pair.conn.close()
    assert pair.tcp.closed and pair.conn.is_closing()
    pair.to_client()
    assert pair.client.read(10) == b"bye"
    assert pair.client.read(10) == b"", "close_notify (a cut connection would want more bytes)"
    pair.conn.write(b"after close")  # dropped, never written to a closed transport
    pair.conn.connection_lost(None)
    assert pair.app.events == ["made", "lost"]


def test_client_close_notify_then_eof_tells_the_app_once(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    pair = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca))
    pair.handshake()
    pair.app.keep_open = True
    with pytest.raises(ssl.SSLWantReadError):
        pair.client.unwrap()
    pair.to_server()
    assert pair.conn.eof_received() is True
    assert pair.app.events == ["made", "eof"] and not pair.tcp.closed
    pair.app.keep_open = False
    pair2 = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca))
    pair2.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        pair2.client.unwrap()
    pair2.to_server()
    assert pair2.app.events == ["made", "eof"] and pair2.tcp.closed


def test_not_tls_is_closed_without_an_app(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    pair = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca))
    pair.conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert pair.tcp.closed
    assert pair.listener.handshaking == 0
    pair.conn.data_received(b"more")  # ignored once failed
    pair.conn.connection_lost(None)
    assert pair.apps == [] and pair.counts == [ERRORS]


def test_old_protocol_versions_are_refused(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    ctx = client_context(ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    pair = Pair(ServerContext([(*certs["a.example"], ())], min_version="1.3"), ctx)
    with pytest.raises(ssl.SSLError):
        pair.handshake()
    assert pair.apps == [] and pair.tcp.closed
    assert pair.counts == [ERRORS]


def test_stalled_handshakes_expire(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    pair = Pair(ServerContext([(*certs["a.example"], ())]), client_context(ca), timeout=0.0)
    assert pair.listener.handshaking == 1
    pair.listener.expire()
    assert pair.tcp.aborted and pair.listener.handshaking == 0
    assert pair.counts == [TIMEOUTS]


def test_client_certificate(certs: dict[str, tuple[str, str]], ca: trustme.CA, tmp_path: Path) -> None:
    client_ca = trustme.CA()
    ca_file = tmp_path / "client-ca.pem"
    client_ca.cert_pem.write_to_path(ca_file)
    context = ServerContext([(*certs["a.example"], ())], client_ca=str(ca_file), client_cert="optional")
    ctx = client_context(ca)
    client_ca.issue_cert("alice.example", common_name="alice").configure_cert(ctx)
    pair = Pair(context, ctx)
    pair.handshake()
    from cryptography import x509

    der = pair.conn.get_extra_info("peercert")
    assert x509.load_der_x509_certificate(der).subject.rfc4514_string().startswith("CN=alice,")
    without = Pair(context, client_context(ca))
    without.handshake()
    assert without.conn.get_extra_info("peercert") is None
    required = ServerContext([(*certs["a.example"], ())], client_ca=str(ca_file), client_cert="required")
    refused = Pair(required, client_context(ca))
    with pytest.raises(ssl.SSLError):
        refused.handshake()
        refused.client_read()  # TLS 1.3: the client learns of the refusal after its Finished
    assert refused.apps == [] and refused.tcp.closed


def test_files_that_cannot_serve_say_why(certs: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    cert_a, key_a = certs["a.example"]
    _, key_b = certs["b.example"]
    with pytest.raises(ValueError, match="does not match"):
        ServerContext([(cert_a, key_b, ())])
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing\n")
    with pytest.raises(ValueError, match="no usable PEM certificate"):
        ServerContext([(str(empty), key_a, ())])
    with pytest.raises(ValueError, match="no usable private key"):
        ServerContext([(cert_a, str(empty), ())])
    with pytest.raises(ValueError, match="no usable cipher"):
        ServerContext([(cert_a, key_a, ())], ciphers="NOT-A-CIPHER")


def test_a_resumed_session_is_counted(certs: dict[str, tuple[str, str]], ca: trustme.CA) -> None:
    context = ServerContext([(*certs["a.example"], ())])
    client = client_context(ca)
    first = Pair(context, client)
    first.handshake()
    first.client.write(b"x")
    first.to_server()
    first.conn.write(b"y")  # TLS 1.3: the session tickets came with the handshake's end
    first.to_client()
    assert first.client_read() == b"y"
    second = Pair(context, client)
    second.client = client.wrap_bio(second.incoming, second.outgoing, server_hostname="a.example",
                                    session=first.client.session)
    second.handshake()
    assert second.client.session_reused
    assert second.counts == [HANDSHAKES, RESUMED]
