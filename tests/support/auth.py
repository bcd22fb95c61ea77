"""Helpers for auth and TLS tests: signing keys and tokens made here (PyJWT + cryptography), the
forgeries a JWT filter must refuse, the authorization server process (`authserver`), and TLS
certificates from trustme."""

from __future__ import annotations

import base64
import json
import os
import re
import selectors
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import jwt
import trustme
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.support.procs import PYTHON, REPO, ProcessError

ISSUER = "https://issuer.test"
CLIENT_ID_SECRET = ("gw", "gw-secret")
"""The client credentials `authserver` expects at its introspection endpoint."""
AUDIENCE = "api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A private key with its kid; `jwk` is the public JWK a JWKS publishes."""

    kid: str
    private: Any
    alg: str

    @classmethod
    def rsa(cls, kid: str, bits: int = 2048) -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=bits), "RS256")

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")

    @classmethod
    def ed25519(cls, kid: str) -> SigningKey:
        return cls(kid, ed25519.Ed25519PrivateKey.generate(), "EdDSA")

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            doc = json.loads(RSAAlgorithm.to_jwk(public))
        elif isinstance(public, ec.EllipticCurvePublicKey):
            doc = json.loads(ECAlgorithm.to_jwk(public))
        else:
            doc = json.loads(OKPAlgorithm.to_jwk(public))
        doc["kid"] = self.kid
        doc["use"] = "sig"
        return doc

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, claims: dict[str, Any] | None = None, *, alg: str | None = None, kid: Any = "same",
              **over: Any) -> str:
        headers = {} if kid is None else {"kid": self.kid if kid == "same" else kid}
        return jwt.encode(make_claims(claims, **over), self.private, algorithm=alg or self.alg, headers=headers)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk for k in keys]}


def make_claims(claims: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    """Valid claims for ISSUER/AUDIENCE, expiring in an hour; `over` replaces (None removes)."""
    now = int(time.time())
    out: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600,
                           "jti": os.urandom(6).hex()}
    out.update(claims or {})
    out.update(over)
    return {k: v for k, v in out.items() if v is not None}


def hs_token(secret: bytes, claims: dict[str, Any], header: dict[str, Any]) -> str:
    """An HS256 token signed by hand with `secret` (PyJWT refuses PEM-looking secrets, which is
    exactly the forgery to make: a token 'signed' with a public key)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(f"{head}.{body}".encode())
    return f"{head}.{body}.{b64(mac.finalize())}"


def unsigned(claims: dict[str, Any], alg: str, kid: str | None = None) -> str:
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


def tampered(token: str, **changes: Any) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


# ---- the authorization server process -------------------------------------------------------------


class AuthServer:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], scheme: str = "http") -> None:
        self.port = port
        self.proc = proc
        self.scheme = scheme

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _open(self, req: urllib.request.Request | str) -> Any:
        """A control call, over the server's own scheme (its certificate is not what is tested)."""
        context = ssl._create_unverified_context() if self.scheme == "https" else None
        return urllib.request.urlopen(req, timeout=5, context=context)

    def _put(self, path: str, body: bytes) -> None:
        req = urllib.request.Request(f"{self.url}{path}", data=body, method="PUT")
        with self._open(req) as resp:
            resp.read()

    def set_jwks(self, doc: dict[str, Any]) -> None:
        self._put("/control/jwks", json.dumps(doc).encode())

    def set_tokens(self, tokens: dict[str, Any]) -> None:
        self._put("/control/tokens", json.dumps(tokens).encode())

    def mode(self, *, down: bool = False, delay_ms: int = 0) -> None:
        self._put("/control/mode", json.dumps({"down": down, "delay_ms": delay_ms}).encode())

    def stats(self) -> dict[str, Any]:
        with self._open(f"{self.url}/stats") as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]


def start_authserver(*args: str, timeout: float = 10.0, scheme: str = "http") -> AuthServer:
    proc = subprocess.Popen(
        [PYTHON, "-m", "tests.support.authserver", "--port", "0", *args],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True,
    )
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in out:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                proc.kill()
                raise ProcessError(f"authserver printed no PORT line within {timeout}s")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise ProcessError(f"authserver exited with {proc.wait()} before listening")
            out += chunk
    m = re.fullmatch(r"PORT (\d+)", out.split(b"\n", 1)[0].decode())
    if m is None:
        proc.kill()
        raise ProcessError(f"authserver printed {out!r}")
    return AuthServer(int(m.group(1)), proc, scheme)


# ---- TLS ---------------------------------------------------------------------------------------------


@dataclass
class CertFiles:
    cert: Path
    key: Path


def issue(
    ca: trustme.CA, directory: Path, name: str, *hosts: str, common_name: str | None = None, rsa: bool = False
) -> CertFiles:
    """A leaf certificate for `hosts` signed by `ca` (ECDSA, or RSA with `rsa`), written as
    NAME.pem / NAME.key.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    key_type = trustme.KeyType.RSA if rsa else trustme.KeyType.ECDSA
    leaf = ca.issue_cert(*hosts, common_name=common_name, key_type=key_type)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return CertFiles(cert, key)


def client_context(ca: trustme.CA | None = None, **kwargs: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(ctx)
    for name, value in kwargs.items():
        setattr(ctx, name, value)
    return ctx
