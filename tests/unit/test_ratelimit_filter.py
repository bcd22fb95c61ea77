"""Rate-limit filter, keys, header lines and the cluster lease logic, with fake clocks, a fake
connection/request pair and (for cluster scope) a fake Redis that runs the lease script's
arithmetic in Python: no sockets, no real time."""
from __future__ import annotations

import asyncio
import math
import mmap
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from fastgw._core import BucketTable
from fastgw._proxy import Plan, Request, as_filter
from fastgw.config.model import Config, Match, RateLimit, RateLimitTable, Route
from fastgw.ratelimit import cluster
from fastgw.ratelimit.cluster import ClusterLimit
from fastgw.ratelimit.filter import LocalLimit, RateLimitFilter, route_filter
from fastgw.ratelimit.keys import limit_key, request_key, route_key
from fastgw.ratelimit.shared import COUNTERS, shared_buckets

ROUTES = (Route(0, Match(prefix="/a"), "app"), Route(1, Match(path="/b/{id}", methods=("GET",)), "app"))
S = 1_000_000_000


class Clock:
    """Monotonic time that only moves when told."""

    def __init__(self) -> None:
        self.ns = 10 * S

    def __call__(self) -> int:
        return self.ns

    def seconds(self) -> float:
        return self.ns / S

    def advance(self, seconds: float) -> None:
        self.ns += round(seconds * S)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(clock: Clock) -> Iterator[BucketTable]:
    buf = mmap.mmap(-1, BucketTable.size_for(1024), flags=mmap.MAP_SHARED)
    yield BucketTable(buf, 1024, init=True, clock=clock)


PEER = b"10.0.0.1"


def request(*headers: tuple[str, str], route: int = 0, peer: bytes = PEER) -> Any:
    req = Request.build([(n.encode(), v.encode()) for n, v in headers], peer=peer)
    req.plan = Plan(route)
    return req


def decide(f: Any, peer: bytes | None, req: Any) -> tuple[int, str | None, bytes] | None:
    """Runs a rate-limit filter as the pipeline does (from `peer`), and returns None when the
    request goes on, else the refusal as (status, message, its header lines)."""
    if peer is not None:
        req.peer = peer
    reply = as_filter(f).run_request(req)
    if reply is None:
        return None
    return reply.status, reply.message, b"".join(n + b": " + v + b"\r\n" for n, v in reply.headers)


def spec(name: str = "lim", rate: float = 1.0, burst: int = 3, **kw: Any) -> RateLimit:
    return RateLimit(name=name, rate=rate, burst=burst, **kw)


def lines(remaining: int, reset: int, limit: int = 3) -> bytes:
    return b"ratelimit-limit: %d\r\nratelimit-remaining: %d\r\nratelimit-reset: %d\r\n" % (limit, remaining, reset)


# ---- keys ------------------------------------------------------------------------------------


def test_ip_key_is_the_client_address() -> None:
    assert limit_key(request_key("ip"), request(peer=b"192.0.2.7")) == b"192.0.2.7"


def test_header_key_takes_the_first_value_and_falls_back_to_the_ip() -> None:
    key = request_key("header:x-user")
    assert limit_key(key, request(("X-User", "alice"), ("x-user", "bob"))) == b"alice"
    # Missing or empty: the client IP, in a namespace no header value can reach.
    assert limit_key(key, request(("Other", "1"))) == b"\x0010.0.0.1"
    assert limit_key(key, request(("X-User", ""), ("X-User", "bob"))) == b"\x0010.0.0.1"
    assert limit_key(key, request(("X-User", "10.0.0.1"))) != limit_key(key, request())


def test_route_key_names_what_the_route_matches() -> None:
    a, b = (route_key(r) for r in ROUTES)
    assert a == b"* prefix /a *" and b == b"* path /b/{id} GET"
    assert route_key(Route(5, Match(prefix="/a"), "other")) == a  # position and upstream do not count


# ---- local limits: headers and the 429 contract ------------------------------------------------

# A route with one local limit uses the limit itself as its filter (`route_filter`); the general
# filter must behave the same.
single = pytest.mark.parametrize("make", [route_filter, lambda limits: RateLimitFilter(limits)])


