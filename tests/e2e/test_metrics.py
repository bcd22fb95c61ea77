"""GET /metrics end to end: known traffic over two workers, a worker killed and replaced, a reload;
then exact counts, parsed with prometheus_client's own text parser, consistent histograms, and
counters that survive both the replacement and the reload."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import Conn, http_get
from tests.support.procs import Backend, Gateway, free_port, start_backend

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with start_backend("metrics") as b:
        yield b


def scrape(g: Gateway) -> tuple[Samples, dict[str, str]]:
    """Every sample of /metrics by (name, sorted labels), and each family's type."""
    resp = http_get(g.admin_port, "/metrics")
    assert resp.status == 200, resp.summary()
    assert resp.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(resp.body.decode()):
        types[family.name] = family.type
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_metrics(g: Gateway, ready: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Scrapes until `ready` holds (workers publish some figures every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = scrape(g)
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError("metrics never reached the expected values:\n" + "\n".join(
                f"{n}{dict(ls)} {v}" for (n, ls), v in sorted(samples.items()) if v))
        time.sleep(0.05)


def gateway_doc(backend: Backend) -> dict[str, Any]:
    return {
        "workers": 2,
        "grace_period": "5s",
        "upstreams": {"backend": {"targets": [f"127.0.0.1:{backend.port}"]}},
        "rate_limits": {"few": {"rate": "1/m", "burst": 3, "key": "ip"}},
        "routes": [
            {"match": {"prefix": "/api"}, "upstream": "backend", "strip_prefix": True},
            {"match": {"prefix": "/limited"}, "upstream": "backend", "strip_prefix": True, "rate_limit": "few"},
        ],
        "access_log": {"path": False},
    }


API = "/api/*"


@pytest.mark.timeout(90)
def test_exact_counts_over_workers_restarts_and_reloads(backend: Backend, tmp_path: Path) -> None:
    with Gateway(gateway_doc(backend), tmp_path) as g:
        ids: set[str] = set()
        api_bytes = 0

        def get(path: str, method: str = "GET", body: bytes = b"") -> int:
            nonlocal api_bytes
            # a new connection each time: the kernel spreads them over the workers' sockets
            with Conn(g.port) as conn:
                resp = conn.request(method, path, body=body)
            ids.add((resp.header("x-request-id") or "").rsplit("-", 1)[0])
            if path.startswith("/api/"):
                api_bytes += len(resp.body)
            return resp.status

        statuses = [get("/api/echo/x") for _ in range(20)]
        statuses += [get("/api/echo/p", "POST", b"payload") for _ in range(6)]
        statuses += [get("/api/status/503") for _ in range(4)]
        statuses += [get("/nowhere") for _ in range(5)]
        statuses += [get("/limited/echo/l") for _ in range(5)]
        assert statuses == [200] * 26 + [503] * 4 + [404] * 5 + [200] * 3 + [429] * 2
        assert len(ids) == 2, f"the traffic should have reached both workers: {ids}"
        target = {"upstream": "backend", "target": f"127.0.0.1:{backend.port}"}
        # Before killing a worker: what it publishes on its tick (targets, rate limits) is out.
        wait_metrics(g, lambda s: value(s, "fastgw_upstream_responses_total", **target) == 33
                     and value(s, "fastgw_ratelimit_decisions_total", limit="few", decision="refused") == 2)

        victim = g.workers[0]
        g.kill_worker(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while victim in g.healthz()["workers"] or len(g.healthz()["workers"]) != 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.05)
        statuses = [get("/api/echo/y") for _ in range(10)]
        statuses += [get("/limited/echo/l") for _ in range(2)]  # refused, just before the reload
        g.reload()
        statuses += [get("/api/echo/z") for _ in range(3)]
        assert statuses == [200] * 10 + [429] * 2 + [200] * 3
        # The old generation drains and exits; its counts move to the master's retired totals.
        wait_metrics(g, lambda s: not value(s, "fastgw_workers", generation="1"))

        with Conn(g.port) as held:  # one open client connection, for the gauge
            resp = held.request("GET", "/api/echo/held")
            assert resp.status == 200
            api_bytes += len(resp.body)
            samples = wait_metrics(g, lambda s: value(s, "fastgw_upstream_responses_total", **target) == 47
                                   and sum(v for (n, _), v in s.items() if n == "fastgw_open_connections") == 1)
        assert value(samples, "fastgw_response_bytes_total", route=API) == api_bytes

    requests = {
        (ls["route"], ls["method"], ls["status_class"]): v
        for (n, labels), v in samples.items() if n == "fastgw_requests_total" for ls in [dict(labels)]
    }
    assert requests == {
        (API, "GET", "2xx"): 20 + 10 + 3 + 1,
        (API, "POST", "2xx"): 6,
        (API, "GET", "5xx"): 4,
        ("(none)", "GET", "4xx"): 5,
        ("/limited/*", "GET", "2xx"): 3,
        ("/limited/*", "GET", "4xx"): 4,
    }
    assert value(samples, "fastgw_worker_restarts_total") == 1
    assert value(samples, "fastgw_reloads_total", result="ok") == 1
    assert value(samples, "fastgw_reloads_total", result="failed") == 0
    assert value(samples, "fastgw_generation") == 2 and value(samples, "fastgw_workers", generation="2") == 2
    assert value(samples, "fastgw_ratelimit_decisions_total", limit="few", decision="allowed") == 3
    assert value(samples, "fastgw_ratelimit_decisions_total", limit="few", decision="refused") == 4
    assert value(samples, "fastgw_upstream_failures_total", **target) == 4  # the 5xx answers
    assert value(samples, "fastgw_upstream_errors_total", kind="connect_error", **target) == 0
    assert value(samples, "fastgw_upstream_healthy", **target) == 1
    assert value(samples, "fastgw_upstream_active_requests", **target) == 0
    assert value(samples, "fastgw_build_info", version=_version(), python=_python()) == 1

    for name, routes in (("fastgw_request_duration_seconds", {API: 44, "(none)": 5, "/limited/*": 7}),
                         ("fastgw_upstream_duration_seconds", {API: 44, "/limited/*": 3})):
        for route, count in routes.items():
            buckets = sorted(
                (float(dict(ls)["le"]), v) for (n, ls), v in samples.items()
                if n == f"{name}_bucket" and dict(ls)["route"] == route
            )
            assert len(buckets) == 16 and buckets[-1] == (float("inf"), count)
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{name}{{route={route}}} buckets are not cumulative: {buckets}"
            assert value(samples, f"{name}_count", route=route) == count
            total = value(samples, f"{name}_sum", route=route)
            assert 0 < total < count * 5.0
        assert {dict(ls)["route"] for (n, ls), _ in samples.items() if n == f"{name}_count"} == set(routes)


def _version() -> str:
    from fastgw._version import __version__

    return __version__


def _python() -> str:
    import platform

    return platform.python_version()


def test_formats_and_disabled_metrics(backend: Backend, tmp_path: Path) -> None:
    doc = gateway_doc(backend) | {"workers": 1, "metrics": {"enabled": False}}
    with Gateway(doc, tmp_path) as g:
        assert http_get(g.port, "/api/echo/x").status == 200
        om = http_get(g.admin_port, "/metrics", headers=[("Accept", "application/openmetrics-text; version=1.0.0")])
        assert (om.header("content-type") or "").startswith("application/openmetrics-text")
        assert om.body.endswith(b"# EOF\n")
        head = _head(g.admin_port, "/metrics")
        assert head.status == 200 and head.body == b""
        samples, types = scrape(g)
        # Off: the master's own figures only; no request is counted.
        assert types["fastgw_requests"] == "counter" and types["fastgw_request_duration_seconds"] == "histogram"
        assert not any(n == "fastgw_requests_total" for n, _ in samples)
        assert value(samples, "fastgw_generation") == 1


def _head(port: int, path: str) -> Any:
    with Conn(port) as conn:
        return conn.request("HEAD", path)


def test_retries_and_upstream_errors_per_target(backend: Backend, tmp_path: Path) -> None:
    """A dead target next to a live one: each request that went to it first is retried on the
    other; the retries per route and per upstream equal the connect errors of the dead target."""
    dead = f"127.0.0.1:{free_port()}"
    live = f"127.0.0.1:{backend.port}"
    doc = gateway_doc(backend) | {"workers": 1}
    doc["upstreams"] = {"backend": {"targets": [dead, live], "balance": "round_robin",
                                    "outlier": "off", "timeouts": {"connect": "1s", "read": "5s"}}}
    with Gateway(doc, tmp_path) as g:
        assert [http_get(g.port, "/api/echo/r").status for _ in range(10)] == [200] * 10
        samples = wait_metrics(g, lambda s: value(
            s, "fastgw_upstream_responses_total", upstream="backend", target=live) == 10)
    errors = value(samples, "fastgw_upstream_errors_total", upstream="backend", target=dead, kind="connect_error")
    assert 1 <= errors <= 10
    assert value(samples, "fastgw_route_retries_total", route=API) == errors
    assert value(samples, "fastgw_upstream_retries_total", upstream="backend") == errors
    assert value(samples, "fastgw_upstream_failures_total", upstream="backend", target=dead) == errors
    assert value(samples, "fastgw_upstream_responses_total", upstream="backend", target=dead) == 0
    assert value(samples, "fastgw_requests_total", route=API, method="GET", status_class="2xx") == 10
