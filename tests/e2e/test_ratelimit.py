"""Rate limits end to end (DESIGN §8, issue 5): real gateways (master + workers) in front of the
test backend, real clients, and for cluster scope a real `redis-server` on a free loopback port.

The accuracy tests count what a steady overload lets through: with a limit of R/s and burst B, a
run of T seconds must pass R×T + B requests within a few percent, whatever the number of workers
(local scope: one shared-memory table per host) or gateways (cluster scope: one Redis)."""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Conn, Response, ResponseReader, build_request, http_get, run_load, start_load
from tests.support.procs import Backend, Gateway, free_port, gateway_config, start_backend

pytestmark = pytest.mark.e2e

A_MINUTE = "1/m"
"""A rate that refills nothing within a test: what is left in a bucket is what the test took."""


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with start_backend("rl") as b:
        yield b


def limited_config(
    backend: Backend, rate_limits: dict[str, Any], routes: list[dict[str, Any]], **over: Any
) -> dict[str, Any]:
    routes = [{"upstream": "backend", "strip_prefix": r["match"]["prefix"] != "/", **r} for r in routes]
    return gateway_config(backend.port, rate_limits=rate_limits, routes=routes, **over)


def get_from(source: str, port: int, path: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """One GET from the loopback address `source`, so that the gateway sees another client IP."""
    with socket.socket() as sock:
        sock.settimeout(5.0)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(build_request("GET", path, headers or [], host=f"127.0.0.1:{port}"))
        reader = ResponseReader()
        while (resp := reader.next_response()) is None:
            chunk = sock.recv(65536)
            if not chunk:
                reader.feed_eof()
                resp = reader.next_response()
                assert resp is not None, "connection closed without a response"
                return resp
            reader.feed(chunk)
        return resp


def ratelimit(resp: Response) -> tuple[int, int, int]:
    """(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset)."""
    values = (resp.header("ratelimit-limit"), resp.header("ratelimit-remaining"), resp.header("ratelimit-reset"))
    assert None not in values, resp.summary()
    return tuple(int(v) for v in values)  # type: ignore[arg-type, return-value]


def counters(gw: Gateway, limit: str, until: Any, timeout: float = 5.0) -> dict[str, int]:
    """The limit's counters from the admin API once `until(counters)` holds (workers publish
    them every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while not until(found := http_get(gw.admin_port, "/ratelimits").json()["limits"][limit]["counters"]):
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    return found  # type: ignore[no-any-return]


def assert_within(got: int, expected: float, tolerance: float, what: str) -> None:
    message = f"{what}: {got} allowed, expected {expected:.0f} ±{tolerance:.0%}"
    assert abs(got - expected) <= tolerance * expected, message


# ---- the contract, on one gateway --------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    limits = {
        "contract": {"rate": A_MINUTE, "burst": 3},
        "body": {"rate": A_MINUTE, "burst": 1},
        "shadow": {"rate": A_MINUTE, "burst": 2, "enforce": False},
        "per_ip": {"rate": A_MINUTE, "burst": 1, "key": "ip"},
        "per_user": {"rate": A_MINUTE, "burst": 1, "key": "header:X-User"},
        "tight": {"rate": A_MINUTE, "burst": 2},
        "loose": {"rate": A_MINUTE, "burst": 5},
        "counted": {"rate": A_MINUTE, "burst": 2},
    }
    routes = [
        {"match": {"prefix": "/contract"}, "rate_limit": "contract"},
        {"match": {"prefix": "/body"}, "rate_limit": "body"},
        {"match": {"prefix": "/shadow"}, "rate_limit": ["shadow"]},
        {"match": {"prefix": "/ip"}, "rate_limit": "per_ip"},
        {"match": {"prefix": "/user"}, "rate_limit": "per_user"},
        {"match": {"prefix": "/both"}, "rate_limit": ["loose", "tight"]},
        {"match": {"prefix": "/loose"}, "rate_limit": "loose"},
        {"match": {"prefix": "/counted"}, "rate_limit": "counted"},
        {"match": {"prefix": "/"}},
    ]
    with Gateway(limited_config(backend, limits, routes), tmp_path_factory.mktemp("gw")) as g:
        yield g


def test_429_contract(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        for remaining in (2, 1, 0):
            ok = conn.request("GET", "/contract/echo")
            assert ok.status == 200, ok.summary()
            limit, left, reset = ratelimit(ok)
            assert (limit, left) == (3, remaining) and 1 <= reset <= 3 * 60
            assert ok.header("retry-after") is None
        refused = conn.request("GET", "/contract/echo")
        assert refused.status == 429
        assert refused.header("content-type") == "application/json"
        error = refused.json()["error"]
        assert (error["status"], error["code"]) == (429, "rate_limited")
        assert error["request_id"] == refused.header("x-request-id")
        retry_after = int(refused.header("retry-after") or 0)
        assert 1 <= retry_after <= 60  # one token at 1/m: at most a minute, in whole seconds
        limit, left, reset = ratelimit(refused)
        assert (limit, left) == (3, 0) and 120 < reset <= 180
        assert refused.keep_alive  # a bodiless request answered locally keeps its connection
        plain = conn.request("GET", "/plain")
        assert plain.status == 404 and plain.header("ratelimit-limit") is None  # an unlimited route


def test_refused_request_body_is_not_read(gw: Gateway) -> None:
    assert http_get(gw.port, "/body/echo").status == 200
    with Conn(gw.port) as conn:
        conn.send(build_request(
            "POST", "/body/echo", [("Content-Length", "1000000"), ("Expect", "100-continue")],
            host=f"127.0.0.1:{gw.port}",
        ))
        refused = conn.read_response(skip_informational=False)
        assert refused.status == 429  # no 100 Continue first
        assert not refused.keep_alive
        assert conn.wait_closed(5.0)


def test_shadow_mode_reports_but_never_refuses(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        remaining = [ratelimit(r)[1] for r in (conn.request("GET", "/shadow/echo") for _ in range(5))]
    assert remaining == [1, 0, 0, 0, 0]


def test_ip_keys_count_each_client_address(gw: Gateway) -> None:
    assert get_from("127.0.0.1", gw.port, "/ip/echo").status == 200
    assert get_from("127.0.0.1", gw.port, "/ip/echo").status == 429
    assert get_from("127.0.0.2", gw.port, "/ip/echo").status == 200
    assert get_from("127.0.0.2", gw.port, "/ip/echo").status == 429


def test_header_keys_count_each_value_and_fall_back_to_the_ip(gw: Gateway) -> None:
    assert get_from("127.0.0.1", gw.port, "/user/echo", [("X-User", "alice")]).status == 200
    assert get_from("127.0.0.1", gw.port, "/user/echo", [("X-User", "alice")]).status == 429
    assert get_from("127.0.0.1", gw.port, "/user/echo", [("X-User", "bob")]).status == 200
    # Without the header a client is held by its address: leaving the header out is no way around.
    assert get_from("127.0.0.3", gw.port, "/user/echo").status == 200
    assert get_from("127.0.0.3", gw.port, "/user/echo").status == 429
    assert get_from("127.0.0.3", gw.port, "/user/echo", [("X-User", "127.0.0.3")]).status == 200


def test_several_limits_refuse_without_taking_from_the_others(gw: Gateway) -> None:
    with Conn(gw.port) as conn:
        first = conn.request("GET", "/both/echo")
        assert first.status == 200 and ratelimit(first)[:2] == (2, 1)  # the most restrictive is shown
        assert conn.request("GET", "/both/echo").status == 200
        for _ in range(3):
            refused = conn.request("GET", "/both/echo")
            assert refused.status == 429 and ratelimit(refused)[:2] == (2, 0)
        loose = conn.request("GET", "/loose/echo")
        assert loose.status == 200 and ratelimit(loose)[:2] == (5, 2)  # 5 - 2 allowed - this one


def test_admin_reports_limits_counters_and_the_table(gw: Gateway) -> None:
    assert [http_get(gw.port, "/counted/echo").status for _ in range(3)] == [200, 200, 429]
    expected = {"allowed": 2, "refused": 1, "shadow_refused": 0, "fail_open": 0, "fail_closed": 0,
                "redis_calls": 0, "redis_errors": 0}
    deadline = time.monotonic() + 5.0
    while (report := http_get(gw.admin_port, "/ratelimits").json())["limits"]["counted"]["counters"] != expected:
        assert time.monotonic() < deadline, report["limits"]["counted"]  # workers publish every 0.5 s
        time.sleep(0.1)
    shadow = report["limits"]["shadow"]
    assert {k: v for k, v in shadow.items() if k != "counters"} == {
        "rate": "1/m", "burst": 2, "key": "ip", "scope": "local", "enforce": False
    }
    assert report["limits"]["per_user"]["key"] == "header:x-user"
    table = report["table"]
    assert table["capacity"] == 65536 and table["used"] >= 1 and table["active"] >= 1
    assert table["evictions"] == 0
    routes = http_get(gw.admin_port, "/routes").json()["routes"]
    assert [r["rate_limit"] for r in routes if r["prefix"] == "/both"] == [["loose", "tight"]]


# ---- accuracy across workers, worker deaths and reloads ----------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_overload_across_four_workers_passes_rate_times_time_plus_burst(backend: Backend, tmp_path: Path) -> None:
    rate, burst, seconds = 200, 200, 10
    config = limited_config(
        backend, {"acc": {"rate": f"{rate}/s", "burst": burst}}, [{"match": {"prefix": "/"}, "rate_limit": "acc"}],
        workers=4,
    )
    with Gateway(config, tmp_path) as g:
        result = run_load(g.port, "/echo", concurrency=16, duration_s=seconds, max_requests=10**6, keepalive=True)
        # The admin API sums the four workers' counters.
        counters(g, "acc", lambda c: (c["allowed"], c["refused"]) == (result.statuses[200], result.statuses[429]))
    assert result.statuses[429] > rate * seconds, "the load did not overload the limit"
    assert set(result.statuses) == {200, 429}, result.failures[:5]
    assert_within(result.statuses[200], rate * result.elapsed + burst, 0.03, "4 workers")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_killing_a_worker_resets_no_bucket(backend: Backend, tmp_path: Path) -> None:
    # A reset would let another burst through: 400 on top of 1000 is far outside the tolerance.
    rate, burst, seconds = 100, 400, 6
    config = limited_config(
        backend, {"acc": {"rate": f"{rate}/s", "burst": burst}}, [{"match": {"prefix": "/"}, "rate_limit": "acc"}],
        workers=4,
    )
    with Gateway(config, tmp_path) as g:
        load = start_load(g.port, "/echo", concurrency=16, duration_s=seconds, max_requests=10**6, keepalive=True)
        time.sleep(2.0)
        g.kill_worker(g.workers[0])
        g.wait_line(r"exited \(signal SIGKILL\); replacing it", timeout=5.0)
        result = load.result(timeout=seconds + 20)
        # The replacement adds to what the killed worker published (it loses at most its last 0.5 s).
        allowed = counters(g, "acc", lambda c: c["allowed"] >= 0.9 * result.statuses[200])["allowed"]
    assert allowed <= result.statuses[200] + 16  # + what was in flight on the killed connections
    assert_within(result.statuses[200], rate * result.elapsed + burst, 0.03, "a worker killed mid-run")


def test_reload_keeps_unchanged_limits_and_resets_changed_ones(backend: Backend, tmp_path: Path) -> None:
    routes = [{"match": {"prefix": "/a"}, "rate_limit": "a"}, {"match": {"prefix": "/b"}, "rate_limit": "b"}]
    limits = {"a": {"rate": A_MINUTE, "burst": 2}, "b": {"rate": A_MINUTE, "burst": 2}}
    with Gateway(limited_config(backend, limits, routes), tmp_path) as g:
        for path in ("/a/echo", "/b/echo"):
            assert [http_get(g.port, path).status for _ in range(3)] == [200, 200, 429]
        limits["b"] = {"rate": A_MINUTE, "burst": 3}
        g.write_config(limited_config(backend, limits, [*routes, {"match": {"prefix": "/c"}}]))
        assert g.reload() == 2
        assert http_get(g.port, "/a/echo").status == 429  # same limit: same, empty, bucket
        assert [http_get(g.port, "/b/echo").status for _ in range(4)] == [200, 200, 200, 429]


# ---- cluster scope: a real redis-server ---------------------------------------------------------


class RedisServer:
    """A `redis-server` on a free loopback port, without persistence, in its own session."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._await_ready(10.0)

    def _await_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        out = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"Ready to accept connections" not in out:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    self.kill()
                    raise RuntimeError(f"redis-server not ready within {timeout}s: {out[-500:]!r}")
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"redis-server exited with {self.proc.wait()}: {out[-500:]!r}")
                out += chunk
        # Its later log lines go nowhere: nobody reads the pipe, so it must not fill up.
        self.proc.stdout.close()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make sysdeps-test installs it)")
    server = RedisServer(tmp_path)
    yield server
    server.kill()  # SIGKILL ends a paused server too


