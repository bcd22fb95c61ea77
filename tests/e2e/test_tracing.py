"""Tracing end to end: W3C traceparent/tracestate as the upstream receives them (a new span id per
hop), the trace id in the access log, OTLP/HTTP export to a local collector that decodes what it
gets, and export failures counted in /metrics."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import http_get
from tests.support.otlp import Collector
from tests.support.procs import Backend, Gateway, start_backend

pytestmark = pytest.mark.e2e

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with start_backend("traced") as b:
        yield b


def config(backend: Backend, log: Path, tracing: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "workers": 2,
        "grace_period": "5s",
        "upstreams": {"backend": {"targets": [f"127.0.0.1:{backend.port}"]}},
        "routes": [{"match": {"prefix": "/echo"}, "upstream": "backend"},
                   {"match": {"prefix": "/status"}, "upstream": "backend"}],
        "access_log": {"path": str(log), "format": "json"},
    }
    if tracing is not None:
        doc["tracing"] = tracing
    return doc


def upstream_headers(resp: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in json.loads(resp.body)["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


def log_records(log: Path, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text() if log.exists() else ""
        lines = [line for line in text.splitlines() if line]
        if len(lines) >= count and text.endswith("\n"):
            return [json.loads(line) for line in lines]
        assert time.monotonic() < deadline, f"expected {count} records, got {lines}"
        time.sleep(0.05)


def test_traceparent_propagation_and_trace_id_in_the_log(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Gateway(config(backend, log, {"sample": "100%"}), tmp_path) as g:
        parented = http_get(g.port, "/echo/a", headers=[
            ("traceparent", f"00-{TRACE}-{PARENT}-01"), ("tracestate", "vendor=opaque,other=1"),
        ])
        fresh = http_get(g.port, "/echo/b")
        invalid = http_get(g.port, "/echo/c", headers=[
            ("traceparent", f"00-{TRACE.upper()}-{PARENT}-01"), ("tracestate", "vendor=opaque"),
        ])
        unsampled = http_get(g.port, "/echo/d", headers=[("traceparent", f"00-{TRACE}-{PARENT}-00")])
        records = {r["uri"]: r for r in log_records(log, 4)}

    up = upstream_headers(parented)
    (tp,) = up["traceparent"]
    version, trace, span, flags = tp.split("-")
    assert (version, trace, flags) == ("00", TRACE, "01")
    assert re.fullmatch(r"[0-9a-f]{16}", span) and span != PARENT  # this hop's own span
    assert up["tracestate"] == ["vendor=opaque,other=1"]
    assert records["/echo/a"]["trace_id"] == TRACE

    (tp,) = upstream_headers(fresh)["traceparent"]
    version, trace, span, flags = tp.split("-")
    assert version == "00" and flags == "01" and re.fullmatch(r"[0-9a-f]{32}", trace) and trace != TRACE
    assert records["/echo/b"]["trace_id"] == trace

    up = upstream_headers(invalid)
    (tp,) = up["traceparent"]
    assert tp.split("-")[1] not in (TRACE, TRACE.upper())  # restarted...
    assert "tracestate" not in up  # ...and the state of the trace it could not read is dropped
    assert records["/echo/c"]["trace_id"] == tp.split("-")[1]

    (tp,) = upstream_headers(unsampled)["traceparent"]
    assert tp.startswith(f"00-{TRACE}-") and tp.endswith("-00")


def test_without_tracing_the_headers_pass_unchanged(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Gateway(config(backend, log, None), tmp_path) as g:
        resp = http_get(g.port, "/echo/a", headers=[("traceparent", f"00-{TRACE}-{PARENT}-01")])
        (record,) = log_records(log, 1)
    assert upstream_headers(resp)["traceparent"] == [f"00-{TRACE}-{PARENT}-01"]
    assert record["trace_id"] is None


def test_spans_are_exported_to_an_otlp_collector(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Collector() as collector:
        tracing = {"sample": "100%", "service_name": "edge-gw",
                   "export": {"endpoint": collector.endpoint, "interval": "100ms"}}
        with Gateway(config(backend, log, tracing), tmp_path) as g:
            started = time.time()
            parented = http_get(g.port, "/echo/x", headers=[("traceparent", f"00-{TRACE}-{PARENT}-01"),
                                                             ("tracestate", "k=v")])
            for _ in range(4):
                http_get(g.port, "/echo/y")
            failed = http_get(g.port, "/status/503")
            http_get(g.port, "/echo/z", headers=[("traceparent", f"00-{TRACE}-{PARENT}-00")])  # not sampled
            spans = collector.wait_spans(6)
            ended = time.time()
            records = log_records(log, 7)
            assert len(collector.wait_spans(6)) == 6  # the unsampled one never comes
    assert all(h["Content-Type"] == "application/x-protobuf" for h in collector.requests)
    assert len({s.trace_id for s in spans}) == 6 and len({s.span_id for s in spans}) == 6
    hop_span = upstream_headers(parented)["traceparent"][0].split("-")[2]
    first = next(s for s in spans if s.trace_id == TRACE)
    assert first.span_id == hop_span and first.parent_span_id == PARENT
    assert first.span.trace_state == "k=v"
    assert first.span.name == "GET /echo/*" and first.span.kind == first.span.SPAN_KIND_SERVER
    attrs = first.attributes
    assert attrs["http.request.method"] == "GET" and attrs["url.path"] == "/echo/x"
    assert attrs["http.response.status_code"] == 200 and attrs["http.route"] == "/echo/*"
    assert attrs["fastgw.upstream.target"] == f"127.0.0.1:{backend.port}"
    assert attrs["fastgw.request_id"] == parented.header("x-request-id")
    assert first.resource["service.name"] == "edge-gw" and first.scope == "fastgw"
    for s in spans:
        assert started - 1 <= s.span.start_time_unix_nano / 1e9 <= s.span.end_time_unix_nano / 1e9 <= ended + 1
    (err,) = [s for s in spans if s.attributes["http.response.status_code"] == 503]
    assert err.span.status.code == err.span.status.STATUS_CODE_ERROR
    assert err.attributes["fastgw.request_id"] == failed.header("x-request-id")
    # Each span's trace id is the one its request's access-log record carries.
    by_rid = {r["request_id"]: r for r in records}
    for s in spans:
        assert by_rid[s.attributes["fastgw.request_id"]]["trace_id"] == s.trace_id
    (unsampled,) = [r for r in records if r["uri"] == "/echo/z"]
    assert unsampled["trace_id"] == TRACE and unsampled["request_id"] not in {
        s.attributes["fastgw.request_id"] for s in spans}


def metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def test_failed_exports_are_counted_not_retried(backend: Backend, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with Collector() as collector:
        collector.status = 503
        tracing = {"export": {"endpoint": collector.endpoint, "interval": "100ms"}}
        with Gateway(config(backend, log, tracing) | {"workers": 1}, tmp_path) as g:
            for _ in range(3):
                http_get(g.port, "/echo/x")
            collector.wait_requests(1)
            deadline = time.monotonic() + 5
            while True:
                text = http_get(g.admin_port, "/metrics").body.decode()
                if metric(text, "fastgw_tracing_spans_dropped_total") >= 3:
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.1)
            assert metric(text, "fastgw_tracing_export_failures_total") >= 1
            assert metric(text, "fastgw_tracing_spans_exported_total") == 0
            assert any("trace export to" in line and "failed" in line for line in g.lines)
