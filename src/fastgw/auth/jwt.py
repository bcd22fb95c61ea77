"""The JWT authenticator of one `auth` entry in one worker (DESIGN §8, docs/security.md).

Per request (`authenticate`), in this order:
1. the token is read from the configured sources (two Authorization headers: 400);
2. **the verified-token cache**: a token verified before, and not expired, is accepted with the
   claims and forwarded headers computed then. This is the hot path: one header lookup, one dict
   lookup and one clock read, no base64, JSON or signature work. The cache is per worker, keyed by
   the token itself (a dict compares the whole token on a hash match, so no two tokens can ever
   share an entry), bounded by `cache_size` (the oldest entry goes first), and emptied when the
   auth's keys change (a key withdrawn from the JWKS stops accepting its tokens at once);
3. on a miss, full verification by PyJWT: size bound, header parsed, `alg` in the auth's own
   allow-list (compared exactly, so no spelling of `none` passes), a key of the right type for
   that `alg` chosen by `kid` (see `jwks.py`), then signature, `exp` (required unless
   `require_exp: false`), `nbf`, `iat`, `iss` and `aud` with `leeway`.
   An unknown `kid` with a JWKS file re-reads the file if it changed; with a JWKS URL it asks the
   host's agent for a refetch (at most once per 30 s per host) and waits for it without blocking
   other requests. No keys at all yet (an agent that never reached the URL): 503.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from typing import Any

import jwt as pyjwt
from jwt.exceptions import InvalidSignatureError, PyJWTError

from fastgw._proxy import Reply
from fastgw.config.model import BEARER, JwtAuth

from .jwks import HMAC, KeySet, parse_jwks
from .shared import JwksSlot
from .tokens import AMBIGUOUS, Refusals, TokenReader, header_safe

__all__ = ["JwtAuthenticator", "SharedJwks", "REFETCH_INTERVAL"]

REFETCH_INTERVAL = float(os.environ.get("FASTGW_JWKS_REFETCH_INTERVAL", "30"))
"""Seconds between two fetches of a JWKS URL asked for by an unknown kid, per host (DESIGN §8).
The environment variable exists for the end-to-end tests, which cannot wait 30 s."""
NO_EXP_TTL = 300.0
"""How long a token without `exp` (`require_exp: false`) stays in the cache."""
MAX_CANDIDATES = 4
"""Keys tried for one token without a kid: bounds the signature checks a forged token costs."""
POLL = 0.02
_now = time.time


class SharedJwks:
    """A worker's view of one JWKS URL fetched by the host's agent (`shared.JwksSlot`)."""

    __slots__ = ("slot", "seq", "keys", "error", "_wait")

    def __init__(self, slot: JwksSlot) -> None:
        self.slot = slot
        self.seq = -1
        self.keys: KeySet | None = None
        self.error: str | None = None
        self._wait: asyncio.Future[None] | None = None
        self.check()

    def check(self) -> bool:
        """Takes a newer document if the agent wrote one; True when the keys changed."""
        if self.slot.seq == self.seq:
            return False
        seq, data = self.slot.read()
        self.seq = seq
        if data is None:
            return False
        try:
            keys = parse_jwks(data)
        except ValueError as exc:
            self.error = str(exc)
            return False
        self.keys = keys
        return True

    def may_refetch(self) -> bool:
        """Whether a refetch may be asked for now: none ran in the last REFETCH_INTERVAL (the
        agent applies the same rule, this only spares a pointless wait)."""
        slot = self.slot
        if slot.attempts == 0:
            return True          # the first fetch is still under way: wait for it
        return time.monotonic() - slot.last_attempt >= REFETCH_INTERVAL

    def refetch(self, timeout: float) -> Awaitable[None]:
        """Asks the agent for a fetch and waits for its outcome (at most `timeout`); concurrent
        callers in this worker share one wait."""
        if self._wait is None or self._wait.done():
            loop = asyncio.get_running_loop()
            self._wait = loop.create_future()
            if self.slot.attempts > 0:
                self.slot.request_refresh()
            loop.create_task(self._poll(self._wait, self.slot.attempts, loop.time() + timeout))
        return asyncio.shield(self._wait)

    async def _poll(self, done: asyncio.Future[None], attempts: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.slot.attempts == attempts and loop.time() < deadline:
                await asyncio.sleep(POLL)
            self.check()
        finally:
            if not done.done():
                done.set_result(None)


class _Static:
    """A key source that never changes (an HS* secret)."""

    __slots__ = ("keys", "error")

    def __init__(self) -> None:
        self.keys = None
        self.error = None

    def check(self) -> bool:
        return False


class JwtAuthenticator:
    """`authenticate(req)` returns None (authenticated: `req.claims`, `req.identity` and the
    forwarded headers set), a refusal Reply, or an awaitable of either (a refetch of keys)."""

    __slots__ = (
        "spec", "name", "read", "refusals", "cache", "cache_size", "source", "secret", "algorithms",
        "options", "audience", "issuer", "leeway", "forward", "consumer_claim", "max_token", "timeout",
        "bearer",
    )

    def __init__(self, spec: JwtAuth, source: Any) -> None:
        self.spec = spec
        self.name = spec.name
        self.read = TokenReader(spec.sources)
        self.refusals = Refusals()
        self.cache: dict[bytes, tuple[float, dict[str, Any], Any, bytes]] = {}
        """token -> (valid until, claims, identity, the forwarded header lines)"""
        self.cache_size = spec.cache_size
        self.source = source if source is not None else _Static()
        self.secret = spec.secret
        self.algorithms = frozenset(spec.algorithms)
        self.audience = list(spec.audience) if spec.audience else None
        self.issuer = list(spec.issuer) if spec.issuer else None
        self.leeway = spec.leeway
        self.options = {
            "require": ["exp"] if spec.require_exp else [],
            "verify_aud": bool(spec.audience),
            "verify_iss": bool(spec.issuer),
        }
        self.forward = tuple((claim, header.encode("latin-1")) for claim, header in spec.forward_claims)
        self.consumer_claim = spec.consumer_claim
        self.max_token = spec.max_token
        self.timeout = spec.jwks_timeout + 1.0
        self.bearer = spec.sources == BEARER

    def keys_changed(self) -> None:
        """The key set changed: tokens verified with the old one must be verified again."""
        self.cache.clear()

    # -- per request ---------------------------------------------------------------------------

    def authenticate(self, req: Any) -> Reply | None | Awaitable[Reply | None]:
        # The hot path, for the default location: one `Authorization: Bearer` header whose token
        # this worker verified before. Anything else goes the general way (`_read`).
        if self.bearer:
            values = req.header_values(b"authorization")
            if len(values) == 1 and values[0][:7] == b"Bearer ":
                entry = self.cache.get(values[0][7:])
                if entry is not None and entry[0] > _now():
                    req.claims = entry[1]
                    req.identity = entry[2]
                    if entry[3]:
                        req.add_upstream_lines(entry[3])
                    return None
        return self._read(req)

    def _read(self, req: Any) -> Reply | None | Awaitable[Reply | None]:
        token = self.read(req)
        if token is None:
            return self.refusals.missing
        if token is AMBIGUOUS:
            return self.refusals.ambiguous
        entry = self.cache.get(token)
        if entry is not None:
            if entry[0] > _now():
                req.claims = entry[1]
                req.identity = entry[2]
                if entry[3]:
                    req.add_upstream_lines(entry[3])
                return None
            del self.cache[token]
        return self.verify(req, token, True)

    def verify(self, req: Any, token: bytes, may_wait: bool) -> Reply | None | Awaitable[Reply | None]:
        if len(token) > self.max_token:
            return self.refusals.invalid
        try:
            header = pyjwt.get_unverified_header(token)
        except PyJWTError:
            return self.refusals.invalid
        alg = header.get("alg")
        kid = header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms or (kid is not None and not isinstance(kid, str)):
            return self.refusals.invalid
        if alg in HMAC:
            candidates: list[Any] | None = [self.secret]
        else:
            keys = self.source.keys
            candidates = keys.candidates(kid, alg) if keys is not None else None
            if candidates is None:
                return self._unknown_key(req, token, may_wait, keys is None)
        return self._check(req, token, alg, candidates)

    def _unknown_key(self, req: Any, token: bytes, may_wait: bool, no_keys: bool) -> Any:
        source = self.source
        if may_wait and source.check():
            # A newer document than the periodic check has seen (a file that changed, a slot the
            # agent wrote meanwhile): verify with it.
            self.keys_changed()
            return self.verify(req, token, False)
        if may_wait and isinstance(source, SharedJwks) and source.may_refetch():
            return self._after_refetch(req, token)
        return self.refusals.unavailable if no_keys else self.refusals.invalid

    async def _after_refetch(self, req: Any, token: bytes) -> Reply | None:
        await self.source.refetch(self.timeout)
        result = self.verify(req, token, False)
        return result  # type: ignore[return-value]

    def _check(self, req: Any, token: bytes, alg: str, candidates: list[Any]) -> Reply | None:
        claims = None
        for key in candidates[:MAX_CANDIDATES]:
            try:
                claims = pyjwt.decode(
                    token, key, algorithms=[alg], options=self.options,  # type: ignore[arg-type]
                    audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                )
                break
            except InvalidSignatureError:
                continue
            except (PyJWTError, ValueError, TypeError):
                return self.refusals.invalid
        if claims is None:
            return self.refusals.invalid
        identity = claims.get(self.consumer_claim)
        if identity is not None and not isinstance(identity, str):
            identity = str(identity) if isinstance(identity, int) and not isinstance(identity, bool) else None
        lines = b"".join(
            name + b": " + header_safe(claims[claim]) + b"\r\n"
            for claim, name in self.forward if claims.get(claim) is not None
        )
        exp = claims.get("exp")
        until = float(exp) + self.leeway if isinstance(exp, (int, float)) else time.time() + NO_EXP_TTL
        if self.cache_size:
            cache = self.cache
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
            cache[token] = (until, claims, identity, lines)
        req.claims = claims
        req.identity = identity
        if lines:
            req.add_upstream_lines(lines)
        return None
