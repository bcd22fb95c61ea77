"""Aggregation routes end to end: a real gateway (2 workers) whose aggregation calls go to the real
test backend through the internal client. Claims come from HS256 tokens made here and verified by
the route's jwt auth, as in production.

Each test states what a client of the route relies on: the merged shape, templates filled from
path params, query, headers and claims (encoded so they cannot change the path or add query
parameters), field selection, the two-stage dependency, optional calls as null plus `errors`, a
required call's failure as a clear error naming the call and never a target address, per-call
timeouts, non-JSON and oversized answers, retries through the upstream's policy."""
from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.support.client import Response, http_get
from tests.support.procs import Backend, Gateway, free_port

pytestmark = pytest.mark.e2e

CLAIMS = {"sub": "al/ice", "org": {"id": 7}}
SECRET = "an-hs256-secret-of-32-bytes-or-more!"


def routes() -> list[dict[str, Any]]:
    return [
        {
            "match": {"path": "/dash/{id}"},
            "auth": "main",
            "aggregate": {
                "profile": {
                    "upstream": "users",
                    "path": "/json/users/{claim.sub}?id={id}&page={query.page}&team_id=t-{claim.org.id}",
                    "headers": {"X-Lang": "{header.accept-language}"},
                },
                "items": {"upstream": "users", "path": "/json-list/3", "keep": ["id", "name"]},
                "shaped": {
                    "upstream": "users",
                    "path": "/json/shape?a=1&b=2&c=3",
                    "keep": ["a", "b", "headers.x-request-id"],
                    "drop": ["b"],
                    "rename": {"a": "alpha"},
                },
            },
        },
        {
            "match": {"path": "/two-stage"},
            "auth": "main",
            "aggregate": {
                "profile": {"upstream": "users", "path": "/json/users/{claim.sub}?team_id=t-42&delay=1"},
                "team": {"upstream": "users", "path": "/json/teams/{profile.team_id}?of={profile.path}"},
                "other": {"upstream": "users", "path": "/json/other"},
            },
        },
        {
            "match": {"path": "/optional-fails"},
            "aggregate": {
                "ok": {"upstream": "users", "path": "/json/ok"},
                "missing": {"upstream": "users", "path": "/status/404", "optional": True},
                "text": {"upstream": "users", "path": "/headers", "optional": True},
                "big": {"upstream": "users", "path": "/bytes/4096", "optional": True, "max_body": "1KiB"},
                "big_chunked": {"upstream": "users", "path": "/chunked/4096/4", "optional": True, "max_body": "1KiB"},
                "slow": {"upstream": "users", "path": "/sleep/3000", "optional": True, "timeout": "300ms"},
                "dead": {"upstream": "dead", "path": "/json/x", "optional": True},
            },
        },
        {
            "match": {"path": "/required-fails/{what}"},
            "aggregate": {
                "fast": {"upstream": "users", "path": "/json/fast"},
                "slow": {"upstream": "users", "path": "/sleep/3000"},
                "profile": {"upstream": "users", "path": "/status/{what}"},
            },
        },
        {
            "match": {"path": "/required-times-out"},
            "aggregate": {"slow": {"upstream": "users", "path": "/sleep/3000", "timeout": "300ms"}},
        },
        {
            "match": {"path": "/required-dead"},
            "aggregate": {"profile": {"upstream": "dead", "path": "/json/x"}},
        },
        {
            "match": {"path": "/dependency-failed"},
            "aggregate": {
                "profile": {"upstream": "users", "path": "/status/404", "optional": True},
                "team": {"upstream": "users", "path": "/json/teams/{profile.team_id}", "optional": True},
            },
        },
        {
            "match": {"path": "/failover"},
            "aggregate": {
                "a": {"upstream": "half_dead", "path": "/json/a"},
                "b": {"upstream": "half_dead", "path": "/json/b"},
            },
        },
        {
            "match": {"path": "/compressed"},
            "aggregate": {"items": {"upstream": "users", "path": "/json-list/50"}},
            "compress": {"min_size": "100B", "encodings": ["gzip"]},
        },
    ]


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    dead = f"127.0.0.1:{free_port()}"
    live = f"127.0.0.1:{backend.port}"
    timeouts = {"connect": "1s", "read": "5s"}
    config = {
        "workers": 2,
        "grace_period": "2s",
        "upstreams": {
            "users": {"targets": [live], "timeouts": timeouts},
            "dead": {"targets": [dead], "timeouts": timeouts},
            "half_dead": {"targets": [dead, live], "balance": "round_robin", "timeouts": timeouts},
        },
        "auth": {"main": {"type": "jwt", "algorithms": ["HS256"], "secret": SECRET}},
        "routes": routes(),
        "access_log": {"path": False},
    }
    workdir: Path = tmp_path_factory.mktemp("aggregate")
    with Gateway(config, workdir) as g:  # __enter__ starts it
        yield g


