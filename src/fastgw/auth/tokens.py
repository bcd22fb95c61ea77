"""Where a request carries its credentials, and the refusals every auth answers with.

Refusals say as little as RFC 6750 lets them (§3): the error code, never why a token failed
(expired, bad signature, unknown key: those would help an attacker tune forgeries). The JSON body
carries the same generic message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from fastgw._proxy import Reply, RequestKey
from fastgw.config.model import TokenSource

__all__ = ["AMBIGUOUS", "Refusals", "TokenReader", "challenge", "header_safe", "valid_b64token"]

REALM = b'realm="fastgw"'
# RFC 6750 §2.1 b64token, which covers JWTs (base64url and dots) and common opaque tokens.
_B64TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
AMBIGUOUS = object()
"""What a reader returns for a request that carries its credentials twice (two Authorization
headers, two token headers): refused with 400, as an ambiguous request the gateway and the
backend could read differently."""


class TokenReader:
    """Reads a bearer token from the first source that has one (`from:` order). Returns the
    token bytes, None when no source has one, or AMBIGUOUS."""

    __slots__ = ("sources", "_first")

    def __init__(self, sources: Sequence[TokenSource]) -> None:
        self.sources = tuple(
            (kind, name.encode("latin-1"), RequestKey(kind, name) if kind in ("cookie", "query") else None)
            for kind, name in sources
        )

    def __call__(self, req: Any) -> Any:
        for kind, name, key in self.sources:
            if kind == "header":
                values = req.header_values(name)
                if not values:
                    continue
                if len(values) > 1:
                    return AMBIGUOUS
                value = values[0]
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    token = rest.strip()
                elif name == b"authorization":
                    continue          # another scheme (Basic, ...): not our credentials
                else:
                    token = value.strip()
            else:
                token = key.of(req)
                if token is None:
                    continue
                if kind == "query" and b"%" in token:
                    token = unquote_to_bytes(token)
            if token:
                return token
        return None


def valid_b64token(token: bytes) -> bool:
    return _B64TOKEN.fullmatch(token) is not None


_UNSAFE = re.compile(rb"[^\x20-\x7e]|%")


def header_safe(value: Any) -> bytes:
    """A claim value as a request header value: strings as UTF-8, numbers and booleans as JSON
    writes them, lists joined by commas, anything else as compact JSON; then every byte that is
    not visible ASCII or space (and `%`) percent-encoded, so that no claim can break a header."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = json.dumps(value)
    elif isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        text = ",".join(v if isinstance(v, str) else json.dumps(v) for v in value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raw = text.encode("utf-8")
    if _UNSAFE.search(raw):
        raw = _UNSAFE.sub(lambda m: b"%%%02X" % m.group(0)[0], raw)
    return raw.strip()


class Refusals:
    """The replies of one auth: built once, sent as they are (a Reply is immutable)."""

    __slots__ = ("missing", "invalid", "ambiguous", "unavailable", "scheme")

    def __init__(self, scheme: bytes = b"Bearer") -> None:
        self.scheme = scheme
        bearer = scheme == b"Bearer"
        self.missing = challenge(401, "authentication required", scheme)
        self.invalid = challenge(401, "invalid credentials", scheme, b"invalid_token" if bearer else None)
        self.ambiguous = challenge(400, "invalid request", scheme, b"invalid_request" if bearer else None)
        self.unavailable = Reply.error(503, "authentication unavailable", [(b"retry-after", b"1")])


def challenge(status: int, message: str, scheme: bytes, error: bytes | None = None, extra: bytes = b"") -> Reply:
    value = scheme + b" " + REALM
    if error is not None:
        value += b', error="' + error + b'"'
    return Reply.error(status, message, [(b"www-authenticate", value + extra)])
