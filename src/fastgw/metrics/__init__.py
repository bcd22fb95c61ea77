"""Metrics: per-request counters and latency histograms recorded in C into per-worker
shared-memory rows (`fastgw._proxy.MetricsRecorder`), summed by the master for `GET /metrics`
(Prometheus text, rendered by prometheus_client) and the status page.

A feature adds its counters by declaring them once (`declare`, see `registry`)."""

from .registry import PER_ROUTE, REGISTRY, StatGroup, declare

__all__ = ["PER_ROUTE", "REGISTRY", "StatGroup", "declare"]
