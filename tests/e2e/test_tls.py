"""TLS end to end (issue 10, DESIGN §8): termination on listen entries (handshake, SNI, protocol
and cipher floor, ALPN, session resumption across workers, X-Forwarded-Proto), client
certificates (mTLS) as consumers, TLS to upstreams (verification, SNI, client certificate), and
certificates rotated by HUP under load without a failed handshake. Certificates are made here by
trustme."""

from __future__ import annotations

import json
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.auth import AuthServer, CertFiles, client_context, issue, start_authserver
from tests.support.client import LOOPBACK, Response, ResponseReader, build_request, http_get, start_load
from tests.support.procs import Backend, Gateway, free_port, gateway_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def certs(ca: trustme.CA, tmp_path_factory: Any) -> dict[str, Any]:
    d: Path = tmp_path_factory.mktemp("certs")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {
        "dir": d,
        "default": issue(ca, d, "default", "localhost", "default.test", rsa=True),
        "other": issue(ca, d, "other", "api.test", "*.wild.test"),
        "upstream": issue(ca, d, "upstream", "upstream.test"),
        "gateway_client": None,
    }


@pytest.fixture(scope="module")
def upstream(certs: dict[str, Any], client_ca: trustme.CA) -> Iterator[AuthServer]:
    """A TLS upstream that requires a client certificate from `client_ca`."""
    d: Path = certs["dir"]
    client_ca.cert_pem.write_to_path(str(d / "client-ca.pem"))
    up: CertFiles = certs["upstream"]
    with start_authserver(
        "--cert", str(up.cert), "--key", str(up.key), "--client-ca", str(d / "client-ca.pem"), scheme="https"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def gw(
    backend: Backend, certs: dict[str, Any], client_ca: trustme.CA, upstream: AuthServer, tmp_path_factory: Any
) -> Iterator[Gateway]:
    d: Path = certs["dir"]
    gateway_cert = issue(client_ca, d, "gateway-client", common_name="gateway-1")
    wrong_ca = trustme.CA()
    wrong_ca.cert_pem.write_to_path(str(d / "wrong-ca.pem"))
    default, other = certs["default"], certs["other"]
    tls = {
        "certificates": [
            {"cert": str(default.cert), "key": str(default.key)},
            {"cert": str(other.cert), "key": str(other.key), "sni": ["api.test", "*.wild.test"]},
        ],
    }
    mtls = {"cert": str(default.cert), "key": str(default.key), "client_ca": str(d / "client-ca.pem"),
            "client_cert": "optional"}
    client = {"cert": str(gateway_cert.cert), "key": str(gateway_cert.key)}
    up = f"127.0.0.1:{upstream.port}"
    config = gateway_config(
        backend.port,
        listen=[
            {"address": f"{LOOPBACK}:{free_port()}"},
            {"address": f"{LOOPBACK}:{free_port()}", "tls": tls},
            {"address": f"{LOOPBACK}:{free_port()}", "tls": mtls},
        ],
        upstreams={
            "secure": {
                "targets": [up], "tls": {"ca": str(d / "ca.pem"), "sni": "upstream.test", "client_cert": client},
            },
            "wrong_ca": {"targets": [up], "tls": {"ca": str(d / "wrong-ca.pem"), "sni": "upstream.test",
                                                  "client_cert": client}},
            "no_verify": {"targets": [up], "tls": {"verify": False, "client_cert": client}},
            "no_client_cert": {"targets": [up], "tls": {"ca": str(d / "ca.pem"), "sni": "upstream.test"}},
        },
        auth={"clients": {"type": "mtls"}},
        rate_limits={"per_consumer": {"rate": "1/m", "burst": 2, "key": "consumer"}},
        routes=[
            {"match": {"prefix": "/mtls-limited"}, "upstream": "backend", "strip_prefix": True, "auth": "clients",
             "rate_limit": "per_consumer"},
            {"match": {"prefix": "/mtls"}, "upstream": "backend", "strip_prefix": True, "auth": "clients"},
            {"match": {"prefix": "/only-a"}, "upstream": "backend", "strip_prefix": True, "auth": "clients",
             "require": {"consumers": ["svc-a"]}},
            {"match": {"prefix": "/secure"}, "upstream": "secure", "strip_prefix": True},
            {"match": {"prefix": "/wrong_ca"}, "upstream": "wrong_ca", "strip_prefix": True},
            {"match": {"prefix": "/no_verify"}, "upstream": "no_verify", "strip_prefix": True},
            {"match": {"prefix": "/no_client_cert"}, "upstream": "no_client_cert", "strip_prefix": True},
            {"match": {"prefix": "/"}, "upstream": "backend"},
        ],
    )
    with Gateway(config, tmp_path_factory.mktemp("tlsgw")) as gateway:
        gateway.tls_port = int(config["listen"][1]["address"].rsplit(":", 1)[1])  # type: ignore[attr-defined]
        gateway.mtls_port = int(config["listen"][2]["address"].rsplit(":", 1)[1])  # type: ignore[attr-defined]
        yield gateway


def tls_connect(port: int, ctx: ssl.SSLContext, server_hostname: str | None = "localhost",
                session: Any = None) -> ssl.SSLSocket:
    raw = socket.create_connection((LOOPBACK, port), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
    except BaseException:
        raw.close()
        raise


def request(sock: ssl.SSLSocket, path: str, host: str = "localhost") -> Response:
    sock.sendall(build_request("GET", path, [], host=host))
    reader = ResponseReader()
    while (resp := reader.next_response()) is None:
        chunk = sock.recv(65536)
        if not chunk:
            reader.feed_eof()
            resp = reader.next_response()
            assert resp is not None, "connection closed without a response"
            return resp
        reader.feed(chunk)
    return resp


def refused(port: int, ctx: ssl.SSLContext, path: str) -> bool:
    """The handshake fails, or (TLS 1.3, where the client learns of a refused client certificate
    only after its side of the handshake) the connection ends before any response."""
    try:
        with tls_connect(port, ctx) as sock:
            sock.sendall(build_request("GET", path, [], host="localhost"))
            return sock.recv(65536) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def der(files: CertFiles) -> bytes:
    return ssl.PEM_cert_to_DER_cert(files.cert.read_text())


def echoed_headers(resp: Response) -> dict[str, str]:
    assert resp.status == 200, resp.summary()
    return {name.lower(): value for name, value in resp.json()["headers"]}


def test_handshake_sni_alpn_and_forwarded_proto(gw: Gateway, ca: trustme.CA, certs: dict[str, Any]) -> None:
    port = gw.tls_port  # type: ignore[attr-defined]
    ctx = client_context(ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_connect(port, ctx) as sock:
        assert sock.getpeercert(binary_form=True) == der(certs["default"])
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        headers = echoed_headers(request(sock, "/echo"))
        assert headers["x-forwarded-proto"] == "https"
        assert headers["x-forwarded-port"] == str(port)
        assert request(sock, "/echo").status == 200  # keep-alive over TLS
    for name in ("api.test", "x.wild.test"):
        with tls_connect(port, client_context(ca), name) as sock:
            assert sock.getpeercert(binary_form=True) == der(certs["other"]), name
    loose = client_context(ca, check_hostname=False)
    for name in ("unknown.test", "a.b.wild.test", None):  # unknown or no SNI: the first certificate
        with tls_connect(port, loose, name) as sock:
            assert sock.getpeercert(binary_form=True) == der(certs["default"]), name
    assert echoed_headers(request_plain(gw.port, "/echo"))["x-forwarded-proto"] == "http"


def test_old_protocols_and_weak_ciphers_are_refused(gw: Gateway, ca: trustme.CA) -> None:
    port = gw.tls_port  # type: ignore[attr-defined]
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        ctx = client_context(ca)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # the old versions are deprecated: exactly why we try them
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(port, ctx).close()
    weak = {
        # the default certificate is RSA: static RSA key exchange, CBC with SHA-1, 3DES
        "localhost": ("AES128-SHA:AES256-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384",
                      "DES-CBC3-SHA:@SECLEVEL=0"),
        # the other one is ECDSA: CBC suites
        "api.test": ("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256"),
    }
    tried = 0
    for name, suites in weak.items():
        for suite in suites:
            ctx = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
            try:
                ctx.set_ciphers(suite)
            except ssl.SSLError:
                continue  # this OpenSSL cannot even offer it
            tried += 1
            with pytest.raises((ssl.SSLError, ConnectionError)):
                tls_connect(port, ctx, name).close()
    assert tried >= 4
    # The controls: TLS 1.2 with an intermediate suite works for either key type.
    for name, suite in (("localhost", "ECDHE-RSA-AES128-GCM-SHA256"), ("api.test", "ECDHE-ECDSA-CHACHA20-POLY1305")):
        ctx = client_context(ca, maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(suite)
        with tls_connect(port, ctx, name) as sock:
            assert sock.version() == "TLSv1.2" and sock.cipher()[0] == suite


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_sessions_resume_on_every_worker(gw: Gateway, ca: trustme.CA, version: ssl.TLSVersion) -> None:
    port = gw.tls_port  # type: ignore[attr-defined]
    ctx = client_context(ca, minimum_version=version, maximum_version=version)
    with tls_connect(port, ctx) as sock:
        assert request(sock, "/echo").status == 200  # TLS 1.3 tickets arrive after the handshake
        session = sock.session
    assert session is not None
    before = tls_counter(gw, "resumed", port)
    reused = []
    for _ in range(8):  # new connections, spread over both workers by SO_REUSEPORT
        with tls_connect(port, ctx, session=session) as sock:
            assert request(sock, "/echo").status == 200
            reused.append(sock.session_reused)
    assert all(reused), reused
    assert tls_counter(gw, "resumed", port) - before == 8  # counted by the workers, for the host


def tls_counter(gw: Gateway, name: str, port: int) -> float:
    """`fastgw_tls_<name>_total` of the listener on `port`, from /metrics (0 before any)."""
    text = http_get(gw.admin_port, "/metrics").body.decode()
    prefix, label = f"fastgw_tls_{name}_total{{", f'listener="{LOOPBACK}:{port}"'
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix) and label in line]
    return values[0] if values else 0.0


def test_client_certificates_name_the_consumer(gw: Gateway, ca: trustme.CA, client_ca: trustme.CA) -> None:
    port = gw.mtls_port  # type: ignore[attr-defined]
    for cn in ("svc-a", "svc-b"):
        ctx = client_context(ca)
        client_ca.issue_cert(common_name=cn).configure_cert(ctx)
        with tls_connect(port, ctx) as sock:
            headers = echoed_headers(request(sock, "/mtls/echo"))
            assert headers["x-consumer"] == cn
            assert request(sock, "/only-a/echo").status == (200 if cn == "svc-a" else 403)
    with tls_connect(port, client_context(ca)) as sock:  # no client certificate (optional)
        resp = request(sock, "/mtls/echo")
        assert resp.status == 401 and resp.header("www-authenticate") == 'Mutual realm="fastgw"'
        assert request(sock, "/echo").status == 200  # routes without auth are open
    stranger = client_context(ca)
    trustme.CA().issue_cert(common_name="svc-a").configure_cert(stranger)
    assert refused(port, stranger, "/mtls/echo")
    # The TLS listener without client_ca: no consumer, and a client cannot claim one.
    with tls_connect(gw.tls_port, client_context(ca)) as sock:  # type: ignore[attr-defined]
        assert request(sock, "/mtls/echo").status == 401


def test_a_client_certificate_consumer_keys_rate_limits(gw: Gateway, ca: trustme.CA, client_ca: trustme.CA) -> None:
    """The verified subject is a consumer like any other: a bucket each, for the whole host (each
    request on a new connection, so both workers serve them)."""

    def statuses(cn: str, n: int) -> list[int]:
        ctx = client_context(ca)
        client_ca.issue_cert(common_name=cn).configure_cert(ctx)
        out = []
        for _ in range(n):
            with tls_connect(gw.mtls_port, ctx) as sock:  # type: ignore[attr-defined]
                out.append(request(sock, "/mtls-limited/echo").status)
        return out

    assert statuses("svc-limited-a", 4) == [200, 200, 429, 429]
    assert statuses("svc-limited-b", 1) == [200]


def test_jwks_and_introspection_over_https(backend: Backend, ca: trustme.CA, certs: dict[str, Any],
                                           tmp_path: Path) -> None:
    """The auth agent fetches keys and introspects tokens over TLS, verified against `jwks_ca` /
    `ca`; with a CA that did not sign the server's certificate it gets neither, and refuses. Two
    auths name the same JWKS URL with different CAs: each gets its own fetch (keys were shared by
    URL alone, so the last auth's CA decided for both)."""
    from tests.support.auth import SigningKey, jwks

    d: Path = certs["dir"]
    server_files = issue(ca, tmp_path, "authserver", "127.0.0.1")
    key = SigningKey.rsa("https-k1")
    with start_authserver("--cert", str(server_files.cert), "--key", str(server_files.key), scheme="https") as auth:
        auth.set_jwks(jwks(key))
        auth.set_tokens({"tok-https": {"active": True, "sub": "u-https", "exp": int(time.time()) + 3600}})
        ca_file, wrong = str(d / "ca.pem"), str(d / "wrong-ca.pem")
        if not Path(wrong).exists():
            trustme.CA().cert_pem.write_to_path(wrong)
        introspection = {"type": "introspection", "url": f"{auth.url}/introspect", "client_id": "gw",
                         "client_secret": "gw-secret", "timeout": "2s"}
        config = gateway_config(
            backend.port,
            auth={
                "jwt_ok": {"type": "jwt", "algorithms": ["RS256"], "jwks": f"{auth.url}/jwks", "jwks_ca": ca_file,
                           "require_exp": False},
                "jwt_wrong_ca": {"type": "jwt", "algorithms": ["RS256"], "jwks": f"{auth.url}/jwks",
                                 "jwks_ca": wrong, "require_exp": False},
                "opaque_ok": {**introspection, "ca": ca_file},
                "opaque_wrong_ca": {**introspection, "ca": wrong},
            },
            routes=[{"match": {"prefix": f"/{name}"}, "upstream": "backend", "strip_prefix": True, "auth": name}
                    for name in ("jwt_ok", "jwt_wrong_ca", "opaque_ok", "opaque_wrong_ca")],
        )
        (tmp_path / "gw").mkdir()
        with Gateway(config, tmp_path / "gw") as gw:
            token = [("Authorization", f"Bearer {key.token(sub='u-https')}")]
            opaque = [("Authorization", "Bearer tok-https")]
            assert http_get(gw.port, "/jwt_ok/echo", token).status == 200
            assert http_get(gw.port, "/opaque_ok/echo", opaque).status == 200
            assert http_get(gw.port, "/jwt_wrong_ca/echo", token).status == 503  # never any keys
            assert http_get(gw.port, "/opaque_wrong_ca/echo", opaque).status == 503
            assert auth.stats()["tokens"] == {"tok-https": 1}


def test_bodies_pipelining_and_broken_clients(gw: Gateway, ca: trustme.CA) -> None:
    """What the TLS layer carries for the HTTP protocol: a 3 MiB download and a 1 MiB upload
    (many TLS records each way), two pipelined requests in one record, then clients that break
    the protocol: plain HTTP on the TLS port and garbage are closed, and the gateway serves on."""
    from tests.support.backend import body_bytes

    port = gw.tls_port  # type: ignore[attr-defined]
    ctx = client_context(ca)
    with tls_connect(port, ctx) as sock:
        resp = request(sock, "/bytes/3145728")
        assert resp.status == 200 and resp.body == body_bytes(3145728)
        upload = b"u" * (1 << 20)
        sock.sendall(build_request("POST", "/echo", [("Content-Length", str(len(upload)))], host="localhost")
                     + upload)
        reader = ResponseReader()
        while (resp := reader.next_response()) is None:
            reader.feed(sock.recv(65536))
        echoed = resp.json()
        assert echoed["body_length"] == len(upload)
        sock.sendall(build_request("GET", "/echo?n=1", [], host="localhost")
                     + build_request("GET", "/echo?n=2", [], host="localhost"))
        reader = ResponseReader()
        targets = []
        while len(targets) < 2:
            while (resp := reader.next_response()) is None:
                reader.feed(sock.recv(65536))
            targets.append(resp.json()["target"])
        assert targets == ["/echo?n=1", "/echo?n=2"]
    for junk in (build_request("GET", "/", [], host="localhost"), b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64):
        with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
            raw.sendall(junk)
            received = b""
            while chunk := raw.recv(65536):  # until the gateway closes (the timeout fails the test)
                received += chunk
            assert b"HTTP/1.1" not in received
    with tls_connect(port, ctx) as sock:
        assert request(sock, "/echo").status == 200
    # The refused clients are counted, per listener, for the whole host.
    assert tls_counter(gw, "handshake_errors", port) >= 2
    assert tls_counter(gw, "handshakes", port) >= 2


def test_a_silent_client_is_dropped_after_the_header_timeout(backend: Backend, certs: dict[str, Any],
                                                            tmp_path: Path) -> None:
    """A connection that never starts its handshake holds no worker past `header_timeout`, and
    a draining worker does not wait for it beyond that either."""
    default = certs["default"]
    port = free_port()
    config = gateway_config(
        backend.port, workers=1, limits={"header_timeout": "1s"},
        listen=[{"address": f"{LOOPBACK}:{port}", "tls": {"cert": str(default.cert), "key": str(default.key)}}],
    )
    with Gateway(config, tmp_path) as gateway, socket.create_connection((LOOPBACK, port), timeout=10) as raw:
        started = time.monotonic()
        assert raw.recv(1) == b""
        assert 0.5 < time.monotonic() - started < 5
        assert gateway.alive()


def test_tls_to_upstreams(gw: Gateway) -> None:
    resp = request_plain(gw.port, "/secure/echo")
    assert resp.status == 200, resp.summary()
    body = resp.json()
    assert body["tls"] is True and body["sni"] == "upstream.test" and body["client_cn"] == "gateway-1"
    assert request_plain(gw.port, "/no_verify/echo").status == 200
    assert request_plain(gw.port, "/wrong_ca/echo").status == 502  # verification is on by default
    assert request_plain(gw.port, "/no_client_cert/echo").status == 502


def request_plain(port: int, path: str) -> Response:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(build_request("GET", path, [], host="localhost"))
        reader = ResponseReader()
        while (resp := reader.next_response()) is None:
            chunk = sock.recv(65536)
            if not chunk:
                reader.feed_eof()
                resp = reader.next_response()
                assert resp is not None
                return resp
            reader.feed(chunk)
        return resp


@pytest.mark.slow
def test_certificates_rotated_by_hup_under_load(backend: Backend, ca: trustme.CA, tmp_path: Path) -> None:
    """New TLS connections (a handshake per request) run while the certificate files are replaced
    and the gateway reloads: not one fails, and afterwards new connections get the new cert."""
    d = tmp_path / "rot"
    first = issue(ca, d, "first", "localhost")
    live = CertFiles(d / "live.pem", d / "live.key.pem")
    live.cert.write_bytes(first.cert.read_bytes())
    live.key.write_bytes(first.key.read_bytes())
    port = free_port()
    config = gateway_config(
        backend.port,
        listen=[{"address": f"{LOOPBACK}:{port}", "tls": {"cert": str(live.cert), "key": str(live.key)}}],
    )
    ctx = client_context(ca)
    (tmp_path / "gw").mkdir()
    with Gateway(config, tmp_path / "gw") as gw:
        load = start_load(port, "/echo", concurrency=8, duration_s=6.0, max_requests=10**6, keepalive=False, tls=ctx)
        with tls_connect(port, ctx) as sock:
            assert sock.getpeercert(binary_form=True) == der(first)
        second = issue(ca, d, "second", "localhost")
        for _ in range(2):
            live.key.write_bytes(second.key.read_bytes())
            live.cert.write_bytes(second.cert.read_bytes())
            gw.reload()
            with tls_connect(port, ctx) as sock:
                assert sock.getpeercert(binary_form=True) == der(second)
            second, first = first, second
        result = load.result(30)
    assert result.failed == 0, (result.failures[:5], gw.tail(30))
    assert result.ok > 100, result
    assert json.dumps(result.statuses) == json.dumps({200: result.ok})
