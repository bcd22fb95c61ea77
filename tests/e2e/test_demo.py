"""`make run` is `fastgw demo`: its backends answer from the gateway's first request on, every route
of the built-in config shows the feature the printed tour says it shows, and the tour has a command
for every route (so that the config and the tour cannot drift apart)."""

from __future__ import annotations

import gzip
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from fastgw.config.load import load_text
from fastgw.demo import BACKENDS, _config_text
from tests.support.client import LOOPBACK, Conn, http_get
from tests.support.procs import Gateway, free_port

pytestmark = pytest.mark.e2e

API_KEY = "demo-key-0123456789"


def free_run(n: int) -> int:
    """The first of `n` consecutive ports that were free a moment ago."""
    for _ in range(50):
        first = free_port()
        try:
            holders = []
            for port in range(first, first + n):
                s = socket.socket()
                holders.append(s)
                s.bind((LOOPBACK, port))
            return first
        except OSError:
            continue
        finally:
            for s in holders:
                s.close()
    raise AssertionError(f"no {n} consecutive free ports")


class Demo(Gateway):
    def __init__(self, workdir: Path) -> None:
        self.backend_port = free_run(len(BACKENDS))
        port, admin = free_port(), free_port()
        super().__init__(
            {"listen": [{"address": f"{LOOPBACK}:{port}"}], "admin": {"address": f"{LOOPBACK}:{admin}"}}, workdir,
            command=("demo", "--port", str(port), "--admin-port", str(admin), "--backend-port", str(self.backend_port)),
        )

    def tour(self) -> str:
        return self.stdout_path.read_text()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with Demo(tmp_path_factory.mktemp("demo")) as d:
        yield d


def test_the_first_requests_after_ready_reach_every_backend(demo: Demo) -> None:
    """The gateway used to start beside backends still importing: its first requests got 502."""
    users = http_get(demo.port, "/api/users/1")
    orders = http_get(demo.port, "/api/orders/1/items")
    assert (users.status, orders.status) == (200, 200), (users.summary(), orders.summary())
    assert users.json()["service"].startswith("users-") and orders.json()["service"] == "orders"


def test_routing_prefix_stripping_and_gateway_errors(demo: Demo) -> None:
    r = http_get(demo.port, "/api/users/42")
    assert r.status == 200 and r.json()["path"] == "/42" and r.json()["x-gateway"] == "fastgw"
    assert r.header("server") is None  # removed by the route's response header edit
    with Conn(demo.port) as c:
        r = c.request("DELETE", "/api/orders/7/items")
    assert r.status == 405 and r.header("allow") == "GET"
    r = http_get(demo.port, "/nowhere")
    assert r.status == 404 and r.json()["error"]["code"] == "route_not_found"


def test_the_rate_limit_refuses_once_the_burst_is_spent(demo: Demo) -> None:
    statuses = [http_get(demo.port, "/api/orders/7/items").status for _ in range(14)]
    assert statuses[0] == 200 and 429 in statuses and set(statuses) == {200, 429}, statuses
    assert statuses.index(429) >= 8, statuses  # a burst of 10 (one second may add one)


def test_an_api_key_names_the_consumer(demo: Demo) -> None:
    assert http_get(demo.port, "/api/account").status == 401
    assert http_get(demo.port, "/api/account", {"X-API-Key": "wrong-key-0123456789"}).status == 401
    r = http_get(demo.port, "/api/account", {"X-API-Key": API_KEY})
    assert r.status == 200 and r.json()["x-consumer"] == "demo-client"


def test_the_second_request_is_a_cache_hit(demo: Demo) -> None:
    first = http_get(demo.port, "/api/catalog/2")
    second = http_get(demo.port, "/api/catalog/2")
    assert "stored" in (first.header("cache-status") or ""), first.summary()
    assert "; hit" in (second.header("cache-status") or ""), second.summary()
    assert second.json()["x-request-id"] == first.json()["x-request-id"]  # the stored answer


def test_aggregation_merges_two_calls_and_compresses(demo: Demo) -> None:
    r = http_get(demo.port, "/api/dashboard/7", {"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.header("content-encoding") == "gzip", r.summary()
    merged = json.loads(gzip.decompress(r.body))
    assert merged["user"] == {"service": merged["user"]["service"], "path": "/users/7"}
    assert merged["orders"] == {"service": "orders", "path": "/orders?user=7"}


def test_cors_preflights_are_answered_by_the_gateway(demo: Demo) -> None:
    with Conn(demo.port) as c:
        ok = c.request("OPTIONS", "/api/public/x",
                       {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"})
        refused = c.request("OPTIONS", "/api/public/x",
                            {"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"})
    assert ok.status == 204 and ok.header("access-control-allow-origin") == "https://app.example.com"
    assert refused.status == 403


def test_access_lists_fixed_responses_and_redirects(demo: Demo) -> None:
    assert http_get(demo.port, "/internal").status == 403
    r = http_get(demo.port, "/maintenance")
    assert (r.status, r.body, r.header("retry-after")) == (503, b"back soon\n", "120")
    r = http_get(demo.port, "/v1/users/7?x=1")
    assert r.status == 308 and r.header("location") == "/api/users/7?x=1"


def test_the_websocket_bridge_posts_each_message_to_a_backend(demo: Demo) -> None:
    with connect(f"ws://{LOOPBACK}:{demo.port}/ws", open_timeout=5, close_timeout=5) as ws:
        ws.send("hello from the test")
        answer = json.loads(ws.recv(timeout=5))
    assert answer["method"] == "POST" and answer["path"] == "/ws/message"
    assert answer["body"] == "hello from the test"


def test_the_tour_has_a_command_for_every_route(demo: Demo) -> None:
    config = load_text(_config_text(demo.port, demo.admin_port, "demo.pid", demo.backend_port), "demo.yaml", "/tmp")
    tour = demo.tour()
    for route in config.routes:
        pattern = route.match.path or route.match.prefix or ""
        first_literal = re.split(r"\{", pattern, maxsplit=1)[0]
        assert f"127.0.0.1:{demo.port}{first_literal}" in tour, f"no command for the route {pattern!r}:\n{tour}"