@single
def test_allowed_requests_carry_ratelimit_lines_and_the_refusal_retry_after(
    clock: Clock, table: BucketTable, make: Any
) -> None:
    lim = LocalLimit(spec(), table, ROUTES)
    f = make([lim])
    for remaining, reset in ((2, 1), (1, 2), (0, 3)):
        req = request()
        assert decide(f, None, req) is None
        assert req.resp_extra == lines(remaining, reset)
    req = request()
    status, message, head = decide(f, None, req)  # type: ignore[misc]
    assert (status, message) == (429, None)
    assert head == b"retry-after: 1\r\n" + lines(0, 3)
    assert req.resp_extra == b""  # refused: the lines travel with the 429 only
    clock.advance(0.5)
    assert decide(f, None, request())[2].startswith(b"retry-after: 1\r\n")  # 0.5 s, rounded up
    clock.advance(0.5)
    assert decide(f, None, request()) is None
    assert lim.stats() == {"allowed": 4, "refused": 2, "shadow_refused": 0}


@single
def test_large_numbers_are_rendered_whole(clock: Clock, table: BucketTable, make: Any) -> None:
    f = make([LocalLimit(spec(rate=1.0, burst=1_000_000_000), table, ROUTES)])
    req = request()
    assert decide(f, None, req) is None
    assert req.resp_extra == lines(999_999_999, 1, limit=1_000_000_000)


@single
def test_retry_after_rounds_up_whole_seconds(clock: Clock, table: BucketTable, make: Any) -> None:
    f = make([LocalLimit(spec(rate=0.25, burst=1), table, ROUTES)])
    assert decide(f, None, request()) is None
    clock.advance(0.1)
    assert decide(f, None, request())[2] == b"retry-after: 4\r\n" + lines(0, 4, limit=1)


@single
def test_keys_have_separate_buckets(clock: Clock, table: BucketTable, make: Any) -> None:
    f = make([LocalLimit(spec(burst=1, key="header:x-user"), table, ROUTES)])
    assert decide(f, None, request(("X-User", "a"))) is None
    assert decide(f, None, request(("X-User", "b"))) is None
    assert decide(f, None, request(("X-User", "a"))) is not None
    assert decide(f, None, request()) is None  # no header: the IP's bucket
    assert decide(f, b"10.0.0.2", request()) is None
    assert decide(f, None, request()) is not None


@single
def test_route_key_is_one_bucket_per_route(clock: Clock, table: BucketTable, make: Any) -> None:
    f = make([LocalLimit(spec(burst=1, key="route"), table, ROUTES)])
    assert decide(f, b"1.1.1.1", request(route=0)) is None
    assert decide(f, b"2.2.2.2", request(route=0)) is not None
    assert decide(f, b"2.2.2.2", request(route=1)) is None


def test_limits_with_the_same_keys_do_not_share_buckets(clock: Clock, table: BucketTable) -> None:
    one = RateLimitFilter([LocalLimit(spec("one", burst=1), table, ROUTES)])
    two = RateLimitFilter([LocalLimit(spec("two", burst=1), table, ROUTES)])
    assert decide(one, None, request()) is None
    assert decide(two, None, request()) is None


@single
def test_shadow_mode_counts_and_reports_but_never_refuses(clock: Clock, table: BucketTable, make: Any) -> None:
    lim = LocalLimit(spec(burst=2, enforce=False), table, ROUTES)
    f = make([lim])
    extras = []
    for _ in range(4):
        req = request()
        assert decide(f, None, req) is None
        extras.append(req.resp_extra)
    assert extras[-1] == lines(0, 2, limit=2)
    assert lim.stats() == {"allowed": 2, "refused": 0, "shadow_refused": 2}


# ---- several limits on a route ----------------------------------------------------------------


