"""Metrics without processes: the compiled recorder's adds into a row (method and status classes,
latency buckets, unrouted requests, metrics off), and the master's sums over slots, its gauges of
live slots only, and the retirement of a generation's table into totals that survive it."""

from __future__ import annotations

import time

from fastgw._proxy import LATENCY_BOUNDS, METRICS_LAYOUT, MetricsRecorder, Plan, Request, WallClock
from fastgw.config.load import load_text
from fastgw.metrics.layout import ROUTE_STRIDE, TARGET_COUNTERS, TARGET_GAUGES, Layout
from fastgw.metrics.shared import MetricsHub, SharedMetrics

L = METRICS_LAYOUT
CONFIG = load_text(
    "listen: [{address: '127.0.0.1:8080'}]\n"
    "upstreams: {app: {targets: ['127.0.0.1:9001']}}\n"
    "routes:\n"
    "  - {match: {prefix: /api}, upstream: app}\n"
    "  - {match: {path: /health}, upstream: app}\n",
    "g.yaml", "/",
)


def request(method: bytes, status: int, plan: Plan | None, age: float) -> Request:
    req = Request.build(method=method, path=b"/api/x")
    req.status = status
    req.plan = plan
    req.sent = 10
    # Request.build stamps t0 now; for a known duration, real time passes before it is recorded.
    deadline = time.monotonic() + age
    while time.monotonic() < deadline:
        pass
    return req


def test_recorder_adds_into_the_row() -> None:
    lay = Layout(CONFIG)
    row = memoryview(bytearray(lay.width * 8)).cast("q")
    rec = MetricsRecorder(WallClock(), row, len(lay.routes), lay.retries_at, {})
    api, health = Plan(0, "app"), Plan(1, "app")
    for req in (
        request(b"GET", 200, api, 0), request(b"GET", 200, api, 0), request(b"POST", 201, api, 0),
        request(b"PURGE", 503, api, 0), request(b"GET", 404, None, 0), request(b"DELETE", 499, health, 0.003),
    ):
        rec.record_request(req)

    def count(route: int, method: int, cls: int) -> int:
        return row[route * ROUTE_STRIDE + L["requests"] + method * L["classes"] + cls]

    assert count(0, 0, 2) == 2  # GET 2xx
    assert count(0, 2, 2) == 1  # POST 2xx
    assert count(0, 7, 5) == 1  # other method, 5xx
    assert count(2, 0, 4) == 1  # no route: the block after the last route
    assert count(1, 4, 4) == 1  # DELETE 499 is 4xx
    assert sum(row[L["requests"]: L["duration"]]) == 4
    buckets = row[ROUTE_STRIDE + L["duration"]: ROUTE_STRIDE + L["duration"] + L["buckets"]]
    us = row[ROUTE_STRIDE + L["duration_sum"]]
    assert us >= 3000 and sum(buckets) == 1
    bounds = [0, *(int(b * 1e6) for b in LATENCY_BOUNDS), 1 << 62]
    i = buckets.tolist().index(1)  # the bucket whose bounds hold the duration: (2.5 ms, 5 ms] or later
    assert i >= 4 and bounds[i] < us <= bounds[i + 1]
    assert row[L["bytes"]] == 40 and sum(row[L["upstream"]: L["upstream"] + L["buckets"]]) == 0

    off = MetricsRecorder(WallClock())  # metrics: {enabled: false}
    off.record_request(request(b"GET", 200, api, 0))  # nothing to write into, nothing fails


def _write(table: SharedMetrics, slot: int, values: dict[int, int]) -> None:
    view = table.row(slot)
    for offset, value in values.items():
        view[offset] = value
    view.release()


def test_hub_sums_slots_and_keeps_retired_generations() -> None:
    hub = MetricsHub()
    first = hub.start(CONFIG, 2, 1)
    lay = first.layout
    get_2xx = L["requests"] + 0 * L["classes"] + 2
    target = lay.target_offset(0)
    _write(first, 0, {get_2xx: 5, L["duration"] + 3: 5, L["duration_sum"]: 9000, target: 7,
                      target + len(TARGET_COUNTERS): 2, lay.worker_at: 3})
    _write(first, 1, {get_2xx: 4, L["duration"] + 4: 4, target: 1, target + len(TARGET_COUNTERS): 1,
                      lay.worker_at: 9})
    counters, gauges = hub.snapshot({1: {0: 100}})  # slot 1's worker is gone: its gauges do not hold
    assert counters["requests", "/api/*", "GET", "2xx"] == 9
    assert counters["duration", "/api/*", 3] == 5 and counters["duration", "/api/*", 4] == 4
    assert counters["duration_sum", "/api/*"] == 9000
    assert counters["target", "app", "127.0.0.1:9001", "responses"] == 8
    assert gauges["target", "app", "127.0.0.1:9001", TARGET_GAUGES[0]] == 2
    assert gauges["connections", "1", "0"] == 3 and ("connections", "1", "1") not in gauges

    second = hub.start(CONFIG, 1, 2)
    _write(second, 0, {get_2xx: 1, target: 1})
    hub.retire({2})  # generation 1 has no worker left
    assert 1 not in hub.tables
    counters, gauges = hub.snapshot({2: {0: 200}})
    assert counters["requests", "/api/*", "GET", "2xx"] == 10
    assert counters["target", "app", "127.0.0.1:9001", "responses"] == 9
    assert counters["duration", "/api/*", 3] == 5
    assert gauges["connections", "2", "0"] == 0 and ("connections", "1", "0") not in gauges
