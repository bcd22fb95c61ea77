"""The response cache end to end (issue 11, DESIGN §8 "Cache", docs/caching.md): real gateways
(master + workers) in front of the test backend's `/cache/{id}` endpoint, whose query shapes each
response (Cache-Control, ETag, Vary, delays) and whose `/stats` counts what reached it, so every
test can tell a hit from a miss by the backend's own count, not only by the gateway's headers.

Time-based freshness is never waited for: responses that must be stale are stored with
`max-age=0` (stale at once) and a validator or a stale-if-error / stale-while-revalidate window.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.backend import body_bytes
from tests.support.client import LOOPBACK, Conn, Response, build_request
from tests.support.procs import Backend, Gateway, gateway_config, start_backend

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with start_backend("cache") as b:
        yield b


def cache_config(backend: Backend, workers: int = 2, **cache: Any) -> dict[str, Any]:
    return gateway_config(
        backend.port,
        workers=workers,
        cache_size=cache.pop("cache_size", "8MiB"),
        routes=[
            {"match": {"prefix": "/cache/ttl"}, "upstream": "backend", "cache": {"ttl": "60s", **cache}},
            {"match": {"prefix": "/"}, "upstream": "backend", "cache": dict(cache)},
        ],
    )


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Two workers, a cached catch-all route (explicit freshness only) and a `/cache/ttl` route
    with a 60 s ttl."""
    with Gateway(cache_config(backend, max_object="64KiB"), tmp_path_factory.mktemp("cache")) as g:
        yield g


def url(name: str, **params: str) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"/cache/{name}" + (f"?{query}" if query else "")


def backend_count(backend: Backend, name: str, what: str = "requests") -> int:
    return int(backend.stats()["cache"].get(f"/cache/{name}", {}).get(what, 0))


def get(port: int, target: str, headers: Any = (), method: str = "GET") -> Response:
    with Conn(port, timeout=10.0) as conn:
        return conn.request(method, target, headers)


def status_of(resp: Response) -> str:
    value = resp.header("cache-status")
    assert value is not None, resp.summary()
    assert value.startswith("fastgw"), value
    return value


def is_hit(resp: Response) -> bool:
    return "; hit" in status_of(resp)


def cache_admin(gw: Gateway, target: str = "/cache", method: str = "GET") -> dict[str, Any]:
    with Conn(gw.admin_port) as conn:
        resp = conn.request(method, target)
    assert resp.status == 200, resp.summary()
    return resp.json()  # type: ignore[no-any-return]


# ---- the shared store ----------------------------------------------------------------------------


def test_a_fetch_by_one_worker_is_a_hit_in_every_other(gw: Gateway, backend: Backend) -> None:
    target = url("shared", cc="max-age=60")
    first = get(gw.port, target)
    assert first.status == 200 and not is_hit(first)
    assert "stored" in status_of(first) and first.header("age") == "0"
    prefixes = set()
    for _ in range(16):  # a new connection each: the kernel spreads them over both workers
        resp = get(gw.port, target)
        assert resp.status == 200 and is_hit(resp), status_of(resp)
        assert resp.body == first.body and resp.header("content-type") == "application/json"
        assert resp.header("age") is not None and re.fullmatch(r"fastgw; hit; ttl=\d+", status_of(resp))
        prefixes.add(resp.header("x-request-id").rpartition("-")[0])  # type: ignore[union-attr]
    assert len(prefixes) == 2, f"all hits came from one worker: {prefixes}"
    assert backend_count(backend, "shared") == 1


def test_vary_keeps_one_variant_per_client(gw: Gateway, backend: Backend) -> None:
    target = url("vary", cc="max-age=60", vary="Accept-Language")
    en, fr = [("Accept-Language", "en")], [("Accept-Language", "fr")]
    a1, b1 = get(gw.port, target, en), get(gw.port, target, fr)
    assert (a1.json()["vary"], b1.json()["vary"]) == ("en", "fr")
    assert "fwd=vary-miss" in status_of(b1)
    a2, b2, c = get(gw.port, target, en), get(gw.port, target, fr), get(gw.port, target)
    assert is_hit(a2) and is_hit(b2) and not is_hit(c)
    assert (a2.body, b2.body) == (a1.body, b1.body) and c.json()["vary"] is None
    assert backend_count(backend, "vary") == 3


def test_vary_star_is_never_served(gw: Gateway, backend: Backend) -> None:
    target = url("star", cc="max-age=60", vary="*")
    for _ in range(2):
        resp = get(gw.port, target)
        assert not is_hit(resp) and "detail=vary-star" in status_of(resp)
    assert backend_count(backend, "star") == 2


