"""The cache's configuration (`cache_size`, a route's `cache`) and the cache filter's lookup
decisions with an injected clock: fresh, stale, the request's own directives, Authorization."""
from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from fastgw._proxy import CacheFilter, CacheStore, Request
from fastgw.config import ConfigError, load
from fastgw.config.model import DEFAULT_CACHE_SIZE, RouteCache

BASE = """\
listen:
  - {address: "127.0.0.1:8080"}
upstreams:
  app: {targets: ["127.0.0.1:9001"]}
"""


def load_text(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    return load(str(path))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return [p.split(": ", 1)[1] for p in info.value.problems]


def test_defaults_and_values(tmp_path: Path) -> None:
    config = load_text(tmp_path, BASE + "routes:\n  - match: {prefix: /}\n    upstream: app\n    cache: {}\n")
    assert config.cache_size == DEFAULT_CACHE_SIZE and config.routes[0].cache == RouteCache()
    config = load_text(tmp_path, BASE + "cache_size: 16MiB\nroutes:\n  - match: {prefix: /}\n    upstream: app\n"
                                        "    cache: {ttl: 30s, max_object: 2MiB, lock_timeout: 250ms,"
                                        " stale_while_revalidate: 1m, stale_if_error: 1h}\n")
    assert config.cache_size == 16 * 1024 * 1024
    assert config.routes[0].cache == RouteCache(30.0, 2 * 1024 * 1024, 0.25, 60.0, 3600.0)
    small = load_text(tmp_path, BASE + "cache_size: 1MiB\nroutes:\n  - match: {prefix: /}\n    upstream: app\n"
                                       "    cache: {}\n")
    assert small.routes[0].cache.max_object == 256 * 1024  # a quarter of cache_size
    assert load_text(tmp_path, BASE + "routes:\n  - match: {prefix: /}\n    upstream: app\n").routes[0].cache is None


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("cache_size: 100KiB\n", "cache_size: must be at least 1MiB"),
        ("cache_size: 2048GiB\n", "cache_size: must be at most 1024GiB"),
        ("routes:\n  - match: {prefix: /}\n    upstream: app\n    cache: {ttl: soon}\n", "routes[0].cache.ttl:"),
        ("routes:\n  - match: {prefix: /}\n    upstream: app\n    cache: {tll: 1s}\n",
         "routes[0].cache.tll: unknown key 'tll' (did you mean 'ttl'?)"),
        ("routes:\n  - match: {prefix: /}\n    upstream: app\n    cache: {max_object: 32MiB}\n",
         "routes[0].cache.max_object: must be at most a quarter of cache_size"),
        ("routes:\n  - match: {prefix: /}\n    upstream: app\n    cache: {lock_timeout: 2m}\n",
         "routes[0].cache.lock_timeout: must be at most 60s"),
        ("routes:\n  - match: {prefix: /}\n    upstream: app\n    cache: 30s\n", "routes[0].cache: expected a mapping"),
        ("routes:\n  - match: {prefix: /}\n    respond: {status: 200}\n    cache: {ttl: 1s}\n",
         "routes[0].cache: this route answers itself"),
    ],
)
def test_problems(tmp_path: Path, snippet: str, expected: str) -> None:
    found = problems(tmp_path, BASE + snippet)
    assert any(p.startswith(expected) for p in found), found


# ---- lookups, with an injected clock -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.ns = 10**15

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def cache() -> tuple[Clock, CacheStore, CacheFilter]:
    clock = Clock()
    store = CacheStore(mmap.mmap(-1, 1 << 20, flags=mmap.MAP_SHARED), init=True, clock=clock)
    return clock, store, CacheFilter(store, lock_timeout=0.01, wall_clock=lambda: 1_700_000_000 * 10**9)


def request(*headers: tuple[bytes, bytes], method: bytes = b"GET", path: bytes = b"/a") -> Request:
    return Request.build(list(headers), method=method, path=path, host=b"Example.COM:80")


def put(clock: Clock, store: CacheStore, filt: CacheFilter, lifetime: float, **meta: int) -> None:
    key = filt.key_of(request())
    assert key == b"GET http://example.com/a"
    assert store.put(key, b"content-type: text/plain\r\netag: \"x\"\r\n", b"body", stored_ns=clock.ns,
                     lifetime_ns=int(lifetime * 1e9), **meta)


def answer(filt: CacheFilter, req: Request):  # type: ignore[no-untyped-def]
    reply = filt.run_request(req)
    return (reply.status, bytes(req.resp_extra)) if reply is not None else None


def test_fresh_then_stale_as_the_clock_moves(cache: tuple[Clock, CacheStore, CacheFilter]) -> None:
    clock, store, filt = cache
    put(clock, store, filt, 10.0, age_ns=2 * 10**9)
    status, lines = answer(filt, request())
    assert status == 200 and b"age: 2\r\n" in lines and b"cache-status: fastgw; hit; ttl=8\r\n" in lines
    assert lines.startswith(b"content-type: text/plain\r\n")
    clock.ns += 7 * 10**9
    assert b"age: 9\r\n" in answer(filt, request())[1]
    clock.ns += 2 * 10**9  # current age 11 > lifetime 10: stale, no validator needed to forward
    assert answer(filt, request()) is None
    # the request may accept it stale...
    status, lines = answer(filt, request((b"Cache-Control", b"max-stale=5")))
    assert status == 200 and b"detail=max-stale" in lines and b"ttl=-1" in lines
    assert answer(filt, request((b"Cache-Control", b"max-stale=0"))) is None
    # ...unless the response forbids it
    store.remove(b"GET http://example.com/a")
    put(clock, store, filt, 1.0, flags=4)  # EF_MUST_REVALIDATE
    clock.ns += 2 * 10**9
    assert answer(filt, request((b"Cache-Control", b"max-stale"))) is None


def test_request_directives(cache: tuple[Clock, CacheStore, CacheFilter]) -> None:
    clock, store, filt = cache
    put(clock, store, filt, 100.0, age_ns=10 * 10**9)
    assert answer(filt, request((b"Cache-Control", b"max-age=5"))) is None  # older than the client wants
    assert answer(filt, request((b"Cache-Control", b"max-age=60")))[0] == 200
    assert answer(filt, request((b"Cache-Control", b"min-fresh=95"))) is None
    assert answer(filt, request((b"Cache-Control", b"no-cache"))) is None
    assert answer(filt, request((b"Pragma", b"no-cache"))) is None
    assert answer(filt, request((b"Pragma", b"no-cache"), (b"Cache-Control", b"max-age=60")))[0] == 200
    status, lines = answer(filt, request((b"If-None-Match", b'W/"x"')))
    assert status == 304 and b"etag: \"x\"" in lines and b"content-type" not in lines
    assert answer(filt, request(method=b"HEAD"))[0] == 200
    assert answer(filt, request(method=b"POST")) is None


def test_authorization(cache: tuple[Clock, CacheStore, CacheFilter]) -> None:
    clock, store, filt = cache
    put(clock, store, filt, 100.0)
    assert answer(filt, request((b"Authorization", b"Bearer x"))) is None
    store.remove(b"GET http://example.com/a")
    put(clock, store, filt, 100.0, flags=2)  # EF_AUTH_OK: public or s-maxage
    assert answer(filt, request((b"Authorization", b"Bearer x")))[0] == 200


def test_only_if_cached(cache: tuple[Clock, CacheStore, CacheFilter]) -> None:
    _, _, filt = cache
    reply = filt.run_request(request((b"Cache-Control", b"only-if-cached")))
    assert reply is not None and reply.status == 504 and reply.is_error
