"""The request pipeline's own features, end to end against real backends: IP access control, CORS,
fixed responses and redirects, path rewrites, custom error bodies, routing on headers and query
parameters, weighted splits between upstreams, and hiding the backends' identity."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Conn, raw_request, start_load
from tests.support.procs import Backend, Gateway, free_port, gateway_config, start_backend

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def second() -> Iterator[Backend]:
    with start_backend("second") as b:
        yield b


def _config(backend: Backend, routes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return gateway_config(backend.port, **{"workers": 1, "routes": routes, **extra})


def _get(gw: Gateway, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Any:
    with Conn(gw.port) as conn:
        return conn.request(method, path, list((headers or {}).items()))


# ---- IP access control ------------------------------------------------------------------------


def test_access_lists_decide_on_the_client_address_through_trusted_proxies(backend: Backend, tmp_path: Path) -> None:
    """The most specific network decides: 10.0.0.0/8 allowed, 10.9.0.0/16 inside it denied, and
    the address is the one X-Forwarded-For gives when the peer (127.0.0.1) is a trusted proxy."""
    routes = [
        {
            "match": {"prefix": "/echo"},
            "upstream": "backend",
            "access": {"allow": ["10.0.0.0/8", "::1/128"], "deny": ["10.9.0.0/16"]},
        },
        {"match": {"prefix": "/pid"}, "upstream": "backend"},
    ]
    cfg = _config(backend, routes, trusted_proxies=["127.0.0.1/32"])
    with Gateway(cfg, tmp_path) as gw:
        assert _get(gw, "/echo", {"X-Forwarded-For": "10.1.2.3"}).status == 200
        denied = _get(gw, "/echo", {"X-Forwarded-For": "10.9.1.1"})
        assert denied.status == 403 and denied.json()["error"]["status"] == 403, denied.summary()
        # The nearest address that is not a trusted proxy: the client wrote 10.1.1.1 itself.
        assert _get(gw, "/echo", {"X-Forwarded-For": "10.1.1.1, 10.9.0.5, 127.0.0.1"}).status == 403
        assert _get(gw, "/echo", {"X-Forwarded-For": "192.168.1.1"}).status == 403  # in no allow list
        assert _get(gw, "/echo").status == 403  # the peer itself, 127.0.0.1, is not allowed
        assert _get(gw, "/pid", {"X-Forwarded-For": "10.9.1.1"}).status == 200  # the rule is per route


def test_global_access_applies_to_every_route(backend: Backend, tmp_path: Path) -> None:
    routes = [{"match": {"prefix": "/"}, "upstream": "backend"}]
    with Gateway(_config(backend, routes, access={"deny": ["127.0.0.0/8"]}), tmp_path) as gw:
        resp = _get(gw, "/echo")
        assert resp.status == 403, resp.summary()
        assert "access denied" in resp.json()["error"]["message"]


def test_untrusted_peer_cannot_spoof_its_address(backend: Backend, tmp_path: Path) -> None:
    routes = [{"match": {"prefix": "/"}, "upstream": "backend", "access": {"deny": ["127.0.0.1/32"]}}]
    with Gateway(_config(backend, routes), tmp_path) as gw:
        assert _get(gw, "/echo", {"X-Forwarded-For": "10.1.1.1"}).status == 403


# ---- CORS ---------------------------------------------------------------------------------------

CORS_ROUTE = {
    "match": {"prefix": "/count"},
    "upstream": "backend",
    "cors": {
        "origins": ["https://app.example.com", "https://*.example.org"],
        "methods": ["GET", "POST"],
        "headers": ["Content-Type", "X-Token"],
        "expose_headers": ["X-Request-ID"],
        "credentials": True,
        "max_age": "10m",
    },
}


@pytest.fixture(scope="module")
def cors_gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    routes = [CORS_ROUTE, {"match": {"prefix": "/"}, "upstream": "backend"}]
    with Gateway(_config(backend, routes), tmp_path_factory.mktemp("cors")) as gw:
        yield gw


def _preflight(gw: Gateway, path: str, origin: str, method: str, headers: str | None = None) -> Any:
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return _get(gw, path, h, method="OPTIONS")


def test_cors_preflight_is_answered_without_the_upstream(cors_gw: Gateway, backend: Backend) -> None:
    path = f"/count/cors-{uuid.uuid4().hex}"
    resp = _preflight(cors_gw, path, "https://app.example.com", "POST", "content-type, x-token")
    assert resp.status == 204, resp.summary()
    assert resp.header("access-control-allow-origin") == "https://app.example.com"
    assert resp.header("access-control-allow-credentials") == "true"
    assert resp.header("access-control-allow-methods") == "GET, POST"
    assert resp.header("access-control-allow-headers") == "content-type, x-token"
    assert resp.header("access-control-max-age") == "600"
    assert "Origin" in resp.header("vary")
    assert backend.count(path) == 0


def test_cors_preflight_for_a_method_not_allowed_is_refused(cors_gw: Gateway, backend: Backend) -> None:
    path = f"/count/cors-{uuid.uuid4().hex}"
    resp = _preflight(cors_gw, path, "https://app.example.com", "DELETE")
    assert resp.status == 403, resp.summary()
    assert "DELETE" in resp.json()["error"]["message"]
    assert resp.header("access-control-allow-origin") is None
    assert _preflight(cors_gw, path, "https://app.example.com", "GET", "x-other").status == 403
    assert _preflight(cors_gw, path, "https://evil.example.net", "GET").status == 403
    assert backend.count(path) == 0


def test_cors_headers_on_actual_requests_and_wildcard_subdomains(cors_gw: Gateway) -> None:
    resp = _get(cors_gw, "/count/x", {"Origin": "https://api.eu.example.org"})
    assert resp.status == 200
    assert resp.header("access-control-allow-origin") == "https://api.eu.example.org"
    assert resp.header("access-control-expose-headers") == "x-request-id"
    assert resp.header("vary") == "Origin"
    other = _get(cors_gw, "/count/x", {"Origin": "https://example.org.evil.com"})
    assert other.status == 200 and other.header("access-control-allow-origin") is None
    assert other.header("vary") == "Origin"
    plain = _get(cors_gw, "/count/x")
    assert plain.header("access-control-allow-origin") is None and plain.header("vary") == "Origin"


def test_cors_headers_on_gateway_errors_too(backend: Backend, tmp_path: Path) -> None:
    """A browser can read a 429 (or 401) only when it carries the CORS headers."""
    route = {**CORS_ROUTE, "rate_limit": ["tight"]}
    cfg = _config(backend, [route], rate_limits={"tight": {"rate": "1/m", "burst": 1}})
    with Gateway(cfg, tmp_path) as gw:
        origin = {"Origin": "https://app.example.com"}
        assert _get(gw, "/count/x", origin).status == 200
        limited = _get(gw, "/count/x", origin)
        assert limited.status == 429, limited.summary()
        assert limited.header("access-control-allow-origin") == "https://app.example.com"


# ---- fixed responses, redirects, rewrites, error bodies ------------------------------------------


def test_fixed_response_and_redirects(backend: Backend, tmp_path: Path) -> None:
    routes = [
        {
            "match": {"path": "/maintenance"},
            "respond": {"status": 503, "body": "back soon", "headers": {"Retry-After": "120"}},
        },
        {"match": {"path": "/old/{id}"}, "redirect": {"to": "https://new.example.com/v2/{id}{query}"}},
        {"match": {"prefix": "/moved"}, "redirect": {"to": "/new{path}", "status": 301}},
    ]
    with Gateway(_config(backend, routes), tmp_path) as gw:
        resp = _get(gw, "/maintenance")
        assert (resp.status, resp.body, resp.header("retry-after")) == (503, b"back soon", "120"), resp.summary()
        assert resp.header("content-type") == "text/plain; charset=utf-8"
        head = _get(gw, "/maintenance", method="HEAD")
        assert head.status == 503 and head.body == b"" and head.header("content-length") == "9"
        moved = _get(gw, "/old/42?a=1")
        assert (moved.status, moved.header("location")) == (308, "https://new.example.com/v2/42?a=1")
        assert _get(gw, "/moved/x/y").header("location") == "/new/moved/x/y"


def test_rewrites_by_prefix_and_template(backend: Backend, tmp_path: Path) -> None:
    routes = [
        {"match": {"path": "/v1/users/{id}"}, "upstream": "backend", "rewrite": {"path": "/echo/users/{id}"}},
        {"match": {"prefix": "/api/v2"}, "upstream": "backend", "rewrite": {"prefix": "/echo"}},
    ]
    with Gateway(_config(backend, routes), tmp_path) as gw:
        assert _get(gw, "/v1/users/42?x=1").json()["target"] == "/echo/users/42?x=1"
        assert _get(gw, "/api/v2/a/b").json()["target"] == "/echo/a/b"
        assert _get(gw, "/api/v2").json()["target"] == "/echo"


def test_custom_error_body_is_a_template_with_the_request_id(backend: Backend, tmp_path: Path) -> None:
    errors = {"bodies": {404: {"body": '{"oops": "{request_id}", "status": {status}}'}}}
    routes = [{"match": {"prefix": "/echo"}, "upstream": "backend"}]
    with Gateway(_config(backend, routes, errors=errors), tmp_path) as gw:
        resp = _get(gw, "/nowhere")
        assert resp.status == 404
        assert resp.json() == {"oops": resp.header("x-request-id"), "status": 404}


# ---- routing on headers and query, weighted splits -------------------------------------------------


def test_routes_told_apart_by_header_and_query(backend: Backend, second: Backend, tmp_path: Path) -> None:
    cfg = _config(backend, [])
    cfg["upstreams"]["second"] = {"targets": [f"127.0.0.1:{second.port}"]}
    cfg["routes"] = [
        {"match": {"prefix": "/pid"}, "upstream": "backend"},
        {"match": {"prefix": "/pid", "headers": {"X-API-Version": "2"}}, "upstream": "second"},
        {"match": {"prefix": "/pid", "query": {"beta": {"present": True}}}, "upstream": "second"},
        {"match": {"prefix": "/pid", "headers": {"X-Client": {"prefix": "mobile-"}}}, "upstream": "second"},
    ]
    with Gateway(cfg, tmp_path) as gw:
        assert _get(gw, "/pid").json()["name"] == "main"
        assert _get(gw, "/pid", {"X-API-Version": "2"}).json()["name"] == "second"
        assert _get(gw, "/pid", {"x-api-version": "3"}).json()["name"] == "main"
        assert _get(gw, "/pid?beta").json()["name"] == "second"
        assert _get(gw, "/pid?alpha=1").json()["name"] == "main"
        assert _get(gw, "/pid", {"X-Client": "mobile-ios"}).json()["name"] == "second"


def test_weighted_split_and_sticky_split(backend: Backend, second: Backend, tmp_path: Path) -> None:
    cfg = _config(backend, [])
    cfg["upstreams"]["second"] = {"targets": [f"127.0.0.1:{second.port}"]}
    cfg["routes"] = [
        {"match": {"prefix": "/pid"}, "upstreams": [{"name": "backend", "weight": 3}, {"name": "second", "weight": 1}]},
        {
            "match": {"prefix": "/sticky"},
            "upstreams": [{"name": "backend", "weight": 1}, {"name": "second", "weight": 1}],
            "sticky": "header:X-User",
            "rewrite": {"prefix": "/pid"},
        },
    ]
    with Gateway(cfg, tmp_path) as gw:
        with Conn(gw.port) as conn:
            names = Counter(conn.request("GET", "/pid").json()["name"] for _ in range(40))
            assert names == {"main": 30, "second": 10}, names
            for user in ("alice", "bob", "carol", "dave"):
                seen = {conn.request("GET", "/sticky", [("X-User", user)]).json()["name"] for _ in range(8)}
                assert len(seen) == 1, (user, seen)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_reloading_new_weights_loses_no_request(backend: Backend, second: Backend, tmp_path: Path) -> None:
    cfg = _config(backend, [], workers=2)
    cfg["upstreams"]["second"] = {"targets": [f"127.0.0.1:{second.port}"]}
    split = [{"name": "backend", "weight": 9}, {"name": "second", "weight": 1}]
    cfg["routes"] = [{"match": {"prefix": "/pid"}, "upstreams": split}]
    with Gateway(cfg, tmp_path) as gw:
        load = start_load(gw.port, "/pid", concurrency=8, duration_s=4, max_requests=10**6, keepalive=True)
        for weights in ((5, 5), (1, 9), (0, 1)):
            cfg["routes"][0]["upstreams"] = [
                {"name": "backend", "weight": weights[0]},
                {"name": "second", "weight": weights[1]},
            ]
            gw.write_config(cfg)
            gw.reload()
        result = load.result(timeout=30)
        assert result.failed == 0, result.summary()
        assert {_get(gw, "/pid").json()["name"] for _ in range(5)} == {"second"}


# ---- hiding the backends -------------------------------------------------------------------------


def test_backend_identity_headers_are_dropped_by_default(backend: Backend, tmp_path: Path) -> None:
    routes = [{"match": {"prefix": "/"}, "upstream": "backend"}]
    target = "/headers?set=Server:gunicorn/20&set=X-Powered-By:PHP/8&set=Via:1.1%20varnish&set=X-Keep:1"
    with Gateway(_config(backend, routes), tmp_path) as gw:
        resp = _get(gw, target)
        assert resp.status == 200
        assert [resp.header(n) for n in ("server", "x-powered-by", "via", "x-keep")] == [None, None, None, "1"]
    (tmp_path / "keep").mkdir()
    with Gateway(_config(backend, routes, hide_backend_headers=["X-Powered-By"]), tmp_path / "keep") as gw:
        resp = _get(gw, target)
        assert resp.header("server") == "gunicorn/20" and resp.header("x-powered-by") is None


def test_gateway_errors_never_show_a_target_address(backend: Backend, tmp_path: Path) -> None:
    cfg = _config(backend, [{"match": {"prefix": "/"}, "upstream": "backend"}])
    dead = f"127.0.0.1:{_closed_port()}"
    cfg["upstreams"]["backend"]["targets"] = [dead]
    with Gateway(cfg, tmp_path) as gw:
        result = raw_request(gw.port, b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n", 5.0, responses=1)
        assert result.status == 502, result.summary()
        assert dead.encode() not in result.responses[0].body and b"127.0.0.1" not in result.responses[0].body


def _closed_port() -> int:
    return free_port()