@pytest.mark.parametrize("route", ["", "ttl/"])
def test_private_is_never_served_to_another_client(gw: Gateway, backend: Backend, route: str) -> None:
    """Not even on a route with a ttl: the ttl never overrides private, no-store or no-cache."""
    for directive in ("private, max-age=60", "no-store", "no-cache, max-age=60"):
        name = f"{route}private-{directive.split(',')[0]}"
        target = url(name, cc=directive)
        alice = get(gw.port, target, [("Cookie", "user=alice")])
        bob = get(gw.port, target, [("Cookie", "user=bob")])
        assert not is_hit(bob) and bob.json()["n"] == 2 != alice.json()["n"]
        assert f"detail={directive.split(',')[0]}" in status_of(bob)


def test_authorization_requests(gw: Gateway, backend: Backend) -> None:
    auth = [("Authorization", "Bearer secret-token")]
    # not stored without public / s-maxage, and the next client does not get it
    target = url("auth-plain", cc="max-age=60")
    first = get(gw.port, target, auth)
    assert "detail=authorization" in status_of(first)
    assert not is_hit(get(gw.port, target))
    # stored by an anonymous request: not served to one with Authorization
    assert is_hit(get(gw.port, target))
    with_auth = get(gw.port, target, auth)
    assert not is_hit(with_auth) and "fwd=bypass" in status_of(with_auth)
    assert backend_count(backend, "auth-plain") == 3
    # public and s-maxage responses are shared
    for cc in ("public, max-age=60", "s-maxage=60"):
        name = f"auth-{cc[:6]}"
        get(gw.port, url(name, cc=cc), auth)
        assert is_hit(get(gw.port, url(name, cc=cc), auth)) and is_hit(get(gw.port, url(name, cc=cc)))
        assert backend_count(backend, name) == 1


def test_set_cookie(gw: Gateway, backend: Backend) -> None:
    target = url("cookie", cc="max-age=60", cookie="session=alice")
    assert "detail=set-cookie" in status_of(get(gw.port, target))
    assert get(gw.port, target).header("set-cookie") == "session=alice"
    assert backend_count(backend, "cookie") == 2
    target = url("cookie-public", cc="public, max-age=60", cookie="session=alice")
    first = get(gw.port, target)
    assert first.header("set-cookie") == "session=alice"  # the client that made it gets its cookie
    hit = get(gw.port, target)
    assert is_hit(hit) and hit.header("set-cookie") is None  # stored without it


def test_successful_unsafe_requests_invalidate(gw: Gateway, backend: Backend) -> None:
    target = url("inval", cc="max-age=60")
    get(gw.port, target)
    assert is_hit(get(gw.port, target))
    posted = get(gw.port, url("inval-form", status="500"), method="POST")
    assert "fwd=method" in status_of(posted)
    assert is_hit(get(gw.port, target))  # another URL, and an error: nothing invalidated
    for method in ("POST", "PUT", "DELETE"):
        get(gw.port, target, method=method)
        assert not is_hit(get(gw.port, target)), method
        assert is_hit(get(gw.port, target))
    # Location and Content-Location on the same host
    other = url("inval-other", cc="max-age=60")
    get(gw.port, other)
    get(gw.port, url("inval-post", location=f"http://{LOOPBACK}:{gw.port}{other}"), method="POST")
    assert not is_hit(get(gw.port, other))
    get(gw.port, url("inval-post", content_location=other), method="PATCH")
    assert not is_hit(get(gw.port, other))
    get(gw.port, url("inval-post", location=f"http://elsewhere.example{other}"), method="POST")
    assert is_hit(get(gw.port, other))


def test_revalidation_with_304_updates_the_stored_headers(gw: Gateway, backend: Backend) -> None:
    target = url("reval", cc="max-age=0", etag='"v1"', cc304="max-age=60", set="X-Version:1")
    first = get(gw.port, target)
    assert "stored" in status_of(first)
    second = get(gw.port, target)  # stale at once: revalidated
    assert second.status == 200 and second.body == first.body, second.summary()
    assert "fwd=stale" in status_of(second) and "fwd-status=304" in status_of(second)
    assert second.header("cache-control") == "max-age=60" and second.header("x-version") == "1"
    third = get(gw.port, target)
    assert is_hit(third) and third.header("cache-control") == "max-age=60" and third.body == first.body
    assert (backend_count(backend, "reval"), backend_count(backend, "reval", "not_modified")) == (2, 1)
    # a client's own conditional request is answered by the cache
    mine = get(gw.port, target, [("If-None-Match", '"v1"')])
    assert mine.status == 304 and mine.body == b"" and mine.header("etag") == '"v1"' and is_hit(mine)
    other = get(gw.port, target, [("If-None-Match", '"v0", W/"v2"')])
    assert other.status == 200 and other.body == first.body
    assert backend_count(backend, "reval") == 2