def cluster_limit(redis: RedisServer, rate: str, burst: int, **over: Any) -> dict[str, Any]:
    return {"rate": rate, "burst": burst, "scope": "cluster", "redis": redis.url, **over}


def test_lease_script_grants_exactly_what_the_bucket_holds(redis_server: RedisServer) -> None:
    import redis

    from fastgw.ratelimit.cluster import LEASE_SCRIPT

    client = redis.Redis(port=redis_server.port, socket_timeout=5)
    lease = client.register_script(LEASE_SCRIPT)
    interval, tau = 10_000.0, 100 * 10_000.0  # 100/s, burst 100, in µs
    granted, left, reset, retry = lease(keys=["k"], args=[interval, tau, 0, 60])
    assert (granted, left, retry) == (60, 40, 0) and 590_000 <= reset <= 600_000
    granted, left, reset, retry = lease(keys=["k"], args=[interval, tau, 0, 60])
    assert (granted, left) == (40, 0) and 0 < retry <= 10_000
    granted, left, reset, retry = lease(keys=["k"], args=[interval, tau, 5, 1])
    assert (granted, left) == (0, 0) and 40_000 < retry <= 60_000  # debt is charged even when empty
    assert 0 < client.pttl("k") <= 1_100  # the key lasts until the bucket is full again
    client.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_two_gateways_share_a_cluster_limit(backend: Backend, redis_server: RedisServer, tmp_path: Path) -> None:
    rate, burst, seconds = 200, 200, 10
    # On the 2-CPU test machine 8 busy workers and the clients can keep Redis off a CPU for more
    # than the default 50 ms; a generous timeout keeps this test about accuracy (the failure policy
    # has tests of its own). `closed` would make any timeout show up as a shortfall, not hide it.
    limit = cluster_limit(redis_server, f"{rate}/s", burst, redis_timeout="1s", on_redis_error="closed")
    config = limited_config(backend, {"shared": limit}, [{"match": {"prefix": "/"}, "rate_limit": "shared"}], workers=4)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with Gateway(config, tmp_path / "one") as one, Gateway(config, tmp_path / "two") as two:
        loads = [
            start_load(g.port, "/echo", concurrency=8, duration_s=seconds, max_requests=10**6, keepalive=True)
            for g in (one, two)
        ]
        results = [load.result(timeout=seconds + 30) for load in loads]
    allowed = sum(r.statuses[200] for r in results)
    assert all(r.statuses[200] > 0 for r in results), "both gateways must take part"
    assert_within(allowed, rate * max(r.elapsed for r in results) + burst, 0.04, "2 gateways × 4 workers")


