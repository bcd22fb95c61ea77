"""`GET /metrics` and `GET /stats` on the admin listener: the master's view of every worker's
counters (fastgw.metrics.shared), rendered by prometheus_client (a custom collector: the text
and OpenMetrics formats are the library's, never written here) or as JSON for the status page.

A scrape reads shared memory and the master's own state only: it never asks a worker anything,
so it cannot slow a request, and a slow scraper is the admin server's business (non-blocking).
"""

from __future__ import annotations

import platform
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from fastgw._proxy import LATENCY_BOUNDS
from fastgw._version import __version__

from .layout import ERROR_KINDS
from .registry import REGISTRY
from .shared import NBUCKETS, Key

if TYPE_CHECKING:
    from fastgw.server.master import Master

DECISIONS = ("allowed", "refused", "shadow_refused", "fail_open", "fail_closed")
"""Rate-limit counters that are decisions (the `decision` label of fastgw_ratelimit_decisions_total)."""

METRICS: dict[str, str] = {
    "fastgw_build_info": "Version of fastgw and of the Python running it (value 1).",
    "fastgw_start_time_seconds": "When the master started (Unix time).",
    "fastgw_generation": "The serving configuration generation (1 at start, +1 per reload).",
    "fastgw_workers": "Worker processes running, by generation (old ones drain after a reload).",
    "fastgw_worker_restarts_total": "Workers that exited unexpectedly and were replaced.",
    "fastgw_reloads_total": "Reload attempts by result (ok, failed).",
    "fastgw_open_connections": "Open client connections, by worker (generation and slot).",
    "fastgw_requests_total": "Requests by route, method and status class (route \"(none)\": no route matched).",
    "fastgw_request_duration_seconds": "Time from a request's first byte to its log record, by route.",
    "fastgw_upstream_duration_seconds": "Time from sending a request upstream to the response head, by route.",
    "fastgw_response_bytes_total": "Response body bytes sent to clients, by route.",
    "fastgw_route_retries_total": "Upstream attempts beyond the first, by route.",
    "fastgw_upstream_retries_total": "Upstream attempts beyond the first, by upstream.",
    "fastgw_upstream_responses_total": "Upstream attempts that got a response head, by target.",
    "fastgw_upstream_failures_total": "Failed attempts and 5xx responses (what outlier detection counts), by target.",
    "fastgw_upstream_errors_total": "Attempts that failed without a response, by target and kind.",
    "fastgw_upstream_queued_total": "Requests that waited for a connection to a target (none idle, no connect slot).",
    "fastgw_upstream_queue_refused_total":
        "Requests answered 503 because no connection to a target came free: the queue was full, or they waited "
        "queue.timeout (reason full, timeout).",
    "fastgw_upstream_ejections_total": "Outlier ejections of a target (each worker ejects on its own).",
    "fastgw_upstream_active_requests": "Attempts in flight to a target.",
    "fastgw_upstream_ejected_workers": "Workers that have the target ejected now.",
    "fastgw_upstream_queued_requests": "Requests waiting for a connection to a target now.",
    "fastgw_upstream_connections": "Connections to a target, open (busy or idle) or being opened.",
    "fastgw_upstream_healthy": "1 unless active health checks mark the target unhealthy.",
    "fastgw_ratelimit_decisions_total": "Rate-limit decisions by limit and decision.",
    "fastgw_ratelimit_redis_calls_total": "Calls to Redis of a cluster-scope limit.",
    "fastgw_ratelimit_redis_errors_total": "Failed or timed-out Redis calls of a cluster-scope limit.",
}
"""Every metric the gateway itself exports (declared stat groups add theirs), with its help."""


def _le(bound: float) -> str:
    return repr(float(bound))


def _histogram(name: str, counters: Counter[Key], kind: str) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, METRICS[name], labels=["route"])
    routes = sorted({k[1] for k in counters if k[0] == kind})
    for route in routes:
        cumulative = 0
        buckets = []
        for i in range(NBUCKETS):
            cumulative += counters.get((kind, route, i), 0)
            buckets.append((_le(LATENCY_BOUNDS[i]) if i < len(LATENCY_BOUNDS) else "+Inf", cumulative))
        family.add_metric([route], buckets, counters.get((kind + "_sum", route), 0) / 1e6)
    return family