def test_head_is_served_from_the_stored_get(gw: Gateway, backend: Backend) -> None:
    target = url("head", cc="max-age=60", size="3000")
    full = get(gw.port, target)
    head = get(gw.port, target, method="HEAD")
    assert head.status == 200 and is_hit(head) and head.body == b""
    assert head.header("content-length") == "3000" == full.header("content-length")
    assert backend_count(backend, "head") == 1


def test_upgrade_requests_are_never_answered_from_the_cache(gw: Gateway, backend: Backend) -> None:
    target = url("upgrade", cc="max-age=60")
    get(gw.port, target)
    resp = get(gw.port, target, [("Connection", "Upgrade"), ("Upgrade", "websocket")])
    assert not is_hit(resp) and "fwd=bypass" in status_of(resp)
    assert backend_count(backend, "upgrade") == 2


def test_error_statuses_need_explicit_freshness(gw: Gateway, backend: Backend) -> None:
    """CPDoS: a route ttl never stores a 4xx/5xx; the origin's own max-age does."""
    for status in ("404", "500", "400"):
        name = f"ttl/err-{status}"
        resp = get(gw.port, url(name, status=status))
        assert resp.status == int(status) and "detail=no-freshness" in status_of(resp)
        assert not is_hit(get(gw.port, url(name, status=status)))
    get(gw.port, url("err-explicit", status="404", cc="max-age=60"))
    resp = get(gw.port, url("err-explicit", status="404", cc="max-age=60"))
    assert resp.status == 404 and is_hit(resp)
    ttl = get(gw.port, url("ttl/ok"))
    assert "stored" in status_of(ttl) and is_hit(get(gw.port, url("ttl/ok")))


def test_bodies_over_max_object_stream_through_unstored(gw: Gateway, backend: Backend) -> None:
    """By Content-Length before storing starts, or as the body comes (chunked)."""
    for name, extra in (("big", {}), ("big-chunked", {"chunked": "1"})):
        for _ in range(2):
            resp = get(gw.port, url(name, cc="max-age=60", size=str(200_000), **extra))
            assert resp.status == 200 and resp.body == body_bytes(200_000) and not is_hit(resp)
        assert backend_count(backend, name) == 2
    assert "detail=too-large" in status_of(resp) or "stored" in status_of(resp)
    small = url("small", cc="max-age=60", size=str(60_000))
    get(gw.port, small)
    hit = get(gw.port, small)
    assert is_hit(hit) and hit.body == body_bytes(60_000)


def test_age_and_cache_status_on_every_response(gw: Gateway, backend: Backend) -> None:
    for method, target in (("GET", "/echo"), ("POST", "/echo"), ("OPTIONS", "/echo"), ("GET", "/status/404")):
        resp = get(gw.port, target, method=method)
        assert resp.header("age") is not None and resp.header("cache-status") is not None, (method, target)
    assert status_of(get(gw.port, "/echo", method="POST")) == "fastgw; fwd=method"
    only = get(gw.port, url("never-stored"), [("Cache-Control", "only-if-cached")])
    assert only.status == 504


def test_admin_stats_and_purge(gw: Gateway, backend: Backend) -> None:
    for name in ("purge-a", "purge-b", "purge-c"):
        get(gw.port, url(name, cc="max-age=60"))
    stats = cache_admin(gw, "/cache?keys=1000")
    key = f"GET http://{LOOPBACK}:{gw.port}/cache/purge-a?cc=max-age%3D60"
    assert key in stats["keys"]
    assert stats["enabled"] and stats["capacity"] == 8 * 1024 * 1024 and 0 < stats["size"] <= stats["capacity"]
    assert stats["entries"] >= 3 and 0 < stats["hit_ratio"] < 1 and stats["hits"] >= 1
    assert cache_admin(gw, "/cache/purge?key=" + quote(key, safe=""), "POST") == {"purged": 1}
    assert not is_hit(get(gw.port, url("purge-a", cc="max-age=60")))
    prefix = f"GET http://{LOOPBACK}:{gw.port}/cache/purge-"
    assert cache_admin(gw, "/cache/purge?prefix=" + quote(prefix, safe=""), "POST") == {"purged": 3}
    assert not is_hit(get(gw.port, url("purge-b", cc="max-age=60")))
    with Conn(gw.admin_port) as conn:
        assert conn.request("POST", "/cache/purge").status == 400


