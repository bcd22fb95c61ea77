"""The pieces of auth that decide without I/O (issue 10): where a token is read, what a forwarded
claim may become in a header, a route's `require`, and the compiled filters against their Python
twins on requests built without a connection."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastgw._proxy import ApiKeyFilter, Reply, Request, TokenCacheFilter
from fastgw.auth.apikey import ApiKeyAuthenticator, sha256
from fastgw.auth.require import compile_require, scopes_of
from fastgw.auth.tokens import AMBIGUOUS, TokenReader, header_safe
from fastgw.config.model import ApiKeyAuth, Require

KEY = b"bench-key-0123456789abcdef"


def build(*headers: tuple[bytes, bytes], query: bytes = b"") -> Request:
    return Request.build(list(headers), query=query)


def test_token_locations() -> None:
    bearer = TokenReader([("header", "authorization")])
    assert bearer(build((b"Authorization", b"Bearer abc"))) == b"abc"
    assert bearer(build((b"authorization", b"bEaReR   abc  "))) == b"abc"
    assert bearer(build((b"Authorization", b"Basic dXNlcg=="))) is None
    assert bearer(build((b"Authorization", b"Bearer a"), (b"Authorization", b"Bearer b"))) is AMBIGUOUS
    assert bearer(build()) is None
    several = TokenReader([("cookie", "session"), ("query", "access_token"), ("header", "x-token")])
    assert several(build((b"Cookie", b"a=1; session=tok1"))) == b"tok1"
    assert several(build(query=b"?x=1&access_token=a%2Bb")) == b"a+b"
    assert several(build((b"X-Token", b"Bearer tok3"))) == b"tok3"
    assert several(build((b"X-Token", b"tok3"), (b"x-token", b"tok4"))) is AMBIGUOUS


@given(st.one_of(st.text(), st.integers(), st.booleans(), st.lists(st.text()), st.dictionaries(st.text(), st.text())))
def test_a_forwarded_claim_can_never_break_a_header(value: object) -> None:
    rendered = header_safe(value)
    assert all(0x20 <= b <= 0x7E for b in rendered), rendered


def test_forwarded_claim_rendering() -> None:
    assert header_safe("alice") == b"alice"
    assert header_safe("a\r\nX-Admin: 1") == b"a%0D%0AX-Admin: 1"
    assert header_safe("Zoë") == b"Zo%C3%AB"
    assert header_safe(["admin", "ops"]) == b"admin,ops"
    assert header_safe(True) == b"true" and header_safe(42) == b"42"
    assert header_safe({"a": 1}) == b'{"a":1}'


def test_require() -> None:
    req = build()
    req.claims = {"scope": "orders:read profile", "tier": "gold", "roles": ["a", "b"], "admin": True}
    req.identity = "alice"
    assert compile_require(Require(scopes=("orders:read",)))(req) is None
    refusal = compile_require(Require(scopes=("orders:write",)))(req)
    assert isinstance(refusal, Reply) and refusal.status == 403
    assert (b"www-authenticate", b'Bearer realm="fastgw", error="insufficient_scope", scope="orders:write"') in \
        refusal.headers
    assert compile_require(Require(claims=(("roles", ("b",)), ("admin", ("true",)))))(req) is None
    assert compile_require(Require(claims=(("tier", ("silver",)),)))(req) is not None
    assert compile_require(Require(consumers=("bob",)))(req) is not None
    assert scopes_of({"scp": ["x", "y"]}) == {"x", "y"}


def test_compiled_token_cache_hits_and_hands_the_rest_over() -> None:
    cache: dict[bytes, tuple[float, object, object, bytes]] = {
        b"good": (time.time() + 60, {"sub": "a"}, "a", b"x-user-id: a\r\n"),
        b"old": (time.time() - 1, {"sub": "b"}, "b", b""),
    }
    handed: list[bytes | None] = []

    def slow(req: Request) -> Reply | None:
        handed.append(req.header(b"authorization"))
        return Reply.error(401, "invalid credentials")

    f = TokenCacheFilter(cache, slow)
    req = build((b"Authorization", b"Bearer good"))
    assert f.run_request(req) is None and req.identity == "a" and req.claims == {"sub": "a"}
    assert f.hits == 1
    for headers in ([(b"Authorization", b"Bearer old")], [(b"Authorization", b"bearer good")],
                    [(b"Authorization", b"Bearer good"), (b"Authorization", b"Bearer good")], []):
        reply = f.run_request(build(*headers))
        assert isinstance(reply, Reply) and reply.status == 401
    assert f.hits == 1 and len(handed) == 4
    checked = TokenCacheFilter(cache, slow, lambda req: Reply.error(403, "forbidden"))
    reply = checked.run_request(build((b"Authorization", b"Bearer good")))
    assert isinstance(reply, Reply) and reply.status == 403


@pytest.mark.parametrize(
    ("headers", "status", "consumer"),
    [
        ([(b"X-API-Key", KEY)], None, "bench"),
        ([(b"x-api-key", b"  " + KEY + b" ")], None, "bench"),
        ([(b"X-API-Key", b"Bearer " + KEY)], None, "bench"),
        ([(b"X-API-Key", KEY[:-1] + b"X")], 401, None),
        ([(b"X-API-Key", b"")], 401, None),
        ([], 401, None),
        ([(b"X-API-Key", KEY), (b"X-API-Key", KEY)], 400, None),
    ],
)
def test_compiled_api_key_filter_agrees_with_the_python_one(
    headers: list[tuple[bytes, bytes]], status: int | None, consumer: str | None
) -> None:
    spec = ApiKeyAuth(name="k", keys={hashlib.sha256(KEY).digest(): "bench"})
    python = ApiKeyAuthenticator(spec)
    r = python.refusals
    compiled = ApiKeyFilter(b"x-api-key", sha256, hmac.compare_digest, python.keys, r.missing, r.invalid, r.ambiguous)
    for run in (python.authenticate, compiled.run_request):
        req = build(*headers)
        reply = run(req)
        assert (reply.status if reply is not None else None) == status, run
        assert req.identity == consumer
