"""JSON Web Key Sets (RFC 7517) as the JWT filter uses them: parsed once per version of the
document into public keys, looked up by `kid` and checked against the token's algorithm.

What a key set never does (the classic JWT verification mistakes):
- `oct` (symmetric) keys in a JWKS are ignored: a public document must not hold HMAC secrets, and
  HS* algorithms take their secret from the config only (`secret`);
- a key is only ever used with an algorithm of its own type (RSA for RS*/PS*, the matching EC
  curve for ES*, Ed25519/Ed448 for EdDSA) and, when the key names an `alg`, that one only; so an
  RSA public key can never verify an HS256 token, whatever the token's header says;
- keys whose `use` is not `sig` or whose `key_ops` lack `verify` are ignored, as are RSA keys
  shorter than 2048 bits.

Parsing uses PyJWT's `PyJWK` (itself on `cryptography`); nothing here implements cryptography.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt import PyJWK
from jwt.exceptions import PyJWTError

__all__ = ["ASYMMETRIC", "HMAC", "MAX_JWKS", "JwksFile", "KeySet", "parse_jwks"]

MAX_JWKS = 256 * 1024
"""The largest JWKS document accepted (real ones are a few KiB)."""
MIN_RSA_BITS = 2048

# The key type each asymmetric algorithm needs: (cryptography public key class, EC curve name).
_RSA = (rsa.RSAPublicKey, None)
ASYMMETRIC: dict[str, tuple[Any, str | None]] = {
    "RS256": _RSA, "RS384": _RSA, "RS512": _RSA,
    "PS256": _RSA, "PS384": _RSA, "PS512": _RSA,
    "ES256": (ec.EllipticCurvePublicKey, "secp256r1"),
    "ES384": (ec.EllipticCurvePublicKey, "secp384r1"),
    "ES512": (ec.EllipticCurvePublicKey, "secp521r1"),
    "EdDSA": ((ed25519.Ed25519PublicKey, ed448.Ed448PublicKey), None),
}
HMAC = {"HS256": 32, "HS384": 48, "HS512": 64}
"""HMAC algorithms and the shortest secret each accepts, in bytes (RFC 7518 §3.2: at least the
hash's size)."""


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    alg: str | None      # the key's own `alg`, if it names one
    key: Any             # a cryptography public key

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        kind, curve = ASYMMETRIC[alg]
        if not isinstance(self.key, kind):
            return False
        return curve is None or self.key.curve.name == curve


class KeySet:
    """The usable verification keys of one JWKS document."""

    __slots__ = ("by_kid", "keys", "skipped")

    def __init__(self, keys: Iterable[_Key], skipped: int = 0) -> None:
        self.keys = tuple(keys)
        self.by_kid: dict[str, list[_Key]] = {}
        for key in self.keys:
            if key.kid is not None:
                self.by_kid.setdefault(key.kid, []).append(key)
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, kid: str | None, alg: str) -> list[Any] | None:
        """The public keys that may verify a token with this `kid` and `alg` (a token without a
        `kid` may be verified by any key of the right type); None when the set has no key with
        that `kid` at all (an unknown kid: the set may be out of date)."""
        if kid is None:
            return [k.key for k in self.keys if k.fits(alg)]
        found = self.by_kid.get(kid)
        if found is None:
            return None
        return [k.key for k in found if k.fits(alg)]


def parse_jwks(data: bytes | str) -> KeySet:
    """The key set of a JWKS document; ValueError says why a document is unusable (not JSON, no
    `keys` list, no usable signing key). Individual unusable keys are skipped (`skipped`)."""
    if len(data) > MAX_JWKS:
        raise ValueError(f"a JWKS document of {len(data)} bytes is over the {MAX_JWKS // 1024} KiB limit")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a JSON document: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('not a JWKS: expected a JSON object with a "keys" list')
    keys: list[_Key] = []
    skipped = 0
    for item in doc["keys"]:
        key = _parse_key(item)
        if key is None:
            skipped += 1
        else:
            keys.append(key)
    if not keys:
        raise ValueError(f"no usable signing key among {len(doc['keys'])} (RSA >= 2048 bits, EC, OKP; use: sig)")
    return KeySet(keys, skipped)


def _parse_key(item: Any) -> _Key | None:
    if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC", "OKP"):
        return None
    if item.get("use", "sig") != "sig":
        return None
    ops = item.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    alg = item.get("alg")
    if alg is not None and alg not in ASYMMETRIC:
        return None
    kid = item.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    if any(name in item for name in ("d", "p", "q", "dp", "dq", "qi")):
        # A private key published by mistake: refuse it rather than use its public half, so the
        # mistake is seen (the log names the skipped count) instead of going unnoticed.
        return None
    try:
        parsed = PyJWK(item, algorithm=alg) if alg else PyJWK(item)
    except (PyJWTError, ValueError, TypeError, KeyError):
        return None
    key = parsed.key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return None
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey,
                            ed448.Ed448PublicKey)):
        return None
    return _Key(kid, alg, key)


class JwksFile:
    """A JWKS file, re-read when it changes (its size, mtime or inode: an editor's rename or an
    in-place write both show). A change to an unusable document keeps the last good keys."""

    __slots__ = ("path", "keys", "_stamp", "error")

    def __init__(self, path: str, keys: KeySet | None = None) -> None:
        self.path = path
        self.keys = keys
        self._stamp: tuple[int, int, int] | None = None
        self.error: str | None = None
        self.check()

    def check(self) -> bool:
        """Re-reads the file if it changed; True when the keys changed."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror}"
            return False
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_JWKS + 1)
            keys = parse_jwks(data)
        except (OSError, ValueError) as exc:
            self.error = f"{self.path}: {exc.strerror if isinstance(exc, OSError) else exc}; keeping the last good keys"
            return False
        self.error = None
        self.keys = keys
        return True