# ---- collapsing -------------------------------------------------------------------------------


async def _concurrent_gets(port: int, target: str, n: int) -> list[Response]:
    from tests.support.client import ResponseReader

    async def one() -> Response:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            writer.write(build_request("GET", target, [], host=f"{LOOPBACK}:{port}"))
            parser = ResponseReader()
            while (resp := parser.next_response()) is None:
                chunk = await reader.read(65536)
                assert chunk, "connection closed"
                parser.feed(chunk)
            return resp
        finally:
            writer.close()

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), 20)


def test_collapsing_50_misses_over_4_workers_make_1_upstream_request(backend: Backend, tmp_path: Path) -> None:
    with Gateway(cache_config(backend, workers=4), tmp_path) as g:
        target = url("collapse", cc="max-age=60", delay="600")
        responses = asyncio.run(_concurrent_gets(g.port, target, 50))
        assert all(r.status == 200 for r in responses)
        assert len({r.body for r in responses}) == 1
        assert backend_count(backend, "collapse") == 1
        statuses = [status_of(r) for r in responses]
        assert sum("stored" in s for s in statuses) == 1
        assert sum("collapsed" in s for s in statuses) == 49, statuses
        workers = {r.header("x-request-id").rpartition("-")[0] for r in responses}  # type: ignore[union-attr]
        assert len(workers) >= 2, "the 50 requests did not reach several workers"
        # a response that cannot be stored releases the others to fetch for themselves
        uncacheable = url("collapse-private", cc="private", delay="300")
        responses = asyncio.run(_concurrent_gets(g.port, uncacheable, 10))
        assert all(r.status == 200 for r in responses)
        assert backend_count(backend, "collapse-private") == 10


# ---- stale responses --------------------------------------------------------------------------


def test_stale_if_error_while_the_backend_is_down(tmp_path: Path) -> None:
    with start_backend("sie") as own:
        with Gateway(cache_config(own), tmp_path) as g:
            target = url("sie", cc="max-age=0, stale-if-error=600", set="X-From:origin")
            strict = url("sie-strict", cc="max-age=0, must-revalidate, stale-if-error=600")
            first, first_strict = get(g.port, target), get(g.port, strict)
            assert "stored" in status_of(first) and "stored" in status_of(first_strict)
            port = own.port
            own.stop()
            stale = get(g.port, target)
            assert stale.status == 200 and stale.body == first.body and stale.header("x-from") == "origin"
            assert "fwd=stale" in status_of(stale) and "detail=stale-if-error" in status_of(stale)
            assert stale.header("content-type") == "application/json" and stale.header("date") is not None
            assert get(g.port, strict).status == 502  # must-revalidate: never served stale
        (tmp_path / "2").mkdir()
        with start_backend("sie", port=port) as back, Gateway(cache_config(back), tmp_path / "2") as g2:
            assert get(g2.port, target).status == 200


def test_stale_if_error_when_the_upstream_answers_5xx(gw: Gateway, backend: Backend) -> None:
    target = url("sie-5xx", cc="max-age=0, stale-if-error=600", status_after="503")
    first = get(gw.port, target)
    stale = get(gw.port, target)
    assert stale.status == 200 and stale.body == first.body
    assert "fwd-status=503" in status_of(stale) and "detail=stale-if-error" in status_of(stale)
    assert stale.header("date") is not None and stale.header("content-length") is None  # chunked: replaced body
    strict = url("sie-5xx-strict", cc="max-age=0, must-revalidate, stale-if-error=600", status_after="503")
    get(gw.port, strict)
    assert get(gw.port, strict).status == 503  # must-revalidate: the error goes through
    assert backend_count(backend, "sie-5xx") == 2


def test_stale_while_revalidate_refreshes_in_the_background(gw: Gateway, backend: Backend) -> None:
    target = url("swr", cc="max-age=0, stale-while-revalidate=600", etag='"s1"', cc304="max-age=60")
    first = get(gw.port, target)
    assert "stored" in status_of(first)
    stale = get(gw.port, target)  # answered at once with the stale entry; refreshed behind it
    assert stale.status == 200 and stale.body == first.body
    assert "detail=stale-while-revalidate" in status_of(stale) and "; hit" in status_of(stale)
    deadline = time.monotonic() + 10
    while backend_count(backend, "swr", "not_modified") < 1:
        assert time.monotonic() < deadline, "no background revalidation reached the backend"
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while not is_hit(fresh := get(gw.port, target)) or "detail" in status_of(fresh):
        assert time.monotonic() < deadline, status_of(fresh)
    assert fresh.header("cache-control") == "max-age=60" and backend_count(backend, "swr") == 2


