"""One benchmark run: the backend, then for each worker count a case in which direct, nginx and
fastgw are measured by wrk on the same scenarios, interleaved, several times.

Why interleaved: on a shared or thermally varying machine, throughput drifts over minutes. Running
every target once per repeat (in an order that rotates each repeat), rather than all repeats of
one target back to back, spreads that drift over all targets alike, and the medians over repeats
then compare like with like.
"""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gateway, machine, nginx, pinning, report, tlscert
from bench.scenarios import Scenario, select
from fastgw.loadtest import plot, wrk
from fastgw.loadtest.cpu import tree_ticks, us_per_request
from fastgw.loadtest.procs import Server, ServerError, free_port, install_cleanup, stop_all
from fastgw.loadtest.tools import BENCH_EXTRA
from fastgw.loadtest.urls import parse_loopback_url

TARGETS = ("direct", "nginx", "fastgw")
#: Machine load (1-minute average) above which the run is flagged as not quiet.
QUIET_LOAD = 0.3
#: Per-run overhead beyond wrk's -d (process-tree walks, wrk start-up), for the time estimate.
RUN_OVERHEAD_S = 0.4


#: What ends a run as "aborted" with a message rather than a traceback: a server that would not
#: start or answer, wrk failing, the system refusing (sockets, files), a bad setting.
ERRORS: tuple[type[BaseException], ...] = (ServerError, wrk.WrkError, OSError, ValueError)


def run_to_end(work: Callable[[], None], emit: Callable[[str], None], finish: Callable[[str], None],
               errors: tuple[type[BaseException], ...] = ERRORS) -> int:
    """Runs a benchmark's `work()`, then, however that ended, stops every process it started and
    calls `finish(status)` to write what was measured with how the run ended: "complete" (exit
    status 0), "aborted: ..." by one of `errors`, which it names (1), or "interrupted"
    (re-raised)."""
    status = "aborted"
    try:
        work()
        status = "complete"
        return 0
    except errors as exc:
        status = f"aborted: {exc}"
        emit(f"\nERROR: {exc}")
        return 1
    except (KeyboardInterrupt, SystemExit):
        status = "interrupted"
        raise
    finally:
        stop_all()
        finish(status)


def rotation(targets: Sequence[str], repeat: int) -> list[str]:
    """The targets in the order of repeat number `repeat`: rotated by one each repeat, so that no
    target always runs first (or right after another) while the machine drifts."""
    shift = repeat % len(targets)
    return [*targets[shift:], *targets[:shift]]


@dataclass(frozen=True)
class Options:
    #: wrk takes whole seconds.
    duration_s: int
    repeats: int
    warmup_s: int
    workers: tuple[int, ...]
    scenarios: tuple[str, ...] | None
    targets: tuple[str, ...]
    connections: int
    threads: int | None
    pin: bool
    backend_url: str | None
    backend_workers: int | None
    keepalive: int
    out_dir: Path
    keep_temp: bool
    #: fastgw's per-request metrics on (the default, as deployed) or off, to measure their cost.
    metrics: bool = True
    #: Seconds between scrapes of fastgw's /metrics during its runs (None: no scraping), to see
    #: what a Prometheus server polling the gateway does to its latency.
    scrape_s: float | None = None


@dataclass(frozen=True)
class Backend:
    """Where every target's requests end up: `direct` is this URL."""

    host: str
    port: int
    #: The path sent by every scenario when the backend is the user's; None for the built-in one.
    path: str | None
    server: Server | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Scraper:
    """GETs fastgw's /metrics every `interval` seconds from a thread while a run lasts (nothing
    without a port): a Prometheus server's load on the gateway. Its CPU is the gateway's, so it
    counts in the CPU per request as it would in production."""

    def __init__(self, port: int | None, interval: float | None) -> None:
        self.port = port
        self.interval = interval
        self.scrapes = 0
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        if self.port is not None and self.interval is not None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)

    def _run(self) -> None:
        assert self.port is not None and self.interval is not None
        while not self.stop.wait(self.interval):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"/metrics answered {response.status}")
                self.scrapes += 1
            finally:
                conn.close()


