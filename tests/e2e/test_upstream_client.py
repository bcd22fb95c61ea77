"""The gateway's internal HTTP client (`fastgw.upstream.client`) against the real test backend
process: framing by httptools, keep-alive reuse, bounds, timeouts, retries by the upstream's
policy, and the attempt reports (`begin`, then one of `on_success` / `on_failure` /
`on_cancel`) that health, outlier ejection and the EWMA read. The client runs in this process on a
uvloop loop; the backend is a separate process on loopback."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import uvloop

from fastgw._proxy import Clock, TargetState
from fastgw.config.model import Address, Retries, Target, Timeouts, Upstream
from fastgw.upstream.client import UpstreamClient, UpstreamError
from fastgw.upstream.pool import UpstreamGroup
from tests.support.backend import body_bytes
from tests.support.procs import Backend, free_port

pytestmark = pytest.mark.e2e

T = TypeVar("T")


def upstream(*ports: int, read: float = 3.0, **kw: Any) -> Upstream:
    return Upstream(
        name="app",
        targets=tuple(Target(Address("127.0.0.1", p)) for p in ports),
        timeouts=Timeouts(connect=1.0, read=read),
        balance="round_robin",
        **kw,
    )


def run(up: Upstream, body: Callable[[UpstreamClient, UpstreamGroup], Awaitable[T]]) -> T:
    async def main() -> T:
        loop = asyncio.get_running_loop()
        group = UpstreamGroup(up, Clock(time.monotonic()), loop)
        client = UpstreamClient(loop, {up.name: up.host_header})
        try:
            return await asyncio.wait_for(body(client, group), 20)
        finally:
            client.close()

    return uvloop.run(main())


def unused(pool: TargetState) -> bool:
    return pool.active == 0


def test_get_returns_status_headers_and_body_and_reuses_the_connection(backend: Backend) -> None:
    before = backend.stats()["connections"]

    async def body(client: UpstreamClient, group: UpstreamGroup) -> list[Any]:
        out = []
        for i in range(3):
            r = await client.request(group, b"GET", b"/echo?i=%d" % i, [(b"X-Call", b"c%d" % i)], timeout=2)
            out.append(r)
        assert client.idle_connections() == 1
        return out

    responses = run(upstream(backend.port), body)
    assert backend.stats()["connections"] - before == 2  # ours, and the /stats request itself
    for i, r in enumerate(responses):
        assert r.status == 200 and r.attempts == 1
        assert r.header(b"content-type") == b"application/json"
        echo = json.loads(r.body)
        assert echo["target"] == f"/echo?i={i}"
        sent = {n.lower(): v for n, v in echo["headers"]}
        assert sent["x-call"] == f"c{i}"
        assert sent["host"] == f"127.0.0.1:{backend.port}"


def test_host_header_of_the_upstream_or_of_the_call(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[bytes, bytes]:
        a = await client.request(group, b"GET", b"/echo")
        b = await client.request(group, b"GET", b"/echo", host=b"api.example")
        return a.body, b.body

    a, b = run(upstream(backend.port, host_header="users.internal"), body)
    assert {n.lower(): v for n, v in json.loads(a)["headers"]}["host"] == "users.internal"
    assert {n.lower(): v for n, v in json.loads(b)["headers"]}["host"] == "api.example"


def test_each_attempt_is_reported_to_its_target(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> TargetState:
        await client.request(group, b"GET", b"/status/200")
        await client.request(group, b"GET", b"/status/503")
        return group.pools[0]

    pool = run(upstream(backend.port), body)
    assert pool.completed == 2 and pool.failed == 1 and pool.failures == 1  # the 503 counts for outliers
    assert pool.active == 0 and pool.ewma > 0


def test_post_body_is_sent_with_its_length(backend: Backend) -> None:
    payload = body_bytes(5000)

    async def body(client: UpstreamClient, group: UpstreamGroup) -> Any:
        return json.loads((await client.request(group, b"POST", b"/echo", body=payload)).body)

    echo = run(upstream(backend.port), body)
    assert echo["method"] == "POST" and echo["body_length"] == 5000 and not echo["chunked"]


@pytest.mark.parametrize("path", ["/chunked/70000/7", "/close-delimited/3000", "/early-hints"])
def test_framings_chunked_close_delimited_and_informational(backend: Backend, path: str) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> Any:
        return await client.request(group, b"GET", path.encode())

    r = run(upstream(backend.port), body)
    assert r.status == 200
    if path.startswith("/chunked"):
        assert r.body == body_bytes(70000)
    elif path.startswith("/close"):
        assert r.body == body_bytes(3000)
    else:
        assert json.loads(r.body) == {"early_hints": True}


def test_head_ends_at_the_head(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> Any:
        return await client.request(group, b"HEAD", b"/head-test", timeout=2)

    r = run(upstream(backend.port), body)
    assert r.status == 200 and r.body == b"" and r.header(b"content-length") == b"1234"


@pytest.mark.parametrize(
    ("path", "limit"), [("/bytes/2000", 1999), ("/chunked/5000/5", 1000), ("/close-delimited/5000", 1000)]
)
def test_a_body_over_max_body_is_too_large(backend: Backend, path: str, limit: int) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[UpstreamError, TargetState]:
        with pytest.raises(UpstreamError) as info:
            await client.request(group, b"GET", path.encode(), max_body=limit)
        # exactly at the bound is fine
        ok = await client.request(group, b"GET", b"/bytes/%d" % limit, max_body=limit)
        assert len(ok.body) == limit
        return info.value, group.pools[0]

    err, pool = run(upstream(backend.port), body)
    assert err.kind == "too_large" and err.status == 502 and err.attempts == 1
    assert pool.failed == 0 and pool.active == 0  # our bound, not the target's fault


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/garbage", "protocol_error"),
        ("/switch-protocols", "protocol_error"),
        ("/bad-length", "reset"),
        ("/reset-before-head", "reset"),
        ("/reset-mid-body", "reset"),
    ],
)
def test_broken_responses_are_errors(backend: Backend, path: str, kind: str) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[UpstreamError, TargetState]:
        with pytest.raises(UpstreamError) as info:
            await client.request(group, b"GET", path.encode(), timeout=3)
        return info.value, group.pools[0]

    err, pool = run(upstream(backend.port), body)
    assert err.kind == kind and err.status == 502
    assert str(backend.port) not in err.message and err.target == f"127.0.0.1:{backend.port}"
    assert pool.failed == 1 and pool.active == 0


def test_bytes_after_a_response_are_never_taken_for_the_next_one(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> list[bytes]:
        out = []
        for _ in range(3):
            out.append((await client.request(group, b"GET", b"/extra-bytes")).body)
            out.append((await client.request(group, b"GET", b"/bytes/8")).body)
        return out

    assert run(upstream(backend.port), body) == [b"complete", body_bytes(8)] * 3


def test_a_connection_the_upstream_closed_is_not_a_failure(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[list[int], TargetState]:
        statuses = []
        for _ in range(4):
            statuses.append((await client.request(group, b"GET", b"/close-silently")).status)
        return statuses, group.pools[0]

    statuses, pool = run(upstream(backend.port), body)
    assert statuses == [200] * 4 and pool.failed == 0


def test_call_timeout_and_read_timeout(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[list[float], list[str], TargetState]:
        times, kinds = [], []
        for path, timeout in ((b"/sleep/3000", 0.3), (b"/slow-body/3000", None)):
            t0 = time.monotonic()
            with pytest.raises(UpstreamError) as info:
                await client.request(group, b"GET", path, timeout=timeout)
            times.append(time.monotonic() - t0)
            kinds.append(info.value.kind)
        return times, kinds, group.pools[0]

    times, kinds, pool = run(upstream(backend.port, read=0.4), body)
    assert kinds == ["timeout", "timeout"]
    assert 0.25 < times[0] < 1.5, times  # the call's own timeout
    assert 0.35 < times[1] < 1.5, times  # timeouts.read as the gap between body reads
    assert pool.failed == 2 and pool.active == 0


def test_connect_errors_fail_over_to_another_target(backend: Backend) -> None:
    dead = free_port()

    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[list[int], list[int], list[int]]:
        attempts = []
        for _ in range(6):
            attempts.append((await client.request(group, b"GET", b"/status/200", timeout=3)).attempts)
        return attempts, [p.failed for p in group.pools], [p.completed for p in group.pools]

    attempts, failed, completed = run(upstream(dead, backend.port), body)
    assert set(attempts) <= {1, 2} and 2 in attempts
    assert failed[0] >= 1 and completed[1] == 6


def test_retry_on_a_status_goes_to_another_target_and_returns_the_last_answer(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[int, int, list[int]]:
        r = await client.request(group, b"GET", b"/status/503", timeout=3)
        return r.status, r.attempts, [p.completed for p in group.pools]

    up = upstream(backend.port, backend.port, retries=Retries(attempts=2, on=(503,)))
    status, attempts, completed = run(up, body)
    assert status == 503 and attempts == 2 and completed == [1, 1]


def test_reset_is_retried_only_when_the_policy_says_so(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> int:
        with pytest.raises(UpstreamError) as info:
            await client.request(group, b"GET", b"/reset-before-head", timeout=3)
        return info.value.attempts

    assert run(upstream(backend.port, backend.port), body) == 1
    assert run(upstream(backend.port, backend.port, retries=Retries(attempts=3, on=("reset",))), body) == 3


def test_no_usable_target_is_no_target(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> UpstreamError:
        group.pools[0].usable = False
        with pytest.raises(UpstreamError) as info:
            await client.request(group, b"GET", b"/echo")
        return info.value

    err = run(upstream(backend.port), body)
    assert err.kind == "no_target" and err.status == 503 and err.attempts == 0


def test_a_cancelled_call_is_reported_as_cancelled(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[TargetState, int]:
        task = asyncio.ensure_future(client.request(group, b"GET", b"/sleep/3000"))
        await asyncio.sleep(0.2)
        assert group.pools[0].active == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return group.pools[0], client.idle_connections()

    pool, idle = run(upstream(backend.port), body)
    assert pool.active == 0 and pool.failed == 0 and pool.completed == 0 and idle == 0


@pytest.mark.parametrize(
    ("target", "headers"),
    [(b"/echo\r\nX-Evil: 1", []), (b"/echo x", []), (b"echo", []), (b"/echo", [(b"X-A", b"v\r\nX-Evil: 1")])],
)
def test_values_that_could_split_the_request_are_refused(backend: Backend, target: bytes, headers: Any) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> None:
        with pytest.raises(ValueError):
            await client.request(group, b"GET", target, headers)
        assert group.pools[0].active == 0

    run(upstream(backend.port), body)


def test_concurrent_calls_use_separate_connections(backend: Backend) -> None:
    async def body(client: UpstreamClient, group: UpstreamGroup) -> tuple[list[int], int]:
        rs = await asyncio.gather(*(client.request(group, b"GET", b"/sleep/100") for _ in range(5)))
        return [r.status for r in rs], client.idle_connections()

    statuses, idle = run(upstream(backend.port), body)
    assert statuses == [200] * 5 and idle == 5
