"""Where each counter lives in a worker's metrics row, for one configuration.

A row is int64 values: the compiled recorder's route blocks and per-upstream retries (their
offsets come from `fastgw._proxy.METRICS_LAYOUT`, the one definition), then the per-target counters
and gauges the worker publishes every tick, the worker's own gauges, and the counters of every
declared stat group (`fastgw.metrics.registry`). Master and workers compute it from the same
`Config` (the master once, before forking; workers inherit the object).
"""

from __future__ import annotations

from typing import Any

from fastgw._proxy import METRICS_LAYOUT
from fastgw.config.model import Config, Route

from .registry import REGISTRY, StatGroup

ROUTE_STRIDE: int = METRICS_LAYOUT["route_stride"]

ERROR_KINDS = ("connect_error", "reset", "timeout", "protocol_error")
"""The kinds of failed attempts (the `kind` label of fastgw_upstream_errors_total)."""
QUEUE_COUNTERS = ("queued", "queue_full", "queue_timeout")
"""Requests that waited for a connection, and those refused with 503 (queue full, waited too long)."""
TARGET_COUNTERS = ("responses", "failures", "ejections", *QUEUE_COUNTERS, *ERROR_KINDS)
"""Per target, published every tick from the worker's target state, on top of what the slot's
earlier workers left (so a replaced worker's counts are kept)."""
TARGET_GAUGES = ("active", "ejected", "waiting", "connections")
"""Per target, the worker's current value (summed over live workers only)."""
TARGET_WIDTH = len(TARGET_COUNTERS) + len(TARGET_GAUGES)
WORKER_GAUGES = ("connections",)
"""The worker's own values: its open client connections."""
UNROUTED = "(none)"
"""The `route` label of requests that matched no route (404, 405, malformed requests)."""


def route_label(route: Route) -> str:
    """A route as metrics name it: its host (if any) and pattern, a prefix followed by `/*`, with
    its methods when it has some: `/api/users/*`, `api.example.com/v1/users/{id} GET,PUT`, `/*`."""
    m = route.match
    pattern = m.path if m.path is not None else (m.prefix or "").rstrip("/") + "/*"
    text = f"{m.host or ''}{pattern}"
    if m.methods:
        text += " " + ",".join(m.methods)
    return text


def route_labels(config: Config) -> list[str]:
    """`route_label` of each route in order; a label two routes would share (routes told apart by
    headers or query) gets `#INDEX` appended."""
    labels = [route_label(r) for r in config.routes]
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [f"{label} #{i}" if seen[label] > 1 else label for i, label in enumerate(labels)]


class Layout:
    __slots__ = (
        "routes", "upstreams", "targets", "retries_at", "targets_at", "worker_at", "groups", "width",
    )

    def __init__(self, config: Config, registry: dict[str, StatGroup] | None = None) -> None:
        self.routes = route_labels(config)
        """Route labels by route index; the block after the last is UNROUTED's."""
        self.upstreams = list(config.upstreams)
        self.targets = [(name, str(t.address)) for name, up in config.upstreams.items() for t in up.targets]
        """(upstream, address) in the order of their blocks."""
        offset = (len(self.routes) + 1) * ROUTE_STRIDE
        self.retries_at = offset
        offset += len(self.upstreams)
        self.targets_at = offset
        offset += len(self.targets) * TARGET_WIDTH
        self.worker_at = offset
        offset += len(WORKER_GAUGES)
        self.groups: dict[str, tuple[StatGroup, int, list[str]]] = {}
        """Group name -> (group, offset, label value of each instance)."""
        for group in (registry if registry is not None else REGISTRY).values():
            instances = group.labels(config)
            self.groups[group.name] = (group, offset, instances)
            offset += len(instances) * group.width
        self.width = offset

    def target_offset(self, index: int) -> int:
        return self.targets_at + index * TARGET_WIDTH

    def describe(self) -> dict[str, Any]:
        return {"routes": self.routes, "upstreams": self.upstreams, "width": self.width}