def timed_get(port: int, path: str) -> tuple[Response, float]:
    start = time.monotonic()
    resp = http_get(port, path, timeout=5.0)
    return resp, time.monotonic() - start


def test_paused_redis_closed_policy_refuses_within_the_timeout_then_recovers(
    backend: Backend, redis_server: RedisServer, tmp_path: Path
) -> None:
    limit = cluster_limit(redis_server, "1000/s", 1000, on_redis_error="closed", redis_timeout="50ms")
    config = limited_config(backend, {"c": limit}, [{"match": {"prefix": "/"}, "rate_limit": "c"}])
    with Gateway(config, tmp_path) as g:
        assert timed_get(g.port, "/echo")[0].status == 200
        report = http_get(g.admin_port, "/ratelimits").json()
        assert report["table"] is None  # no local limit: no shared table
        assert report["limits"]["c"]["redis"] == redis_server.url
        redis_server.pause()
        paused = time.monotonic()
        # The leases of both workers run out (a refill in flight may refuse a few requests the
        # ordinary way), then, once a call has gone unanswered for 50 ms, the policy decides.
        while True:
            resp, took = timed_get(g.port, "/echo")
            assert took < 1.0, "a decision waited for Redis"
            if resp.status == 429 and "unavailable" in resp.json()["error"]["message"]:
                break
            assert resp.status in (200, 429), resp.summary()
            assert time.monotonic() - paused < 2.0, "the closed policy did not apply within 2 s"
        assert int(resp.header("retry-after") or 0) >= 1
        redis_server.resume()
        deadline = time.monotonic() + 5.0
        while timed_get(g.port, "/echo")[0].status != 200:
            assert time.monotonic() < deadline, "no recovery within 5 s of Redis coming back"
            time.sleep(0.05)


def test_dead_redis_open_policy_lets_requests_through_at_once(
    backend: Backend, redis_server: RedisServer, tmp_path: Path
) -> None:
    limit = cluster_limit(redis_server, "5/s", 5, on_redis_error="open", redis_timeout="50ms")
    config = limited_config(backend, {"c": limit}, [{"match": {"prefix": "/"}, "rate_limit": "c"}])
    with Gateway(config, tmp_path) as g:
        redis_server.kill()
        for _ in range(30):  # six bursts' worth: only the open policy lets them all through
            resp, took = timed_get(g.port, "/echo")
            assert resp.status == 200 and took < 1.0, resp.summary()
