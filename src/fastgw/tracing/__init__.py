"""Distributed tracing: W3C Trace Context propagation (the compiled `TraceFilter`), the trace id
in the access log, and optional OTLP/HTTP export of sampled spans (`export.SpanExporter`)."""

from .build import TRACING_STATS, WorkerTracing, attach_tracing, route_trace_filter

__all__ = ["TRACING_STATS", "WorkerTracing", "attach_tracing", "route_trace_filter"]