# ---- bounds, restarts, reloads -----------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def _fill(port: int, targets: list[str], connections: int) -> list[str]:
    from tests.support.client import ResponseReader

    queue = list(reversed(targets))
    statuses: list[str] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        parser = ResponseReader()
        try:
            while queue:
                writer.write(build_request("GET", queue.pop(), [], host=f"{LOOPBACK}:{port}"))
                while (resp := parser.next_response()) is None:
                    chunk = await reader.read(65536)
                    assert chunk, "connection closed"
                    parser.feed(chunk)
                assert resp.status == 200
                statuses.append(resp.header("cache-status") or "")
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(connections))), 60)
    return statuses


@pytest.mark.timeout(120)
def test_memory_stays_within_cache_size_with_10000_objects(backend: Backend, tmp_path: Path) -> None:
    size = 2 * 1024 * 1024
    with Gateway(cache_config(backend, cache_size="2MiB"), tmp_path) as g:
        pids = [g.master_pid, *g.workers]
        before = {pid: _rss_kib(pid) for pid in pids}
        targets = [url(f"many-{i}", cc="max-age=600", size="600") for i in range(10_000)]
        statuses = asyncio.run(_fill(g.port, targets, 8))
        assert len(statuses) == 10_000 and all("stored" in s for s in statuses)
        stats = cache_admin(g)
        assert stats["capacity"] == size and stats["size"] <= size and stats["object_bytes"] <= size
        assert stats["stores"] >= 10_000 and stats["evictions"] > 0 and stats["entries"] > 500
        grown = {pid: _rss_kib(pid) - before[pid] for pid in pids}
        assert all(kib < size // 1024 + 4096 for kib in grown.values()), grown
        assert is_hit(get(g.port, targets[-1])) and not is_hit(get(g.port, targets[0]))


def test_a_hit_survives_a_reload_and_worker_restarts(backend: Backend, tmp_path: Path) -> None:
    config = cache_config(backend)
    with Gateway(config, tmp_path) as g:
        target = url("reload", cc="max-age=600")
        first = get(g.port, target)
        g.reload()
        after = get(g.port, target)
        assert is_hit(after) and after.body == first.body
        for pid in list(g.workers):
            g.kill_worker(pid)
        deadline = time.monotonic() + 20
        while set(g.healthz()["workers"]) & set(g.workers) or len(g.healthz()["workers"]) < 2:
            assert time.monotonic() < deadline, "workers were not replaced"
            time.sleep(0.05)
        assert is_hit(get(g.port, target))
        g.write_config({**config, "cache_size": "4MiB"})  # another size: another (empty) cache
        g.reload()
        assert not is_hit(get(g.port, target))
        assert backend_count(backend, "reload") == 2


def _read_until_closed(conn: Conn) -> bytes:
    sock = conn._sock
    sock.settimeout(10)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def test_a_worker_killed_mid_store_leaves_no_entry(backend: Backend, tmp_path: Path) -> None:
    size = 300_000
    target = url("killed", cc="max-age=600", size=str(size), stall="2000", stall_first="1")
    with Gateway(cache_config(backend, workers=1, max_object="1MiB"), tmp_path) as g:
        with Conn(g.port, timeout=10.0) as conn:
            conn.send(build_request("GET", target, [], host=f"{LOOPBACK}:{g.port}"))
            deadline = time.monotonic() + 10
            while cache_admin(g)["writing"] == 0:  # the worker has started storing
                assert time.monotonic() < deadline, "the store never started"
                time.sleep(0.02)
            os.kill(g.workers[0], signal.SIGKILL)
            received = _read_until_closed(conn)
        assert b"stored" in received and len(received) < size  # cut short: the client saw it fail
        deadline = time.monotonic() + 20
        while (stats := cache_admin(g))["writing"] or not stats["dead_writes"]:
            assert time.monotonic() < deadline, stats
            time.sleep(0.02)
        assert stats["entries"] == 0
        refetched = get(g.port, target)
        assert refetched.status == 200 and not is_hit(refetched) and refetched.body == body_bytes(size)
        hit = get(g.port, target)
        assert is_hit(hit) and hit.body == body_bytes(size)
        assert backend_count(backend, "killed") == 2
