"""W3C Trace Context, without sockets: traceparent parsing (the specification's valid and invalid
forms), the compiled filter's propagation on a built request, span ending, the OTLP encoding, and
the `tracing` config section."""

from __future__ import annotations

import re

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from fastgw._proxy import MetricsRecorder, Request, TraceFilter, TraceIds, WallClock, parse_traceparent
from fastgw.config import ConfigError
from fastgw.config.load import load_text
from fastgw.config.model import Tracing
from fastgw.tracing.export import encode

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID, (TRACE, PARENT, 1)),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, 0)),
        (f"00-{TRACE}-{PARENT}-09", (TRACE, PARENT, 9)),
        # A later version is read as 00 when its first fields are: more fields may follow a '-'.
        (f"01-{TRACE}-{PARENT}-01", (TRACE, PARENT, 1)),
        (f"cc-{TRACE}-{PARENT}-01-what-the-future-holds", (TRACE, PARENT, 1)),
    ],
)
def test_valid_traceparent(value: str, expected: tuple[str, str, int]) -> None:
    parsed = parse_traceparent(value.encode())
    assert parsed is not None
    assert (parsed[0].decode(), parsed[1].decode(), parsed[2]) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"ff-{TRACE}-{PARENT}-01",  # version ff is invalid
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{PARENT}-01",  # ids are lower-case hex
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"01-{TRACE}-{PARENT}-01extra",  # a later version: its fifth field follows a '-'
        f"00-{TRACE[:-1]}-{PARENT}-01",
        f"00_{TRACE}_{PARENT}_01",
        f"0g-{TRACE}-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-0x",
    ],
)
def test_invalid_traceparent(value: str) -> None:
    assert parse_traceparent(value.encode()) is None


def _run(filt: TraceFilter, headers: list[tuple[bytes, bytes]]) -> Request:
    req = Request.build(headers, path=b"/api/x", host=b"example.com")
    assert filt.run_request(req) is None
    return req


def _upstream_header(req: Request) -> str:
    # What the filter added to the upstream request (the exchange renders these lines as they are).
    span = req.vars["trace"]
    return span.traceparent.decode()


def test_a_valid_parent_keeps_its_trace_and_gets_a_new_span_id() -> None:
    filt = TraceFilter(WallClock(), 0.0, TraceIds(bytes(range(32))))
    req = _run(filt, [(b"traceparent", VALID.encode()), (b"tracestate", b"a=1"), (b"TraceState", b"b=2")])
    span = req.vars["trace"]
    assert span.trace_id.decode() == TRACE and span.parent_id.decode() == PARENT
    assert span.sampled and span.flags == 1  # the parent's sampled flag decides, not `sample`
    assert re.fullmatch(r"[0-9a-f]{16}", span.span_id.decode()) and span.span_id.decode() != PARENT
    assert _upstream_header(req) == f"00-{TRACE}-{span.span_id.decode()}-01"
    assert span.tracestate == b"a=1,b=2"


def test_no_parent_starts_a_sampled_trace_and_span_ids_differ() -> None:
    filt = TraceFilter(WallClock(), 1.0)
    spans = [_run(filt, []).vars["trace"] for _ in range(50)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", s.trace_id.decode()) for s in spans)
    assert len({s.trace_id for s in spans}) == 50 and len({s.span_id for s in spans}) == 50
    assert all(s.parent_id is None and s.sampled and s.flags == 1 for s in spans)


def test_sampling_share_of_new_traces() -> None:
    filt = TraceFilter(WallClock(), 0.25, TraceIds(b"\x01" * 32))
    sampled = sum(_run(filt, []).vars["trace"].sampled for _ in range(4000))
    assert 850 < sampled < 1150
    never = TraceFilter(WallClock(), 0.0)
    assert not any(_run(never, []).vars["trace"].sampled for _ in range(200))


def test_an_invalid_or_repeated_parent_restarts_the_trace() -> None:
    filt = TraceFilter(WallClock(), 1.0)
    for headers in (
        [(b"traceparent", b"00-" + TRACE.upper().encode() + b"-" + PARENT.encode() + b"-01")],
        [(b"traceparent", VALID.encode()), (b"traceparent", VALID.encode())],
    ):
        span = _run(filt, [*headers, (b"tracestate", b"a=1")]).vars["trace"]
        assert span.trace_id.decode() != TRACE and span.parent_id is None and span.tracestate is None


def test_recorder_ends_sampled_spans_into_the_export_queue() -> None:
    clock = WallClock()
    recorder = MetricsRecorder(clock)
    queue: list[object] = []
    recorder.set_span_queue(queue, 2)
    filt = TraceFilter(clock, 1.0)
    reqs = [_run(filt, []) for _ in range(3)]
    for req in reqs:
        req.status = 201
        recorder.record_request(req)
    assert len(queue) == 2 and recorder.spans_dropped == 1
    span = queue[0]
    assert span.status == 201 and span.end >= span.start > 1.7e9
    unsampled = _run(TraceFilter(clock, 0.0), [])
    recorder.record_request(unsampled)
    assert len(queue) == 2 and recorder.spans_dropped == 1


def test_encode_builds_an_otlp_request() -> None:
    clock = WallClock()
    recorder = MetricsRecorder(clock)
    queue: list[object] = []
    recorder.set_span_queue(queue, 10)
    req = _run(TraceFilter(clock, 1.0), [(b"traceparent", VALID.encode()), (b"tracestate", b"k=v")])
    req.status = 503
    recorder.record_request(req)
    data = encode(queue, Tracing(service_name="edge"), ["/api/*"], 42)
    decoded = ExportTraceServiceRequest()
    decoded.ParseFromString(data)
    (rs,) = decoded.resource_spans
    resource = {kv.key: kv.value for kv in rs.resource.attributes}
    assert resource["service.name"].string_value == "edge" and resource["process.pid"].int_value == 42
    (span,) = rs.scope_spans[0].spans
    assert span.trace_id.hex() == TRACE and span.parent_span_id.hex() == PARENT
    assert span.span_id.hex() == queue[0].span_id.decode()
    assert span.trace_state == "k=v" and span.status.code == span.status.STATUS_CODE_ERROR
    assert span.start_time_unix_nano <= span.end_time_unix_nano
    attrs = {kv.key: kv.value for kv in span.attributes}
    assert attrs["http.response.status_code"].int_value == 503
    assert attrs["url.path"].string_value == "/api/x"


def _config(tracing: str) -> str:
    return f"listen: [{{address: '127.0.0.1:8080'}}]\ntracing: {tracing}\n"


def test_tracing_config() -> None:
    config = load_text(_config("{sample: 10%, export: {endpoint: 'http://127.0.0.1:4318/v1/traces', interval: 250ms}}"),
                       "g.yaml", "/")
    assert config.tracing is not None and config.tracing.sample == 0.1
    assert config.tracing.export is not None and config.tracing.export.interval == 0.25
    assert load_text(_config("{}"), "g.yaml", "/").tracing == Tracing()
    assert load_text("listen: [{address: '127.0.0.1:8080'}]\n", "g.yaml", "/").tracing is None
    with pytest.raises(ConfigError) as err:
        load_text(_config("{sample: 0.5, export: {endpoint: 'collector:4318'}}"), "g.yaml", "/")
    text = "\n".join(err.value.problems)
    assert "g.yaml:2: tracing.sample:" in text and "tracing.export.endpoint:" in text
