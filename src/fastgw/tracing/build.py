"""Builds a worker's tracing from the `tracing` section: one compiled TraceFilter shared by every
route (its state is only the id generator), and the span exporter when `export` is set."""

from __future__ import annotations

from typing import Any

from fastgw._proxy import TraceFilter
from fastgw.config.model import Route
from fastgw.metrics import declare

TRACING_STATS = declare("tracing", {
    "spans_exported": "Spans the collector accepted.",
    "spans_dropped": "Sampled spans not exported: the queue was full, or their export failed.",
    "export_requests": "Successful OTLP export requests.",
    "export_failures": "OTLP export requests that failed (no connection, timeout, non-2xx answer).",
})


class WorkerTracing:
    __slots__ = ("filter", "exporter")

    def __init__(self, rt: Any) -> None:
        tracing = rt.config.tracing
        self.filter = TraceFilter(rt.metrics.clock, tracing.sample)
        self.exporter = None
        if tracing.export is not None:
            from .export import SpanExporter

            recorder = rt.metrics.recorder
            self.exporter = SpanExporter(
                tracing, rt.loop, rt.metrics.layout.routes, rt.metrics.block(TRACING_STATS),
                lambda: recorder.spans_dropped,
            )
            recorder.set_span_queue(self.exporter.queue, tracing.export.max_queue)

    def tick(self, now: float) -> None:
        if self.exporter is not None:
            self.exporter.tick(now)


def attach_tracing(rt: Any) -> WorkerTracing | None:
    """The worker's tracing, or None without a `tracing` section (no route gets a filter)."""
    return WorkerTracing(rt) if rt.config.tracing is not None else None


def route_trace_filter(rt: Any, route: Route) -> Any:
    """The tracing filter of `route` (the same for every route), or None without tracing."""
    tracing = getattr(rt, "tracing", None)
    return tracing.filter if tracing is not None else None
