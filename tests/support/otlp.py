"""A local OTLP/HTTP trace collector for tests: it accepts `POST /v1/traces` with a protobuf
ExportTraceServiceRequest, decodes it with the protocol's own classes (opentelemetry-proto), and
keeps the spans, so a test checks what a real collector would have received.

It runs in a thread of the test process on a loopback port. `status` is what it answers (200
unless a test wants failures); `wait_spans(n)` waits on a condition, not a sleep.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.client import LOOPBACK


@dataclass
class ReceivedSpan:
    """A decoded span with its resource's and its own attributes as plain dicts."""

    span: Any
    resource: dict[str, Any]
    scope: str

    @property
    def attributes(self) -> dict[str, Any]:
        return _attributes(self.span.attributes)

    @property
    def trace_id(self) -> str:
        return bytes(self.span.trace_id).hex()

    @property
    def span_id(self) -> str:
        return bytes(self.span.span_id).hex()

    @property
    def parent_span_id(self) -> str:
        return bytes(self.span.parent_span_id).hex()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class Collector:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests: list[dict[str, str]] = []
        """The headers of every export request."""
        self.status = 200
        self._cond = threading.Condition()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received = [
                    ReceivedSpan(span, _attributes(rs.resource.attributes), ss.scope.name)
                    for rs in request.resource_spans
                    for ss in rs.scope_spans
                    for span in ss.spans
                ]
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(collector.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                with collector._cond:
                    collector.requests.append(dict(self.headers))
                    if 200 <= collector.status < 300:
                        collector.spans.extend(received)
                    collector._cond.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, name="otlp-collector", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def wait_spans(self, n: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """At least `n` spans received (all of them returned), or AssertionError at `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.spans) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {n} spans, the collector got {len(self.spans)}")
                self._cond.wait(remaining)
            return list(self.spans)

    def wait_requests(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {n} export requests, got {len(self.requests)}")
                self._cond.wait(remaining)
