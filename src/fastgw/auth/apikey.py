"""API keys (`type: api_key`) and client certificates (`type: mtls`): authenticators that name a
consumer.

API keys are kept only as SHA-256 digests (the config may list the digests themselves,
`sha256:HEX`, so that the keys file holds no secret). A presented key is hashed, the digest looked
up, and the stored digest compared with `hmac.compare_digest`: the lookup can reveal at most
something about a digest, and SHA-256's preimage resistance keeps that from saying anything about
a key. The consumer name goes to the upstream in `consumer_header` (removed from every client
request on every route) and is the request's identity (`key: consumer` rate limits).
"""

from __future__ import annotations

import hashlib
import hmac
import weakref
from typing import Any

from fastgw._proxy import Reply
from fastgw._tls import TlsConnection
from fastgw.config.model import ApiKeyAuth, MtlsAuth

from .tokens import AMBIGUOUS, Refusals, TokenReader

__all__ = ["ApiKeyAuthenticator", "MtlsAuthenticator", "hash_key"]


try:  # CPython's own SHA-256 skips OpenSSL's per-call set-up: a third cheaper for a short key
    from _sha2 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python before 3.12
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:
        sha256 = hashlib.sha256


def hash_key(key: bytes) -> bytes:
    return sha256(key).digest()  # type: ignore[no-any-return]


class ApiKeyAuthenticator:
    __slots__ = ("spec", "name", "read", "keys", "refusals", "header", "lname")

    def __init__(self, spec: ApiKeyAuth) -> None:
        self.spec = spec
        self.name = spec.name
        source = ("header", spec.header) if spec.header is not None else ("query", spec.query or "api_key")
        self.read = TokenReader([source])  # type: ignore[list-item]
        # digest -> (the stored digest, consumer, consumer as header bytes)
        self.header = spec.consumer_header.encode("latin-1")
        # digest -> (the stored digest, consumer, the rendered consumer header line)
        self.keys = {
            d: (d, consumer, self.header + b": " + consumer.encode() + b"\r\n") for d, consumer in spec.keys.items()
        }
        self.refusals = Refusals(b"ApiKey")
        self.lname = spec.header.encode("latin-1") if spec.header is not None else None

    def authenticate(self, req: Any) -> Reply | None:
        if self.lname is not None:
            values = req.header_values(self.lname)
            if len(values) != 1:
                return self.refusals.ambiguous if values else self.refusals.missing
            key = values[0].strip()
            if key[:7].lower() == b"bearer ":
                key = key[7:].strip()
        else:
            key = self.read(req)
            if key is AMBIGUOUS:
                return self.refusals.ambiguous
        if not key:
            return self.refusals.missing
        digest = sha256(key).digest()
        entry = self.keys.get(digest)
        if entry is None or not hmac.compare_digest(entry[0], digest):
            return self.refusals.invalid
        req.identity = entry[1]
        req.add_upstream_lines(entry[2])
        return None


class MtlsAuthenticator:
    """The consumer of a connection whose client certificate the listener verified: its
    subject's common name or whole subject, read once per connection."""

    __slots__ = ("spec", "name", "refusals", "header", "_seen", "_use_cn")

    def __init__(self, spec: MtlsAuth) -> None:
        self.spec = spec
        self.name = spec.name
        self.refusals = Refusals(b"Mutual")
        self.header = spec.consumer_header.encode("latin-1")
        self._use_cn = spec.consumer == "cn"
        self._seen: weakref.WeakKeyDictionary[TlsConnection, str | None] = weakref.WeakKeyDictionary()

    def authenticate(self, req: Any) -> Reply | None:
        ex = req.ex
        transport = ex.transport if ex is not None else None
        if not isinstance(transport, TlsConnection):
            return self.refusals.missing  # not a TLS listener: no client certificate
        try:
            consumer = self._seen[transport]
        except KeyError:
            consumer = self._seen[transport] = self._consumer(transport.get_extra_info("peercert"))
        if consumer is None:
            return self.refusals.missing
        req.identity = consumer
        req.set_upstream_header(self.header, consumer.encode("utf-8"))  # once per request: rare enough
        return None

    def _consumer(self, der: bytes | None) -> str | None:
        """The subject of the client certificate (DER) the TLS layer verified against
        `client_ca` (None without one)."""
        if der is None:
            return None
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        subject = x509.load_der_x509_certificate(der).subject
        if self._use_cn:
            names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            value = names[0].value if names else None
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        else:
            text = subject.rfc4514_string()
        if not text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            return None
        return text
