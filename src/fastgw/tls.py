"""TLS contexts: termination on `listen` entries, and TLS to upstream targets (DESIGN §8).

**Listeners.** Terminated by the compiled `fastgw._tls` on OpenSSL directly (its docstring says
why not through the `ssl` module). The master builds each TLS listener's context once per
generation, before forking its workers, and the workers inherit it: every worker of a generation then shares one
set of session-ticket keys (OpenSSL makes them when the context is created), so a client that
resumes its session on another worker's connection (SO_REUSEPORT spreads connections over the
workers) still resumes. A reload builds new contexts from the files as they are then: that is how
certificates are re-read on `HUP`, and since the old workers keep their contexts until they have
drained, no handshake in flight fails.

What each listener context does: TLS 1.2 minimum (`min_version`), the Mozilla "intermediate"
TLS 1.2 ciphers by default (TLS 1.3 suites are OpenSSL's, all AEAD), no compression, no
renegotiation, ALPN `http/1.1` only, session tickets and the server session cache on. Several
certificates: one OpenSSL context each, and an SNI callback on the first (the default for a
missing or unknown name) that switches a connection to the context whose names match (exact,
then one `*.` label). With `client_ca`, client certificates are verified against it (`client_cert:
required` refuses a handshake without one; `optional` lets the auth decide).

**Upstreams.** One client context per upstream with `tls`, built by each worker: verification on
by default (the system's CAs, or `ca`), hostname checked against `sni`, TLS 1.2 minimum, an
optional client certificate.

Nothing here implements cryptography: OpenSSL does the protocol (through `fastgw._tls` for
listeners, the stdlib `ssl` module for upstreams) and `cryptography` reads certificate names.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl

from fastgw._tls import ServerContext
from fastgw.config.model import Address, Config, ListenerTls, UpstreamTls
from fastgw.metrics import declare

__all__ = [
    "TLS_STATS",
    "certificate_names",
    "check_cert_key",
    "listener_contexts",
    "server_context",
    "upstream_context",
    "upstream_server_hostname",
]



def tls_listeners(config: Config) -> list[str]:
    """The addresses of the TLS listeners, in `listen` order: the `listener` label of TLS_STATS."""
    return [str(listener.address) for listener in config.listen if listener.tls is not None]


TLS_STATS = declare("tls", {
    "handshakes": "TLS handshakes clients completed.",
    "resumed": "Handshakes that resumed a session (no certificate sent, nothing signed).",
    "handshake_errors": "Handshakes that failed: not TLS, no common version or cipher, a client certificate "
                        "refused.",
    "handshake_timeouts": "Clients that did not complete their handshake within limits.header_timeout.",
}, per=("listener", tls_listeners))
"""Counted by each listener's `fastgw._tls.TlsListener` (its worker passes the block)."""


def certificate_names(cert_path: str) -> tuple[str, ...]:
    """The DNS names of the first certificate in a PEM file (subjectAltName, else the subject's
    common name), lower-case."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID

    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificates(f.read())[0]
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(names)


def check_cert_key(cert: str, key: str) -> tuple[str, ...]:
    """Loads a certificate chain and its key as a listener would; returns the certificate's
    names. ValueError says what is wrong in words (OpenSSL's own messages are cryptic)."""
    from cryptography import x509

    try:
        with open(cert, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read {cert}: {exc.strerror}") from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{cert} holds no PEM certificate") from None
    try:
        with open(key, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {key}: {exc.strerror}") from None
    ServerContext([(cert, key, ())])
    return certificate_names(cert)


def server_context(tls: ListenerTls) -> ServerContext:
    """The context of one TLS listener (see the module docstring). ValueError when a file is
    unusable."""
    return ServerContext(
        [(item.cert, item.key, item.names or certificate_names(item.cert)) for item in tls.certificates],
        tls.min_version, tls.ciphers, tls.client_ca, tls.client_cert,
    )


def listener_contexts(config: Config) -> dict[Address, ServerContext]:
    """The server context of every TLS listener, by address (built once per generation)."""
    return {listener.address: server_context(listener.tls) for listener in config.listen if listener.tls is not None}


@functools.lru_cache(maxsize=64)
def upstream_context(tls: UpstreamTls) -> ssl.SSLContext:
    """One context per distinct upstream `tls` in a worker (its targets share it, and with it
    their TLS session cache)."""
    ctx = ssl.create_default_context(cafile=tls.ca) if tls.ca else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.client_cert is not None:
        ctx.load_cert_chain(tls.client_cert.cert, tls.client_cert.key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def upstream_server_hostname(tls: UpstreamTls, host_header: str | None, target_host: str) -> str:
    """The name sent in SNI and checked in the target's certificate: `tls.sni`, else the host of
    `host_header`, else the target's host (an IP address is then checked against the
    certificate's IP addresses, and no SNI is sent)."""
    if tls.sni:
        return tls.sni
    if host_header:
        host = host_header
        if host.startswith("["):
            return host[1:].partition("]")[0]
        return host.rpartition(":")[0] if host.count(":") == 1 else host
    return target_host


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False