class GatewayCollector:
    """prometheus_client's custom-collector interface over the master's state."""

    def __init__(self, master: Master) -> None:
        self.master = master

    def collect(self) -> Iterator[Metric]:
        master = self.master
        hub = master.metrics
        counters, gauges = hub.snapshot(master.live_slots())
        info = InfoMetricFamily("fastgw_build", METRICS["fastgw_build_info"])
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info
        yield GaugeMetricFamily("fastgw_start_time_seconds", METRICS["fastgw_start_time_seconds"], value=hub.started)
        cur = master.current
        yield GaugeMetricFamily("fastgw_generation", METRICS["fastgw_generation"], value=cur.number if cur else 0)
        workers = GaugeMetricFamily("fastgw_workers", METRICS["fastgw_workers"], labels=["generation"])
        for generation, slots in sorted(master.live_slots().items()):
            workers.add_metric([str(generation)], len(slots))
        yield workers
        yield CounterMetricFamily("fastgw_worker_restarts", METRICS["fastgw_worker_restarts_total"], value=hub.restarts)
        reloads = CounterMetricFamily("fastgw_reloads", METRICS["fastgw_reloads_total"], labels=["result"])
        for result in ("ok", "failed"):
            reloads.add_metric([result], hub.reloads.get(result, 0))
        yield reloads
        conns = GaugeMetricFamily(
            "fastgw_open_connections", METRICS["fastgw_open_connections"], labels=["generation", "slot"]
        )
        for key, n in sorted(gauges.items()):
            if key[0] == "connections":
                conns.add_metric([key[1], key[2]], n)
        yield conns
        yield from self._requests(counters)
        yield from self._upstreams(counters, gauges)
        yield from self._ratelimits(counters)
        yield from self._groups(counters)

    def _requests(self, counters: Counter[Key]) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "fastgw_requests", METRICS["fastgw_requests_total"], labels=["route", "method", "status_class"]
        )
        by_route = {
            key: CounterMetricFamily(name, METRICS[f"{name}_total"], labels=["route"])
            for key, name in (("bytes", "fastgw_response_bytes"), ("retries", "fastgw_route_retries"))
        }
        upstream_retries = CounterMetricFamily(
            "fastgw_upstream_retries", METRICS["fastgw_upstream_retries_total"], labels=["upstream"]
        )
        for key, n in sorted(counters.items()):
            if key[0] == "requests":
                requests.add_metric(list(key[1:]), n)
            elif key[0] in by_route:
                by_route[key[0]].add_metric([key[1]], n)
            elif key[0] == "upstream_retries":
                upstream_retries.add_metric([key[1]], n)
        yield requests
        yield _histogram("fastgw_request_duration_seconds", counters, "duration")
        yield _histogram("fastgw_upstream_duration_seconds", counters, "upstream")
        yield from by_route.values()
        yield upstream_retries

    def _upstreams(self, counters: Counter[Key], gauges: Counter[Key]) -> Iterator[Metric]:
        labels = ["upstream", "target"]
        fams = {
            name: CounterMetricFamily(f"fastgw_upstream_{name}", METRICS[f"fastgw_upstream_{name}_total"],
                                      labels=labels)
            for name in ("responses", "failures", "ejections", "queued")
        }
        errors = CounterMetricFamily(
            "fastgw_upstream_errors", METRICS["fastgw_upstream_errors_total"], labels=[*labels, "kind"]
        )
        refused = CounterMetricFamily(
            "fastgw_upstream_queue_refused", METRICS["fastgw_upstream_queue_refused_total"],
            labels=[*labels, "reason"],
        )
        for key, n in sorted(counters.items()):
            if key[0] != "target":
                continue
            _, upstream, target, name = key
            if name in fams:
                fams[name].add_metric([upstream, target], n)
            elif name in ERROR_KINDS:
                errors.add_metric([upstream, target, name], n)
            elif name.startswith("queue_"):
                refused.add_metric([upstream, target, name.removeprefix("queue_")], n)
        yield from fams.values()
        yield errors
        yield refused
        gauge_fams = {
            key: GaugeMetricFamily(name, METRICS[name], labels=labels)
            for key, name in (("active", "fastgw_upstream_active_requests"),
                              ("ejected", "fastgw_upstream_ejected_workers"),
                              ("waiting", "fastgw_upstream_queued_requests"),
                              ("connections", "fastgw_upstream_connections"))
        }
        for key, n in sorted(gauges.items()):
            if key[0] == "target":
                gauge_fams[key[3]].add_metric([key[1], key[2]], n)
        yield from gauge_fams.values()
        healthy = GaugeMetricFamily("fastgw_upstream_healthy", METRICS["fastgw_upstream_healthy"], labels=labels)
        for upstream, target, ok in target_health(self.master):
            healthy.add_metric([upstream, target], 1 if ok else 0)
        yield healthy

    def _ratelimits(self, counters: Counter[Key]) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "fastgw_ratelimit_decisions", METRICS["fastgw_ratelimit_decisions_total"], labels=["limit", "decision"]
        )
        calls = CounterMetricFamily(
            "fastgw_ratelimit_redis_calls", METRICS["fastgw_ratelimit_redis_calls_total"], labels=["limit"]
        )
        errors = CounterMetricFamily(
            "fastgw_ratelimit_redis_errors", METRICS["fastgw_ratelimit_redis_errors_total"], labels=["limit"]
        )
        for key, n in sorted(counters.items()):
            if key[0] != "ratelimit":
                continue
            _, limit, name = key
            if name in DECISIONS:
                decisions.add_metric([limit, name], n)
            elif name == "redis_calls":
                calls.add_metric([limit], n)
            elif name == "redis_errors":
                errors.add_metric([limit], n)
        yield decisions
        yield calls
        yield errors

    def _groups(self, counters: Counter[Key]) -> Iterator[Metric]:
        families: dict[tuple[str, str], CounterMetricFamily] = {}
        for group in REGISTRY.values():
            for counter in group.counters:
                families[group.name, counter] = CounterMetricFamily(
                    f"fastgw_{group.name}_{counter}", group.help[counter], labels=[group.label] if group.label else []
                )
        for key, n in sorted(counters.items()):
            if key[0] == "stat" and (key[1], key[3]) in families:
                group = REGISTRY[key[1]]
                families[key[1], key[3]].add_metric([key[2]] if group.label else [], n)
        yield from families.values()