def get(gw: Gateway, path: str, headers: dict[str, str] | None = None, claims: Any = CLAIMS) -> Response:
    h = dict(headers or {})
    if claims is not None:
        h["Authorization"] = "Bearer " + jwt.encode({**claims, "exp": int(time.time()) + 300}, SECRET, "HS256")
    return http_get(gw.port, path, h, timeout=10)


def test_calls_are_merged_by_name_with_templates_filled_and_fields_selected(gw: Gateway) -> None:
    r = get(gw, "/dash/a%20b?page=2&x=1", {"Accept-Language": "fr", "X-Request-ID": "agg-test-1"})
    assert r.status == 200, r.summary()
    assert r.header("content-type") == "application/json"
    assert r.header("cache-control") == "private"  # answers depend on claims and headers
    body = r.json()
    assert list(body) == ["profile", "items", "shaped"]
    profile = body["profile"]
    assert profile["path"] == "/json/users/al%2Fice"  # a claim stays one path segment
    assert profile["id"] == "a b" and profile["page"] == "2" and profile["team_id"] == "t-7"
    assert "x" not in profile
    sent = profile["headers"]
    assert sent["x-lang"] == "fr"
    assert sent["x-request-id"] == "agg-test-1" == r.header("x-request-id")
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["accept"] == "application/json"
    assert "authorization" not in sent  # calls carry what the config says, not the client's headers
    assert body["items"] == [{"id": i, "name": f"item-{i}"} for i in range(3)]
    assert body["shaped"] == {"alpha": "1", "headers": {"x-request-id": "agg-test-1"}}


def test_query_values_cannot_add_parameters(gw: Gateway) -> None:
    r = get(gw, "/dash/x%26evil%3D1?page=1%26team_id%3Devil")
    assert r.status == 200, r.summary()
    profile = r.json()["profile"]
    assert profile["id"] == "x&evil=1" and profile["page"] == "1&team_id=evil"
    assert profile["team_id"] == "t-7" and "evil" not in profile
    assert "x-lang" not in profile["headers"]  # a header template without its value is left out


def test_a_call_uses_an_earlier_calls_answer(gw: Gateway) -> None:
    r = get(gw, "/two-stage")
    assert r.status == 200, r.summary()
    body = r.json()
    assert body["profile"]["team_id"] == "t-42"
    assert body["team"]["path"] == "/json/teams/t-42"
    assert body["team"]["of"] == "/json/users/al%2Fice"
    assert body["other"]["path"] == "/json/other"


