"""OTLP/HTTP export of a worker's sampled spans, batched off the request path.

The request path only appends each finished, sampled TraceSpan to `queue` (the compiled recorder
does it, bounded by `max_queue`; beyond it spans are dropped and counted). Every `interval` the
worker's sweeper calls `tick`, which takes up to `max_batch` spans, encodes them with the
OpenTelemetry protocol's own protobuf classes (`opentelemetry-proto`) as one
ExportTraceServiceRequest, and POSTs it (`Content-Type: application/x-protobuf`) to the
collector's endpoint in a task of the worker's loop. One export is in flight at a time; a failed
one (no connection, timeout, a status other than 2xx) is dropped and counted, not retried: a
gateway under load must not pile up telemetry. On exit the queue gets one last export.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from fastgw._version import __version__
from fastgw.config.model import TraceExport, Tracing
from fastgw.log import process_log

MAX_RESPONSE = 64 * 1024
"""Bytes of a collector's answer read (its head and a short body) before giving up on it."""


def _attr(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _text(value: bytes | None) -> str:
    return value.decode("latin-1") if value else ""


def encode(spans: Sequence[Any], tracing: Tracing, routes: Sequence[str], pid: int) -> bytes:
    """One ExportTraceServiceRequest holding `spans` (TraceSpan objects of one worker), as bytes.
    Span names follow the HTTP semantic conventions: `METHOD route` (the route's label)."""
    out = []
    for s in spans:
        route = routes[s.route] if 0 <= s.route < len(routes) else None
        attrs = [
            _attr("http.request.method", _text(s.method)),
            _attr("url.path", _text(s.path)),
            _attr("http.response.status_code", s.status),
            _attr("client.address", _text(s.peer)),
            _attr("fastgw.request_id", _text(s.rid)),
            _attr("http.response.body.size", s.sent),
        ]
        if route is not None:
            attrs.append(_attr("http.route", route))
        if s.host:
            attrs.append(_attr("server.address", _text(s.host)))
        if s.upstream:
            attrs.append(_attr("fastgw.upstream.target", s.upstream))
        span = Span(
            trace_id=bytes.fromhex(s.trace_id.decode()),
            span_id=bytes.fromhex(s.span_id.decode()),
            name=f"{_text(s.method)} {route}" if route is not None else _text(s.method),
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=int(s.start * 1e9),
            end_time_unix_nano=int(s.end * 1e9),
            attributes=attrs,
            flags=(s.flags & 0xFF) | 0x100 | (0x200 if s.parent_id else 0),
            status=Status(code=Status.STATUS_CODE_ERROR) if s.status >= 500 else Status(),
        )
        if s.parent_id:
            span.parent_span_id = bytes.fromhex(s.parent_id.decode())
        if s.tracestate:
            span.trace_state = _text(s.tracestate)
        out.append(span)
    resource = Resource(attributes=[
        _attr("service.name", tracing.service_name),
        _attr("service.version", __version__),
        _attr("host.name", socket.gethostname()),
        _attr("process.pid", pid),
    ])
    request = ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(
            resource=resource,
            scope_spans=[ScopeSpans(scope=InstrumentationScope(name="fastgw", version=__version__), spans=out)],
        )
    ])
    return request.SerializeToString()


class SpanExporter:
    """One worker's exporter (see the module docstring). `stats` is its StatBlock of the
    `tracing` stat group; `dropped` reads the recorder's count of spans dropped at a full queue."""

    def __init__(
        self, tracing: Tracing, loop: asyncio.AbstractEventLoop, routes: Sequence[str], stats: Any, dropped: Any
    ) -> None:
        export = tracing.export
        assert export is not None
        self.tracing = tracing
        self.config: TraceExport = export
        self.loop = loop
        self.routes = list(routes)
        self.queue: list[Any] = []
        self.stats = stats
        self._dropped = dropped
        self._dropped_seen = 0
        url = urlsplit(export.endpoint)
        self.host = url.hostname or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if url.scheme == "https" else None
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.host_header = url.netloc.rpartition("@")[2]
        self.next_at = 0.0
        self.sending: asyncio.Task[None] | None = None
        self.pid = os.getpid()
        self._warned = False

    # the `tracing` stat group's counters
    def _count(self, name: str, n: int = 1) -> None:
        from .build import TRACING_STATS

        self.stats.inc(TRACING_STATS.at(name), n)

    def tick(self, now: float) -> None:
        """From the sweeper: start an export when one is due and none is in flight."""
        dropped = self._dropped()
        if dropped != self._dropped_seen:
            self._count("spans_dropped", dropped - self._dropped_seen)
            self._dropped_seen = dropped
        if now < self.next_at or not self.queue or (self.sending is not None and not self.sending.done()):
            return
        self.next_at = now + self.config.interval
        batch = self.queue[: self.config.max_batch]
        del self.queue[: self.config.max_batch]
        self.sending = self.loop.create_task(self._export(batch))

    async def _export(self, batch: list[Any]) -> None:
        try:
            payload = encode(batch, self.tracing, self.routes, self.pid)
            async with asyncio.timeout(self.config.timeout):
                status = await self._post(payload)
        except (OSError, TimeoutError, ValueError) as exc:
            self._failed(len(batch), f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return
        except Exception as exc:  # a span that cannot be encoded must not stop the exporter
            self._failed(len(batch), repr(exc))
            return
        if 200 <= status < 300:
            self._count("spans_exported", len(batch))
            self._count("export_requests")
        else:
            self._failed(len(batch), f"the collector answered {status}")

    def _failed(self, n: int, why: str) -> None:
        self._count("export_failures")
        self._count("spans_dropped", n)
        if not self._warned:
            # Once per worker: a collector that is down must not flood the process log.
            self._warned = True
            process_log(f"trace export to {self.config.endpoint} failed ({why}); {n} spans dropped "
                        "(further failures are counted in fastgw_tracing_export_failures_total)")

    async def _post(self, payload: bytes) -> int:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
        )
        try:
            head = (
                f"POST {self.target} HTTP/1.1\r\nHost: {self.host_header}\r\n"
                f"Content-Type: application/x-protobuf\r\nContent-Length: {len(payload)}\r\n"
                f"User-Agent: fastgw/{__version__}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(head + payload)
            await writer.drain()
            line = await reader.readuntil(b"\r\n")
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise ValueError(f"not an HTTP response: {line[:80]!r}")
            await reader.read(MAX_RESPONSE)
            return int(parts[1])
        finally:
            writer.close()

    async def flush(self, timeout: float) -> None:
        """At exit: wait for the export in flight, then export what is queued (within `timeout`)."""
        try:
            async with asyncio.timeout(timeout):
                if self.sending is not None:
                    await self.sending
                while self.queue:
                    batch = self.queue[: self.config.max_batch]
                    del self.queue[: self.config.max_batch]
                    await self._export(batch)
        except TimeoutError:
            pass