def test_a_refusal_takes_no_token_from_the_other_limits(clock: Clock, table: BucketTable) -> None:
    tight = LocalLimit(spec("tight", rate=1.0, burst=1), table, ROUTES)
    loose = LocalLimit(spec("loose", rate=1.0, burst=10), table, ROUTES)
    f = RateLimitFilter([loose, tight])
    req = request()
    assert decide(f, None, req) is None
    assert req.resp_extra == lines(0, 1, limit=1)  # the most restrictive limit is reported
    for _ in range(5):
        status, _, head = decide(f, None, request())  # type: ignore[misc]
        assert status == 429 and b"ratelimit-limit: 1\r\n" in head
    key = loose.key(request())
    assert loose.check(key) and loose.remaining == 9  # only the allowed request was charged
    assert (loose.allowed, loose.refused, tight.allowed, tight.refused) == (1, 0, 1, 5)


def test_retry_after_is_that_of_the_last_limit_to_allow(clock: Clock, table: BucketTable) -> None:
    fast = LocalLimit(spec("fast", rate=1.0, burst=1), table, ROUTES)
    slow = LocalLimit(spec("slow", rate=0.1, burst=1), table, ROUTES)
    f = RateLimitFilter([fast, slow])
    assert decide(f, None, request()) is None
    assert decide(f, None, request())[2].startswith(b"retry-after: 10\r\nratelimit-limit: 1\r\n")


def test_shadow_limits_beside_enforced_ones(clock: Clock, table: BucketTable) -> None:
    shadow = LocalLimit(spec("shadow", burst=1, enforce=False), table, ROUTES)
    enforced = LocalLimit(spec("enforced", burst=3), table, ROUTES)
    f = RateLimitFilter([shadow, enforced])
    for _ in range(3):
        assert decide(f, None, request()) is None
    assert decide(f, None, request())[0] == 429
    assert (shadow.allowed, shadow.shadow_refused, enforced.allowed, enforced.refused) == (1, 2, 3, 1)


# ---- cluster scope: leases, credit and the Redis failure policy --------------------------------