def test_optional_failures_are_null_with_an_error_entry(gw: Gateway) -> None:
    t0 = time.monotonic()
    r = get(gw, "/optional-fails")
    elapsed = time.monotonic() - t0
    assert r.status == 200, r.summary()
    assert elapsed < 2.0, elapsed  # the slow call was cut at its 300ms timeout
    body = r.json()
    assert body["ok"]["path"] == "/json/ok"
    errors = body["errors"]
    assert set(errors) == {"missing", "text", "big", "big_chunked", "slow", "dead"}
    for name in errors:
        assert body[name] is None
    assert errors["missing"] == {"status": 502, "code": "status", "message": "upstream answered 404"}
    assert errors["text"]["code"] == "invalid_json"
    assert errors["big"]["code"] == errors["big_chunked"]["code"] == "too_large"
    assert errors["slow"] == {"status": 504, "code": "timeout", "message": "upstream timed out"}
    assert errors["dead"]["code"] == "connect_error" and errors["dead"]["status"] == 502
    assert "127.0.0.1" not in json.dumps(errors)  # no target address, ever


@pytest.mark.parametrize(("what", "message"), [("500", "upstream answered 500"), ("404", "upstream answered 404")])
def test_a_required_failure_answers_at_once_naming_the_call(gw: Gateway, what: str, message: str) -> None:
    t0 = time.monotonic()
    r = get(gw, f"/required-fails/{what}")
    elapsed = time.monotonic() - t0
    assert r.status == 502, r.summary()
    assert elapsed < 2.0, elapsed  # not held up by the 3 s call, which is cancelled
    error = r.json()["error"]
    assert error["message"] == f"aggregate call 'profile' failed: {message}"
    assert error["request_id"] == r.header("x-request-id")


def test_a_required_timeout_is_504(gw: Gateway) -> None:
    t0 = time.monotonic()
    r = get(gw, "/required-times-out")
    assert r.status == 504 and time.monotonic() - t0 < 2.0, r.summary()
    assert r.json()["error"]["message"] == "aggregate call 'slow' failed: upstream timed out"


def test_a_dead_upstream_is_502_without_its_address(gw: Gateway) -> None:
    r = get(gw, "/required-dead")
    assert r.status == 502, r.summary()
    assert r.json()["error"]["message"] == "aggregate call 'profile' failed: could not connect to the upstream"
    assert "127.0.0.1" not in r.body.decode()


def test_a_call_on_a_failed_call_fails_too(gw: Gateway) -> None:
    r = get(gw, "/dependency-failed")
    assert r.status == 200, r.summary()
    body = r.json()
    assert body["profile"] is None and body["team"] is None
    assert body["errors"]["team"]["code"] == "dependency_failed"
    assert "'profile'" in body["errors"]["team"]["message"]


def test_a_missing_claim_is_the_clients_fault(gw: Gateway) -> None:
    r = get(gw, "/dash/1?page=1", claims={"org": {"id": 7}})
    assert r.status == 400, r.summary()
    assert r.json()["error"]["message"] == "aggregate call 'profile' failed: the request has no claim 'sub'"
    assert get(gw, "/dash/1?page=1", claims=None).status == 401  # the route's auth answers first
    r = get(gw, "/dash/1")
    assert r.status == 400 and "query parameter 'page'" in r.json()["error"]["message"]


def test_calls_go_through_the_upstreams_balancer_and_retries(gw: Gateway) -> None:
    # One of two round-robin targets refuses connections: the default policy moves a refused
    # attempt to the other target, so every call answers.
    for _ in range(4):
        r = get(gw, "/failover")
        assert r.status == 200, r.summary()
        assert r.json()["a"]["path"] == "/json/a" and r.json()["b"]["path"] == "/json/b"


def test_the_merged_body_is_compressed_by_the_routes_policy(gw: Gateway) -> None:
    plain = get(gw, "/compressed")
    assert plain.status == 200 and plain.header("content-encoding") is None
    assert plain.header("vary") == "Accept-Encoding"
    r = get(gw, "/compressed", {"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.header("content-encoding") == "gzip" and r.header("vary") == "Accept-Encoding"
    assert json.loads(gzip.decompress(r.body)) == plain.json()
    assert len(r.body) < len(plain.body)
