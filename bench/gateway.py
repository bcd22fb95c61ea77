"""fastgw under test: its bench config (the same job as the nginx proxy's) and its start (by
fastgw.loadtest.gateway)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.scenarios import Scenario
from fastgw.loadtest import gateway
from fastgw.loadtest.procs import Server


def version() -> str:
    from fastgw._version import __version__

    return __version__


def config(
    port: int,
    workers: int,
    upstream: str,
    keepalive: int,
    access_log: Path,
    scenarios: Sequence[Scenario],
    *,
    metrics: bool = True,
    tracing: str | None = None,
    tls: tuple[int, Path, Path] | None = None,
) -> dict[str, Any]:
    """The gateway's side of the comparison: the same worker count, upstream pool size and
    timeouts as the nginx proxy, and a JSON access log like the one nginx writes. `metrics`
    False turns fastgw's per-request metrics off (`--metrics off`: their cost); `tracing` (a
    sample percentage) adds a `tracing` section (propagation on every route, no export). `tls`
    (port, certificate, key) adds the TLS listener of the TLS scenarios. Files the scenarios
    name (`fastgw_files`) are written beside the access log, which is beside the config."""
    doc: dict[str, Any] = {
        "workers": workers,
        "listen": [{"address": f"127.0.0.1:{port}"}],
        "upstreams": {
            "backend": {"targets": [upstream], "keepalive": keepalive, "timeouts": {"connect": "1s", "read": "10s"}},
        },
        "routes": [],
        "access_log": {"path": str(access_log), "format": "json"},
    }
    if not metrics:
        doc["metrics"] = {"enabled": False}
    if tracing is not None:
        doc["tracing"] = {"sample": tracing}
    if tls is not None:
        tls_port, cert, key = tls
        doc["listen"].append({"address": f"127.0.0.1:{tls_port}", "tls": {"cert": str(cert), "key": str(key)}})
    for scenario in scenarios:
        for name, text in scenario.fastgw_files.items():
            (access_log.parent / name).write_text(text)
        for section, value in scenario.fastgw_sections.items():
            doc.setdefault(section, {}).update(value)
        doc["routes"].extend(dict(r) for r in scenario.fastgw_routes)
    doc["routes"].append({"match": {"prefix": "/"}, "upstream": "backend"})
    return doc


def start(workdir: Path, doc: dict[str, Any], cpus: tuple[int, ...] | None) -> Server:
    path = workdir / "fastgw.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return gateway.start(path, workdir / "fastgw.log", cpus)
