"""The metric names are a contract: docs/operations.md lists every metric and admin endpoint the
gateway serves, and the Grafana dashboard only queries metrics that exist. Also the registry's
rules and the row layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import fastgw.tracing  # noqa: F401 - declares the tracing stat group
from fastgw.config.load import load_text
from fastgw.metrics.collector import METRICS
from fastgw.metrics.layout import ROUTE_STRIDE, Layout, route_labels
from fastgw.metrics.registry import REGISTRY, StatGroup, declare
from fastgw.server.admin import ENDPOINTS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def all_metric_names() -> set[str]:
    names = set(METRICS)
    for group in REGISTRY.values():
        names |= {f"fastgw_{group.name}_{c}_total" for c in group.counters}
    return names


def test_operations_doc_lists_every_metric_and_endpoint() -> None:
    text = (DOCS / "operations.md").read_text()
    missing = sorted(n for n in all_metric_names() if f"`{n}`" not in text)
    assert not missing, f"docs/operations.md does not list {missing}"
    for path, methods in ENDPOINTS.items():
        for method in methods:
            if method != b"HEAD":
                assert f"`{method.decode()} {path.decode()}`" in text, f"{method!r} {path!r} is not documented"


def test_dashboard_queries_only_existing_metrics() -> None:
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash["annotations"]["list"]]
    known = all_metric_names()
    known |= {f"{n}_{s}" for n in METRICS if n.endswith("_seconds") for s in ("bucket", "sum", "count")}
    used = {m for e in exprs for m in re.findall(r"\bfastgw_[a-z_]+", e)}
    assert used and used <= known, sorted(used - known)
    assert {"fastgw_requests_total", "fastgw_request_duration_seconds_bucket", "fastgw_upstream_healthy"} <= used


def test_declarations() -> None:
    per = ("name", lambda config: ["a", "b"])
    group = declare("test_feature", {"hit": "Hits.", "miss": "Misses."}, per=per)
    assert declare("test_feature", {"hit": "Hits.", "miss": "Misses."}, per=per) is group  # a module re-imported
    assert (group.width, group.at("miss"), group.at("hit", 1)) == (2, 1, 2)
    with pytest.raises(ValueError, match="different counters"):
        declare("test_feature", {"other": "?"})
    with pytest.raises(ValueError, match="lower-case"):
        declare("Bad-Name", {"x": "?"})
    del REGISTRY["test_feature"]


def test_layout_and_route_labels() -> None:
    config = load_text(
        "listen: [{address: '127.0.0.1:8080'}]\n"
        "upstreams: {a: {targets: ['127.0.0.1:9001', '127.0.0.1:9002']}, b: {targets: ['127.0.0.1:9003']}}\n"
        "routes:\n"
        "  - {match: {prefix: /api/}, upstream: a}\n"
        "  - {match: {path: '/v1/users/{id}', methods: [GET, PUT], host: api.example.com}, upstream: b}\n"
        "  - {match: {prefix: /x, headers: {x-v: '2'}}, upstream: b}\n"
        "  - {match: {prefix: /x}, upstream: a}\n"
        "  - {match: {prefix: /}, upstream: a}\n",
        "g.yaml", "/",
    )
    assert route_labels(config) == ["/api/*", "api.example.com/v1/users/{id} GET,PUT", "/x/* #2", "/x/* #3", "/*"]
    group = StatGroup("g", ("c",), {"c": "?"}, "route", lambda c: route_labels(c))
    lay = Layout(config, {"g": group})
    assert lay.retries_at == 6 * ROUTE_STRIDE  # five routes and the unrouted block
    assert lay.targets == [("a", "127.0.0.1:9001"), ("a", "127.0.0.1:9002"), ("b", "127.0.0.1:9003")]
    _, offset, instances = lay.groups["g"]
    assert offset > lay.worker_at and len(instances) == 5 and lay.width == offset + 5
