"""The servers of the load curves (connections, body): the built-in backend, started once, and
per point a freshly started nginx and fastgw in front of it, placed on CPUs as `python -m bench`
places them (see bench/pinning.py); and one measured wrk run with the proxy's CPU time and memory.

Each point gets fresh proxies so that its memory figures do not include what an earlier point
left allocated (free lists, grown buffers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import gateway, nginx, pinning
from bench.run import Endpoint
from bench.scenarios import Scenario
from fastgw.loadtest import wrk
from fastgw.loadtest.cpu import tree_ticks, us_per_request
from fastgw.loadtest.memory import PeakWatch, tree_rss
from fastgw.loadtest.procs import Server, ServerError, free_port


@dataclass
class Stack:
    tmp: Path
    workers: int
    placement: pinning.Placement
    #: Connections each server must hold (client and upstream), for nginx's worker_connections.
    connections: int
    keepalive: int
    targets: Sequence[str]
    body_sizes: Sequence[int] = ()
    #: Merged into fastgw's bench config (e.g. limits.max_body).
    fastgw_extra: dict[str, Any] | None = None
    nginx_http: str = ""
    #: Scenarios whose routes (and nginx locations) the proxies carry.
    scenarios: Sequence[Scenario] = ()
    backend: Server | None = None
    #: RSS of each proxy's tree right after it started, before any request: the "before" of the
    #: memory figures (a warm-up's allocations, kept by the allocator, would hide in a later one).
    baseline_rss: dict[str, int] = field(default_factory=dict)

    def start_backend(self) -> tuple[str, int]:
        prefix = self.tmp / "backend"
        prefix.mkdir()
        port = free_port()
        workers = self.placement.wrk_threads
        conf = nginx.backend_config(prefix, port, workers, self.connections, self.body_sizes)
        self.backend = nginx.start("backend", prefix, conf, port, workers, None)
        pinning.set_tree_affinity(self.backend.pid, self.placement.load)
        self.backend_address = ("127.0.0.1", port)
        return self.backend_address

    def start_proxies(self, tag: str) -> dict[str, Endpoint]:
        host, port = self.backend_address
        ends: dict[str, Endpoint] = {}
        if "direct" in self.targets:
            ends["direct"] = Endpoint(host, port, None, None)
        if "nginx" in self.targets:
            prefix = self.tmp / f"nginx-{tag}"
            prefix.mkdir()
            nport = free_port()
            conf = nginx.proxy_config(
                prefix, nport, self.workers, f"{host}:{port}", self.keepalive, self.scenarios, self.connections,
                self.nginx_http,
            )
            server = nginx.start("nginx", prefix, conf, nport, self.workers, self.placement.proxy)
            ends["nginx"] = Endpoint("127.0.0.1", nport, server, prefix / "access.log")
        if "fastgw" in self.targets:
            workdir = self.tmp / f"fastgw-{tag}"
            workdir.mkdir()
            gport = free_port()
            log = workdir / "access.log"
            doc = gateway.config(gport, self.workers, f"{host}:{port}", self.keepalive, log, self.scenarios)
            for key, value in (self.fastgw_extra or {}).items():
                doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
            ends["fastgw"] = Endpoint("127.0.0.1", gport, gateway.start(workdir, doc, self.placement.proxy), log)
        for target, end in ends.items():
            if end.server is not None:
                self.baseline_rss[target] = tree_rss(end.server.pid)
        return ends


def stop(ends: dict[str, Endpoint]) -> None:
    for end in ends.values():
        if end.server is not None:
            end.server.stop()


def measure(
    end: Endpoint,
    path: str,
    shape: wrk.RequestShape,
    load: wrk.Load,
    script: Path,
    cpus: tuple[int, ...] | None,
) -> dict[str, Any]:
    """One wrk run against `end`, with the proxy tree's CPU time per request and its RSS before
    and at its peak during the run (None for direct)."""
    argv = wrk.command(f"http://{end.host}:{end.port}{path}", shape, load, script, cpus)
    if end.server is None:
        result, _ = wrk.run(argv, load)
        return {"wrk": result.as_dict(), "cpu_us_per_request": None, "cpu_s": None, "memory": None}
    before = tree_ticks(end.server.pid)
    with PeakWatch(end.server.pid) as watch:
        result, _ = wrk.run(argv, load)
    after = tree_ticks(end.server.pid)
    if not end.server.alive():
        raise end.server.fail("died during the run")
    if end.access_log is not None and end.access_log.exists():
        os.truncate(end.access_log, 0)
    assert watch.result is not None
    return {
        "wrk": result.as_dict(),
        "cpu_us_per_request": us_per_request(before, after, result.requests),
        "cpu_s": (after - before) / os.sysconf("SC_CLK_TCK"),
        "memory": watch.result.as_dict(),
    }


def probe(end: Endpoint, path: str, method: str = "GET", body_bytes: int = 0) -> None:
    """One request before any load: a misrouted proxy answers 404 or 502 fast."""
    import http.client

    conn = http.client.HTTPConnection(end.host, end.port, timeout=30)
    try:
        conn.request(method, path, body=b"x" * body_bytes if body_bytes else None)
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    if not 200 <= resp.status < 400:
        raise ServerError(f"{end.host}:{end.port} answered {resp.status} to {method} {path}: fix the setup first")
