"""A route's `require`: what an authenticated request must also have, else 403 (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastgw._proxy import Reply
from fastgw.config.model import Require

from .tokens import challenge

__all__ = ["compile_require", "scopes_of"]


def scopes_of(claims: dict[str, Any] | None) -> set[str]:
    """The scopes a token grants: the space-separated `scope` claim (RFC 8693 §4.2, RFC 7662),
    or a `scp` list as some issuers write it."""
    if not claims:
        return set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        return set(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return {s for s in scp if isinstance(s, str)}
    if isinstance(scp, str):
        return set(scp.split())
    return set()


def _claim_matches(value: Any, allowed: tuple[str, ...]) -> bool:
    if isinstance(value, list):
        return any(_claim_matches(v, allowed) for v in value)
    if isinstance(value, bool):
        return ("true" if value else "false") in allowed
    if isinstance(value, (str, int, float)):
        return str(value) in allowed
    return False


def compile_require(require: Require) -> Callable[[Any], Reply | None]:
    """`check(req) -> None | Reply`, run after the request was authenticated."""
    scopes = frozenset(require.scopes)
    claims = require.claims
    consumers = frozenset(require.consumers)
    wanted = b', scope="' + " ".join(require.scopes).encode() + b'"'
    scope_refusal = challenge(403, "insufficient scope", b"Bearer", b"insufficient_scope", wanted)
    forbidden = Reply.error(403, "forbidden")

    def check(req: Any) -> Reply | None:
        got = req.claims
        if scopes and not scopes <= scopes_of(got):
            return scope_refusal
        for name, allowed in claims:
            if got is None or not _claim_matches(got.get(name), allowed):
                return forbidden
        if consumers and req.identity not in consumers:
            return forbidden
        return None

    return check