class FakeRedis:
    """Runs `LEASE_SCRIPT`'s arithmetic in Python on the test's clock; `fail` makes calls raise,
    `stall` makes them never answer."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.tat: dict[str, float] = {}
        self.calls: list[tuple[str, int, int]] = []
        self.fail = False
        self.stall = False

    async def script_load(self, script: str) -> str:
        assert script == cluster.LEASE_SCRIPT
        return "sha"

    def pipeline(self, transaction: bool) -> FakeRedis.Pipe:
        assert transaction is False
        return FakeRedis.Pipe(self)

    class Pipe:
        def __init__(self, redis: FakeRedis) -> None:
            self.redis = redis
            self.queued: list[tuple[Any, ...]] = []

        def evalsha(self, sha: str, nkeys: int, key: str, interval: str, tau: str, debt: int, want: int) -> None:
            self.queued.append((key, float(interval), float(tau), debt, want))

        async def execute(self, raise_on_error: bool) -> list[Any]:
            if self.redis.stall:
                await asyncio.sleep(3600)
            if self.redis.fail:
                raise ConnectionError("refused")
            return [self.redis.lease(*q) for q in self.queued]

    def lease(self, key: str, interval: float, tau: float, debt: int, want: int) -> list[int]:
        self.calls.append((key, debt, want))
        now = self.clock.ns / 1000
        tat = max(self.tat.get(key, 0.0), now) + debt * interval
        grant = max(min(want, math.floor((now + tau - tat) / interval + 1e-6)), 0)
        tat += grant * interval
        left = max(math.floor((now + tau - tat) / interval + 1e-6), 0)
        self.tat[key] = tat
        retry = tat + interval - tau - now if left < 1 else 0
        return [grant, left, math.ceil(tat - now), math.ceil(retry)]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending))
    loop.close()


def cluster_limit(loop: asyncio.AbstractEventLoop, clock: Clock, redis: FakeRedis, **kw: Any) -> ClusterLimit:
    kw.setdefault("rate", 100.0)
    kw.setdefault("burst", 100)
    s = spec("c", scope="cluster", redis="redis://127.0.0.1:1/0", **kw)
    return ClusterLimit(s, loop, ROUTES, client=redis, clock=clock.seconds)


def settle(loop: asyncio.AbstractEventLoop) -> None:
    """Let queued lease calls run (the fake answers at once)."""
    for _ in range(5):
        loop.run_until_complete(asyncio.sleep(0))


def test_lease_size_is_20ms_of_rate_within_a_quarter_burst(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    redis = FakeRedis(clock)
    assert cluster_limit(loop, clock, redis).lease == 2
    assert cluster_limit(loop, clock, redis, rate=10_000.0, burst=10_000).lease == 200
    assert cluster_limit(loop, clock, redis, rate=10_000.0, burst=20).lease == 5
    assert cluster_limit(loop, clock, redis, rate=1.0, burst=1).lease == 1


def test_new_keys_go_on_credit_then_use_leases(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    redis = FakeRedis(clock)
    lim = cluster_limit(loop, clock, redis, rate=1000.0, burst=1000)  # lease of 20
    f = RateLimitFilter([lim])
    for _ in range(20):
        assert decide(f, None, request()) is None  # on credit: nothing waits for Redis
    assert decide(f, None, request())[0] == 429  # a lease of debt at most
    settle(loop)
    assert redis.calls == [(redis.calls[0][0], 20, 20)]  # debt charged, a lease granted
    req = request()
    assert decide(f, None, req) is None
    assert req.resp_extra.startswith(b"ratelimit-limit: 1000\r\nratelimit-remaining: 979\r\n")


def test_empty_bucket_refuses_and_asks_again_when_a_token_is_due(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    redis = FakeRedis(clock)
    lim = cluster_limit(loop, clock, redis, rate=10.0, burst=4)  # lease of 1
    f = RateLimitFilter([lim])
    allowed = 0
    for _ in range(50):
        allowed += decide(f, None, request()) is None
        settle(loop)
    assert allowed == 4
    calls = len(redis.calls)
    status, _, head = decide(f, None, request())  # type: ignore[misc]
    assert status == 429 and head.startswith(b"retry-after: 1\r\n")
    settle(loop)
    assert len(redis.calls) == calls  # no token can be there yet: Redis is not asked
    clock.advance(0.1)
    assert decide(f, None, request())[0] == 429  # refused, but now it asks
    settle(loop)
    assert len(redis.calls) == calls + 1
    assert decide(f, None, request()) is None


def test_steady_overload_lets_through_rate_times_time_plus_burst(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    redis = FakeRedis(clock)
    workers = [RateLimitFilter([cluster_limit(loop, clock, redis, rate=200.0, burst=200)]) for _ in range(8)]
    allowed = 0
    for step in range(10_000):  # 10 s, every worker gets a request each ms
        clock.advance(0.001)
        for f in workers:
            allowed += decide(f, None, request()) is None
        if step % 3 == 0:
            settle(loop)
    settle(loop)
    lease = workers[0].limits[0].lease  # type: ignore[attr-defined]
    assert abs(allowed - (200 * 10 + 200)) <= 8 * lease


def test_a_cluster_limit_refusing_at_the_check_still_refills(
    loop: asyncio.AbstractEventLoop, clock: Clock, table: BucketTable
) -> None:
    redis = FakeRedis(clock)
    shared = cluster_limit(loop, clock, redis, rate=10.0, burst=2)
    f = RateLimitFilter([LocalLimit(spec("local", burst=100), table, ROUTES), shared])
    statuses = []
    for _ in range(6):
        statuses.append(decide(f, None, request()) is None)
        settle(loop)
    assert statuses[:2] == [True, True] and not any(statuses[3:])
    clock.advance(0.2)
    decide(f, None, request())  # refused at the check, which asks Redis again
    settle(loop)
    assert decide(f, None, request()) is None


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_redis_down_applies_the_policy_and_recovers(
    loop: asyncio.AbstractEventLoop, clock: Clock, policy: str
) -> None:
    redis = FakeRedis(clock)
    lim = cluster_limit(loop, clock, redis, rate=100.0, burst=100, on_redis_error=policy)
    f = RateLimitFilter([lim])
    assert decide(f, None, request()) is None
    settle(loop)
    redis.fail = True
    for _ in range(lim.lease):  # until the failure is known, leased tokens and credit decide
        assert decide(f, None, request()) is None
        settle(loop)
    assert lim.down
    reply = decide(f, None, request())
    if policy == "open":
        assert reply is None and lim.fail_open == 1
    else:
        assert reply is not None and reply[0] == 429 and lim.fail_closed == 1
        assert reply[1] == "the rate limiter's store is unavailable; refused by on_redis_error: closed"
    redis.fail = False
    clock.advance(cluster.BACKOFF_MIN)
    decide(f, None, request())  # due for a probe
    settle(loop)
    assert not lim.down
    assert decide(f, None, request()) is None


def test_a_stalled_redis_is_given_up_after_redis_timeout(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    redis = FakeRedis(clock)
    redis.stall = True
    lim = cluster_limit(loop, clock, redis, on_redis_error="closed", redis_timeout=0.05)
    f = RateLimitFilter([lim])
    assert decide(f, None, request()) is None
    task = lim._task
    assert task is not None
    start = loop.time()
    loop.run_until_complete(task)
    assert loop.time() - start < 1.0
    assert lim.down and lim.redis_errors == 1
    assert decide(f, None, request())[0] == 429


def test_long_keys_are_kept_as_digests(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    lim = cluster_limit(loop, clock, FakeRedis(clock), key="header:x-user")
    f = RateLimitFilter([lim])
    long_value = "u" * 4000
    assert decide(f, None, request(("X-User", long_value))) is None
    assert decide(f, None, request(("X-User", long_value))) is None  # the same entry, found again
    assert [len(k) for k in lim.entries] == [16]


def test_idle_keys_are_dropped(loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
    redis = FakeRedis(clock)
    lim = cluster_limit(loop, clock, redis)
    f = RateLimitFilter([lim])
    decide(f, b"1.1.1.1", request())
    settle(loop)
    decide(f, b"2.2.2.2", request())
    clock.advance(cluster.IDLE + 1)
    lim.sweep()  # 2.2.2.2 still owes its credit: charged first
    assert set(lim.entries) == {b"2.2.2.2"}
    settle(loop)
    lim.sweep()
    assert not lim.entries


# ---- the master's shared state across generations ---------------------------------------------


def config_with(*limits: RateLimit, capacity: int = 1024, workers: int = 2) -> Config:
    return Config(
        source="test", workers=workers, rate_limits={lim.name: lim for lim in limits},
        rate_limit_table=RateLimitTable(capacity),
    )


def test_the_bucket_table_outlives_generations_while_it_fits() -> None:
    first = shared_buckets(config_with(spec("a")), None)
    assert first is not None and first.table is not None
    same = shared_buckets(config_with(spec("a"), spec("b")), first)
    assert same is not None and same.table is first.table and same is not first  # fresh counters
    resized = shared_buckets(config_with(spec("a"), capacity=2048), same)
    assert resized is not None and resized.table is not first.table
    cluster_only = shared_buckets(config_with(spec("c", scope="cluster", redis="redis://h")), resized)
    assert cluster_only is not None and cluster_only.table is None and cluster_only.attach() is None
    assert shared_buckets(config_with(), cluster_only) is None


def test_counters_are_summed_over_worker_rows() -> None:
    state = shared_buckets(config_with(spec("a"), spec("b")), None)
    assert state is not None
    n = len(COUNTERS)
    state.row(0)[0] = 3  # a.allowed in slot 0
    state.row(1)[0] = 4
    state.row(1)[n + 1] = 5  # b.refused in slot 1
    totals = state.totals()
    assert totals["a"]["allowed"] == 7 and totals["b"]["refused"] == 5
    assert sum(totals["a"].values()) + sum(totals["b"].values()) == 12


def test_admin_view_hides_the_redis_password() -> None:
    from fastgw.server.admin import ratelimits_table

    limit = spec("c", scope="cluster", redis="redis://app:s3cret@10.0.0.5:6379/2", on_redis_error="closed")
    config = config_with(limit)
    master = SimpleNamespace(config=config, current=SimpleNamespace(buckets=shared_buckets(config, None)))
    view = ratelimits_table(master)  # type: ignore[arg-type]
    assert view["limits"]["c"]["redis"] == "redis://***@10.0.0.5:6379/2"  # type: ignore[index]
    assert view["limits"]["c"]["counters"]["allowed"] == 0  # type: ignore[index]
    assert view["table"] is None
