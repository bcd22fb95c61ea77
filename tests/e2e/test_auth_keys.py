"""API keys and OAuth2 token introspection end to end (issue 10): a real gateway (2 workers), the
test backend, and a real introspection server (`tests.support.authserver`, stdlib HTTP), down
included."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.auth import CLIENT_ID_SECRET, AuthServer, start_authserver
from tests.support.client import Response, http_get
from tests.support.procs import Backend, Gateway, ReloadFailed, gateway_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"
BOB_2 = "bob-second-key-0123456789"
CAROL = "carol/key+0123456789=="


@pytest.fixture(scope="module")
def authserver() -> Iterator[AuthServer]:
    with start_authserver() as server:
        now = int(time.time())
        server.set_tokens({
            "tok-active": {"active": True, "sub": "u1", "scope": "orders:read profile", "exp": now + 3600,
                           "client_id": "app"},
            "tok-noscope": {"active": True, "sub": "u2", "scope": "profile", "exp": now + 3600},
            "tok-expired": {"active": True, "sub": "u3", "exp": now - 10},
            "tok-inactive": {"active": False},
            "tok-slow": {"active": True, "sub": "u4", "exp": now + 3600},
        })
        yield server


def write_keys(path: Path, extra: str = "") -> None:
    digest = hashlib.sha256(BOB_2.encode()).hexdigest()
    path.write_text(f"alice: {ALICE}\nbob: [{BOB}, 'sha256:{digest}']\n{extra}")


@pytest.fixture(scope="module")
def gw(backend: Backend, authserver: AuthServer, tmp_path_factory: Any) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("keys")
    write_keys(workdir / "keys.yaml")
    client_id, client_secret = CLIENT_ID_SECRET
    auth = {
        "partners": {"type": "api_key", "header": "X-API-Key", "keys_file": "keys.yaml"},
        "inline": {"type": "api_key", "query": "api_key", "keys": {"carol": CAROL}, "consumer_header": "X-Partner"},
        "opaque": {
            "type": "introspection", "url": f"{authserver.url}/introspect", "client_id": client_id,
            "client_secret": client_secret, "timeout": "2s", "forward_claims": {"sub": "X-User-Id"},
        },
    }

    def route(prefix: str, **extra: Any) -> dict[str, Any]:
        return {"match": {"prefix": prefix}, "upstream": "backend", "strip_prefix": True, **extra}

    config = gateway_config(
        backend.port,
        auth=auth,
        rate_limits={"per_consumer": {"rate": "1/m", "burst": 2, "key": "consumer"}},
        routes=[
            route("/keys", auth="partners"),
            route("/query", auth="inline"),
            route("/limited", auth="partners", rate_limit="per_consumer"),
            route("/opaque", auth="opaque"),
            route("/scoped", auth="opaque", require={"scope": "orders:read"}),
            route("/either", auth=["partners", "opaque"]),
            route("/open"),
        ],
    )
    with Gateway(config, workdir) as gateway:
        yield gateway


def get(gw: Gateway, path: str, headers: Any = ()) -> Response:
    return http_get(gw.port, path, headers)


def headers_of(resp: Response) -> dict[str, list[str]]:
    assert resp.status == 200, resp.summary()
    out: dict[str, list[str]] = {}
    for name, value in resp.json()["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def test_api_keys_name_the_consumer_and_clients_cannot(gw: Gateway, backend: Backend) -> None:
    assert headers_of(get(gw, "/keys/echo", [("X-API-Key", ALICE), ("X-Consumer", "bob")]))["x-consumer"] == ["alice"]
    assert headers_of(get(gw, "/keys/echo", [("x-api-key", BOB)]))["x-consumer"] == ["bob"]
    assert headers_of(get(gw, "/keys/echo", [("X-API-Key", BOB_2)]))["x-consumer"] == ["bob"]  # stored as sha256
    assert headers_of(get(gw, f"/query/echo?api_key={CAROL.replace('/', '%2F').replace('+', '%2B')}"))[
        "x-partner"] == ["carol"]
    before = backend.stats()["requests"]
    for headers in ([], [("X-API-Key", ALICE[:-1] + "X")], [("X-API-Key", "")], [("X-API-Key", "sha256:" + "0" * 64)]):
        resp = get(gw, "/keys/echo", headers)
        assert resp.status == 401, headers
        assert resp.header("www-authenticate") == 'ApiKey realm="fastgw"'
    resp = get(gw, "/keys/echo", [("X-API-Key", ALICE), ("X-API-Key", BOB)])
    assert resp.status == 400
    assert get(gw, f"/query/echo?api_key={ALICE}").status == 401  # another auth's key
    assert backend.stats()["requests"] == before
    # Consumer headers are the gateway's on every route: a client's copy never reaches a backend.
    seen = headers_of(get(gw, "/open/echo", [("X-Consumer", "alice"), ("X-Partner", "carol"), ("X-User-Id", "u")]))
    assert "x-consumer" not in seen and "x-partner" not in seen and "x-user-id" not in seen


def test_consumer_rate_limit_key(gw: Gateway) -> None:
    statuses = [get(gw, "/limited/echo", [("X-API-Key", ALICE)]).status for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert get(gw, "/limited/echo", [("X-API-Key", BOB)]).status == 200  # a bucket per consumer


def test_keys_file_is_read_again_on_reload(gw: Gateway) -> None:
    path = Path(gw.config_path).parent / "keys.yaml"
    dave = "dave-key-0123456789abcdef"
    assert get(gw, "/keys/echo", [("X-API-Key", dave)]).status == 401
    write_keys(path, f"dave: {dave}\n")
    gw.reload()
    assert headers_of(get(gw, "/keys/echo", [("X-API-Key", dave)]))["x-consumer"] == ["dave"]
    write_keys(path, "eve: short\n")
    with pytest.raises(ReloadFailed) as info:
        gw.reload()
    gw.wait_line(f"auth.partners.keys_file: {path}:3: eve: a key needs at least 16 characters", start=info.value.index)
    assert get(gw, "/keys/echo", [("X-API-Key", dave)]).status == 200  # still the old generation


def test_introspection(gw: Gateway, authserver: AuthServer, backend: Backend) -> None:
    bearer = [("Authorization", "Bearer tok-active")]
    assert headers_of(get(gw, "/opaque/echo", [*bearer, ("X-User-Id", "evil")]))["x-user-id"] == ["u1"]
    for _ in range(6):  # new connections: both workers; the agent's cache answers for the host
        assert get(gw, "/opaque/echo", bearer).status == 200
    assert authserver.stats()["tokens"]["tok-active"] == 1
    before = backend.stats()["requests"]
    for token in ("tok-inactive", "tok-expired", "tok-unknown"):
        resp = get(gw, "/opaque/echo", [("Authorization", f"Bearer {token}")])
        assert resp.status == 401 and resp.header("www-authenticate") == 'Bearer realm="fastgw", error="invalid_token"'
    calls = authserver.stats()["introspect"]
    for bad in ("has space", "bad\x7fchar", "x" * 5000):
        assert get(gw, "/opaque/echo", [("Authorization", f"Bearer {bad}")]).status in (401, 400), bad
    assert authserver.stats()["introspect"] == calls  # malformed tokens are never sent to the server
    assert backend.stats()["requests"] == before
    assert get(gw, "/scoped/echo", bearer).status == 200
    resp = get(gw, "/scoped/echo", [("Authorization", "Bearer tok-noscope")])
    assert resp.status == 403 and 'error="insufficient_scope"' in (resp.header("www-authenticate") or "")
    assert headers_of(get(gw, "/either/echo", [("X-API-Key", ALICE)]))["x-consumer"] == ["alice"]
    assert get(gw, "/either/echo", bearer).status == 200
    resp = get(gw, "/either/echo")
    assert resp.status == 401
    assert resp.header_values("www-authenticate") == ['ApiKey realm="fastgw"', 'Bearer realm="fastgw"']


def test_concurrent_introspections_of_one_token_are_one_call(gw: Gateway, authserver: AuthServer) -> None:
    authserver.mode(delay_ms=400)
    try:
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda _: get(gw, "/opaque/echo", [("Authorization", "Bearer tok-slow")]).status,
                                     range(12)))
    finally:
        authserver.mode()
    assert statuses == [200] * 12
    assert authserver.stats()["tokens"]["tok-slow"] == 1


def test_server_down_fails_closed_and_cached_tokens_still_pass(gw: Gateway, authserver: AuthServer) -> None:
    assert get(gw, "/opaque/echo", [("Authorization", "Bearer tok-active")]).status == 200
    authserver.mode(down=True)
    try:
        resp = get(gw, "/opaque/echo", [("Authorization", "Bearer tok-never-seen")])
        assert resp.status == 503
        assert resp.json()["error"]["message"] == "authentication unavailable"
        assert get(gw, "/opaque/echo", [("Authorization", "Bearer tok-active")]).status == 200
    finally:
        authserver.mode()


def test_a_killed_auth_agent_is_replaced_and_workers_reconnect(gw: Gateway, authserver: AuthServer) -> None:
    with open(f"/proc/{gw.master_pid}/task/{gw.master_pid}/children") as f:
        helpers = {int(p) for p in f.read().split()} - set(gw.workers)
    assert len(helpers) == 1, helpers  # the auth agent (no health checks in this config)
    agent = helpers.pop()
    start = len(gw.lines)
    os.kill(agent, signal.SIGKILL)
    gw.wait_line(rf"auth agent {agent} exited \(signal SIGKILL\); restarting it", start=start)
    authserver.set_tokens({"tok-after": {"active": True, "sub": "u9", "exp": int(time.time()) + 600}})
    deadline = time.monotonic() + 10
    while (resp := get(gw, "/opaque/echo", [("Authorization", "Bearer tok-after")])).status != 200:
        assert resp.status == 503, resp.summary()  # fails closed while there is no agent
        assert time.monotonic() < deadline, "no agent answered again"
    assert headers_of(resp)["x-user-id"] == ["u9"]