def target_health(master: Master) -> list[tuple[str, str, bool]]:
    """(upstream, target, healthy) for every target of the serving configuration."""
    cur = master.current
    shared = cur.shared if cur is not None else None
    out = []
    for name, upstream in master.config.upstreams.items():
        if shared is None:
            out.extend((name, str(t.address), True) for t in upstream.targets)
            continue
        for item in shared.describe(upstream, set()):
            out.append((name, item["address"], bool(item["healthy"])))
    return out


class MetricsEndpoint:
    """What the admin server calls for `GET /metrics`: one registry holding the collector."""

    def __init__(self, master: Master) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(master))  # type: ignore[arg-type]

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format `accept` asks for (Prometheus text by default,
        OpenMetrics when asked), and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


def stats_view(master: Master) -> dict[str, Any]:
    """`GET /stats`: what the status page shows, summed over the workers, as counters (the page
    takes rates and latencies from the difference between two reads)."""
    counters, gauges = master.metrics.snapshot(master.live_slots())
    routes: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "requests": 0, "classes": {}, "duration": {"count": 0, "sum": 0.0, "buckets": []},
        "upstream": {"count": 0, "sum": 0.0, "buckets": []}, "bytes": 0, "retries": 0,
    })
    for key, n in counters.items():
        if key[0] == "requests":
            item = routes[key[1]]
            item["requests"] += n
            item["classes"][key[3]] = item["classes"].get(key[3], 0) + n
        elif key[0] in ("bytes", "retries"):
            routes[key[1]][key[0]] = n
    for kind in ("duration", "upstream"):
        for route in {k[1] for k in counters if k[0] == kind}:
            cumulative = 0
            buckets = []
            for i in range(NBUCKETS):
                cumulative += counters.get((kind, route, i), 0)
                buckets.append([LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else None, cumulative])
            routes[route][kind] = {
                "count": cumulative, "sum": counters.get((kind + "_sum", route), 0) / 1e6, "buckets": buckets,
            }
    ratelimits: dict[str, dict[str, int]] = defaultdict(dict)
    for key, n in counters.items():
        if key[0] == "ratelimit":
            ratelimits[key[1]][key[2]] = n
    workers = []
    for w in sorted(master.workers.values(), key=lambda w: (w.generation, w.slot)):
        workers.append({
            "pid": w.pid, "slot": w.slot, "generation": w.generation, "ready": w.ready, "stopping": w.stopping,
            "connections": gauges.get(("connections", str(w.generation), str(w.slot)), 0),
        })
    return {
        "time": time.time(),
        "generation": cur_gen(master),
        "restarts": master.metrics.restarts,
        "reloads": dict(master.metrics.reloads),
        "workers": workers,
        "routes": routes,
        "ratelimits": ratelimits,
    }


def cur_gen(master: Master) -> int:
    return master.current.number if master.current is not None else 0