def _probe(host: str, port: int, path: str, scenario: Scenario) -> int:
    """One request as the scenario sends it, before any load: a misrouted proxy answers 404 or
    502 fast and would otherwise look like a very quick proxy."""
    conn: http.client.HTTPConnection
    if scenario.tls:
        conn = http.client.HTTPSConnection(host, port, timeout=5, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        body = b"x" * scenario.body_bytes if scenario.body_bytes else None
        conn.request(scenario.method, path, body=body, headers=dict(scenario.headers))
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@dataclass(frozen=True)
class Endpoint:
    """A target as wrk sees it, with the proxy whose process tree is accounted (None for direct)."""

    host: str
    port: int
    server: Server | None
    #: Emptied after every run: both proxies append (O_APPEND) a line per request, gigabytes over
    #: a full run, and truncating keeps the per-request write cost while bounding the disk used.
    access_log: Path | None
    #: The TLS listener of the TLS scenarios (same certificate on both proxies), or None.
    tls_port: int | None = None
    #: fastgw's admin listener when its /metrics is scraped during runs (`--scrape`), or None.
    admin_port: int | None = None

    def port_for(self, scenario: Scenario) -> int:
        return self.tls_port if scenario.tls and self.tls_port is not None else self.port


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.scenarios = select(opts.scenarios, user_backend=opts.backend_url is not None)
        self.cpus = sorted(os.sched_getaffinity(0))
        self.placements = {w: pinning.plan(self.cpus, w, opts.pin) for w in opts.workers}
        self.tmp = Path(tempfile.mkdtemp(prefix="fastgw-bench-"))
        self.stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.json_path = opts.out_dir / f"bench-{self.stamp}.json"
        self.png_path = opts.out_dir / f"bench-{self.stamp}.png"
        self.scripts = {s.name: self._script(s) for s in self.scenarios}
        self.cert = tlscert.make_cert(self.tmp) if any(s.tls for s in self.scenarios) else None
        self.started = time.monotonic()
        self.done = 0
        self.doc: dict[str, Any] = {
            "kind": "fastgw-bench-wrk",
            "format": 1,
            "command": [Path(sys.executable).name, "-m", "bench", *sys.argv[1:]],
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "status": "running",
            "machine": machine.describe(need_fastgw="fastgw" in opts.targets),
            "load_average": {"start": machine.load_average()},
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
            "scenarios": [
                {
                    "name": s.name,
                    "summary": s.summary,
                    "method": s.method,
                    "path": s.path,
                    "body_bytes": s.body_bytes,
                    "headers": dict(s.headers),
                    "nginx_equivalent": s.nginx_equivalent,
                    "direct_path": s.direct_path or s.path,
                    "direct_calls": s.direct_calls,
                }
                for s in self.scenarios
            ],
            "cases": [],
        }

    def _script(self, scenario: Scenario) -> Path:
        path = self.tmp / f"wrk-{scenario.name}.lua"
        path.write_text(wrk.script(scenario))
        return path

    def targets_for(self, scenario: Scenario) -> list[str]:
        return [
            t for t in self.opts.targets
            if (t != "nginx" or scenario.nginx_equivalent) and (t != "direct" or not scenario.tls)
        ]

    def total_runs(self) -> int:
        per_case = sum(len(self.targets_for(s)) for s in self.scenarios)
        return per_case * self.opts.repeats * len(self.opts.workers)

    def estimate_s(self) -> float:
        per_case = sum(len(self.targets_for(s)) for s in self.scenarios)
        warm = per_case * len(self.opts.workers) * (self.opts.warmup_s + RUN_OVERHEAD_S) if self.opts.warmup_s else 0
        return self.total_runs() * (self.opts.duration_s + RUN_OVERHEAD_S) + warm

    # -- servers ---------------------------------------------------------------------------------

    def start_backend(self) -> Backend:
        if self.opts.backend_url:
            host, port, path = parse_loopback_url(self.opts.backend_url, "--backend")
            return Backend(host, port, path, None)
        workers = self.opts.backend_workers or max(p.wrk_threads for p in self.placements.values())
        prefix = self.tmp / "backend"
        prefix.mkdir()
        port = free_port()
        server = nginx.start("backend", prefix, nginx.backend_config(prefix, port, workers), port, workers, None)
        self.doc["backend"] = {
            "kind": "nginx return 200 / static 4 KiB file",
            "workers": workers,
            "address": f"127.0.0.1:{port}",
        }
        return Backend("127.0.0.1", port, None, server)

    def start_proxies(self, workers: int, placement: pinning.Placement, backend: Backend) -> dict[str, Endpoint]:
        out: dict[str, Endpoint] = {}
        if "direct" in self.opts.targets:
            out["direct"] = Endpoint(backend.host, backend.port, None, None)
        if "nginx" in self.opts.targets:
            prefix = self.tmp / f"nginx-w{workers}"
            prefix.mkdir()
            port = free_port()
            tls = (free_port(), *self.cert) if self.cert is not None else None
            conf = nginx.proxy_config(
                prefix, port, workers, backend.address, self.opts.keepalive, self.scenarios, tls=tls
            )
            out["nginx"] = Endpoint(
                "127.0.0.1",
                port,
                nginx.start("nginx", prefix, conf, port, workers, placement.proxy),
                prefix / "access.log",
                tls[0] if tls is not None else None,
            )
        if "fastgw" in self.opts.targets:
            workdir = self.tmp / f"fastgw-w{workers}"
            workdir.mkdir()
            port = free_port()
            log = workdir / "access.log"
            tls = (free_port(), *self.cert) if self.cert is not None else None
            doc = gateway.config(
                port, workers, backend.address, self.opts.keepalive, log, self.scenarios, metrics=self.opts.metrics,
                tls=tls,
            )
            admin_port = None
            if self.opts.scrape_s is not None:
                admin_port = free_port()
                doc["admin"] = {"address": f"127.0.0.1:{admin_port}"}
            server = gateway.start(workdir, doc, placement.proxy)
            out["fastgw"] = Endpoint("127.0.0.1", port, server, log, tls[0] if tls is not None else None, admin_port)
        return out

    # -- runs ------------------------------------------------------------------------------------

    def path_of(self, scenario: Scenario, backend: Backend, target: str) -> str:
        if backend.path is not None:
            return backend.path
        if target == "direct" and scenario.direct_path is not None:
            return scenario.direct_path
        return scenario.path

    def measure(
        self,
        target: str,
        end: Endpoint,
        scenario: Scenario,
        backend: Backend,
        load: wrk.Load,
        cpus: tuple[int, ...] | None,
    ) -> dict[str, Any]:
        scheme = "https" if scenario.tls else "http"
        url = f"{scheme}://{end.host}:{end.port_for(scenario)}{self.path_of(scenario, backend, target)}"
        argv = wrk.command(url, scenario, load, self.scripts[scenario.name], cpus)
        roots = {
            "proxy": end.server.pid if end.server else None,
            "backend": backend.server.pid if backend.server else None,
        }
        before = {k: tree_ticks(pid) for k, pid in roots.items() if pid}
        with Scraper(end.admin_port, self.opts.scrape_s) as scraper:
            result, stdout = wrk.run(argv, load)
        after = {k: tree_ticks(pid) for k, pid in roots.items() if pid}
        if end.server is not None and not end.server.alive():
            raise end.server.fail("died during the run")
        if end.access_log is not None and end.access_log.exists():
            os.truncate(end.access_log, 0)
        return {
            "scenario": scenario.name,
            "target": target,
            "wrk": result.as_dict(),
            **{
                f"{k}_cpu_us_per_request": us_per_request(before[k], after[k], result.requests) if k in before else None
                for k in roots
            },
            "cpu_ticks": {k: after[k] - before[k] for k in before},
            "scrapes": scraper.scrapes,
            "wrk_command": argv,
            "wrk_stdout": stdout,
        }

    def run_case(self, workers: int, backend: Backend, emit: Callable[[str], None]) -> None:
        placement = self.placements[workers]
        load = wrk.Load(
            threads=self.opts.threads or placement.wrk_threads,
            connections=self.opts.connections,
            duration_s=self.opts.duration_s,
        )
        case: dict[str, Any] = {
            "workers": workers,
            "placement": asdict(placement),
            "wrk": {"threads": load.threads, "connections": max(load.connections, load.threads)},
            "settings": {"duration_s": load.duration_s, "repeats": self.opts.repeats},
            "runs": [],
            "summary": [],
        }
        self.doc["cases"].append(case)
        emit(f"\n== workers={workers}: {placement.note}")
        if backend.server is not None:
            pinning.set_tree_affinity(backend.server.pid, placement.load)
        ends = self.start_proxies(workers, placement, backend)
        try:
            for target, end in ends.items():
                for scenario in self.scenarios:
                    if target not in self.targets_for(scenario):
                        continue
                    path = self.path_of(scenario, backend, target)
                    status = _probe(end.host, end.port_for(scenario), path, scenario)
                    if not 200 <= status < 400:
                        raise ServerError(
                            f"{target} answered {status} to {scenario.method} {path} "
                            f"({scenario.name}): fix the setup before measuring it"
                        )
            for repeat in range(self.opts.repeats):
                for scenario in self.scenarios:
                    targets = self.targets_for(scenario)
                    for target in rotation(targets, repeat):
                        if repeat == 0 and self.opts.warmup_s:
                            warm = wrk.Load(load.threads, load.connections, self.opts.warmup_s)
                            self.measure(target, ends[target], scenario, backend, warm, placement.load)
                        run = self.measure(target, ends[target], scenario, backend, load, placement.load)
                        run = {"workers": workers, "repeat": repeat, **run}
                        case["runs"].append(run)
                        self.done += 1
                        emit(report.progress_line(self.done, self.total_runs(), time.monotonic() - self.started, run))
                case["summary"] = report.summarize(case["runs"])
                report.write_json(self.json_path, self.doc)
        finally:
            for end in ends.values():
                if end.server is not None:
                    end.server.stop()
        emit("\n" + report.table(case))

    def plot(self) -> None:
        m = self.doc["machine"]
        plot.bars(
            [{**c, "label": f"workers={c['workers']}"} for c in self.doc["cases"]],
            self.png_path,
            f"fastgw {m['fastgw'] or ''} vs nginx {m['nginx']} — {m['cpu_model']}, {m['cpus_online']} CPUs, "
            f"{self.doc['started']}",
        )

    def finish(self, status: str, emit: Callable[[str], None]) -> None:
        self.doc["status"] = status
        self.doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.doc["load_average"]["end"] = machine.load_average()
        report.write_json(self.json_path, self.doc)
        if plot.available():
            self.plot()
        else:
            emit(f"no plot: matplotlib is not installed ({BENCH_EXTRA})")
        emit(f"\nraw figures: {self.json_path}")
        if self.png_path.exists():
            emit(f"plot:        {self.png_path}")
        if self.opts.keep_temp:
            emit(f"configs and logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main(opts: Options, emit: Callable[[str], None] = print) -> int:
    install_cleanup()
    wrk.binary()
    if opts.backend_url is None or "nginx" in opts.targets:
        nginx.binary()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(opts)
    m = bench.doc["machine"]
    emit(
        f"fastgw bench: {m['cpu_model']}, {m['cpus_online']} CPUs, {m['kernel'].split(' #')[0]}, Python {m['python']}, "
        f"nginx {m['nginx']}, wrk {m['wrk']}, fastgw {m['fastgw'] or '-'} (commit {m['git_commit'][:12]})"
    )
    load1 = bench.doc["load_average"]["start"][0]
    if load1 > QUIET_LOAD:
        emit(
            f"WARNING: load average {load1:.2f} at start: the machine is not quiet; do not record these figures "
            "in RESULTS.md"
        )
    emit(
        f"scenarios: {', '.join(s.name for s in bench.scenarios)}; targets: {', '.join(opts.targets)}; "
        f"workers: {', '.join(map(str, opts.workers))}"
    )
    emit(f"{bench.total_runs()} runs of {opts.duration_s:g} s, about {bench.estimate_s() / 60:.1f} min")
    def work() -> None:
        backend = bench.start_backend()
        for workers in opts.workers:
            bench.run_case(workers, backend, emit)
        if len(opts.workers) > 1:
            emit("\n== all cases")
            for case in bench.doc["cases"]:
                emit("\n" + report.table(case))
        emit("\n" + report.LEGEND)

    return run_to_end(work, emit, lambda status: bench.finish(status, emit))
