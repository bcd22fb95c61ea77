"""`fastgw bench`: load-test one of your services directly and through fastgw, in one run.

    fastgw bench http://127.0.0.1:9000/api/ping -c gateway.yaml

runs wrk against the service itself (direct) and through a fastgw started from your config (or an
already running gateway, `--gateway URL`), interleaved, several times, and prints req/s, p50/p99,
the latency the gateway adds and its CPU time per request; then writes a JSON report and a PNG.
`--locust` instead sends a fixed rate (one request, or a mix of weighted requests from a JSON file)
and reports the p50/p95/p99 the gateway adds at that rate.

Only this module's `add_parser` is imported by `fastgw`'s command line; the work (and wrk, Locust,
matplotlib) is reached when the command runs.

Exit status: 0 measured; 1 the measurement failed (requests failed, a server did not start or
died, a bound was exceeded); 2 the command line or the configuration is invalid; 3 a tool it
needs is missing (wrk, Locust, matplotlib for --plot), with how to install it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MISSING = 3

#: Per-run overhead beyond wrk's -d (wrk start-up, /proc walks), for the time estimate.
RUN_OVERHEAD_S = 0.4


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in text for c in "\r\n"):
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The `bench` subcommand, added to `fastgw`'s subparsers."""
    p = sub.add_parser(
        "bench",
        help="load-test a service directly and through fastgw (wrk or Locust): req/s, p50/p99, added latency",
        description="Load-test URL (one of your services, on this machine) directly and through fastgw: "
        "with -c FILE, through a fastgw started from that config; with --gateway URL, through one already "
        "running. Prints req/s, p50/p99, the latency the gateway adds and its CPU time per request; writes a "
        "JSON report and a PNG. wrk (closed loop, capacity) by default; --locust for a fixed rate. "
        "Exit status: 0 measured; 1 the measurement failed or a bound was exceeded; 2 invalid command line "
        "or configuration; 3 a tool is missing (wrk, Locust, matplotlib for --plot).",
        epilog="Load goes only to loopback addresses (127.0.0.0/8, ::1, localhost). See docs/operations.md, "
        "'Load testing your services'.",
    )
    p.add_argument("url", metavar="URL", help="the service itself, e.g. http://127.0.0.1:9000/api/ping")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", metavar="FILE",
                       help="start a fastgw from FILE (its first listen address) and send through it too")
    where.add_argument("--gateway", metavar="URL", help="send through this already running gateway too")
    p.add_argument("--pidfile", metavar="PATH",
                   help="with --gateway: its master's pidfile, for the CPU time per request")
    p.add_argument("--gateway-path", metavar="PATH",
                   help="the path to request through the gateway (default: URL's path)")
    p.add_argument("-d", "--duration", type=_positive_int, default=None, metavar="SECONDS",
                   help="seconds per run (default: 10 with wrk, 60 with --locust)")
    p.add_argument("-r", "--repeats", type=_positive_int, default=3, metavar="N",
                   help="wrk runs per target, interleaved; medians are reported (default: 3)")
    p.add_argument("--warmup", type=_non_negative_int, default=1, metavar="SECONDS",
                   help="unrecorded wrk run before each target's first (default: 1; 0: none)")
    p.add_argument("--connections", type=_positive_int, default=64, metavar="N",
                   help="wrk connections (default: 64)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="wrk threads (default: half the CPUs, 1 to 4)")
    p.add_argument("-X", "--method", default="GET", help="request method (default: GET)")
    p.add_argument("-H", "--header", type=_header, action="append", default=[], metavar="'NAME: VALUE'",
                   help="a request header; repeat for more")
    p.add_argument("--body-bytes", type=_non_negative_int, default=0, metavar="N",
                   help="send a request body of N bytes (default: none)")
    p.add_argument("--locust", action="store_true",
                   help="a fixed rate with Locust instead of wrk: the p50/p95/p99 the gateway adds at that rate")
    p.add_argument("--rate", type=float, default=100.0, metavar="R",
                   help="with --locust: total requests per second, below capacity (default: 100)")
    p.add_argument("--users", type=_positive_int, default=20, metavar="N",
                   help="with --locust: simulated users sharing the rate (default: 20)")
    p.add_argument("--mix", type=Path, metavar="FILE",
                   help="with --locust: a JSON list of weighted requests ({name, method, path, weight, "
                   "headers, body, expect}) sent to both, instead of URL's path")
    p.add_argument("--max-added-p99-ms", type=float, default=None, metavar="MS",
                   help="exit with status 1 if the gateway adds more than MS to the p99")
    p.add_argument("-o", "--out", type=Path, default=Path("."), metavar="DIR",
                   help="where the JSON and PNG go (default: the current directory)")
    plot = p.add_mutually_exclusive_group()
    plot.add_argument("--plot", dest="plot", action="store_true", default=None,
                      help="require the PNG (exit 3 if matplotlib is missing; default: drawn when it is installed)")
    plot.add_argument("--no-plot", dest="plot", action="store_false", help="no PNG")
    p.set_defaults(func=main)
    return p


@dataclass(frozen=True)
class Target:
    """Where a run sends: `direct` (the service) or `gateway`, and the gateway's master pid for
    CPU accounting (None when unknown)."""

    name: str
    host: str
    port: int
    path: str
    pid: int | None

    @property
    def url(self) -> str:
        from fastgw.loadtest.urls import http_url

        return http_url(self.host, self.port, self.path)


@dataclass(frozen=True)
class Shape:
    method: str
    body_bytes: int
    headers: tuple[tuple[str, str], ...]


class Usage(ValueError):
    """The command line or the configuration cannot be used: exit 2."""


def _listen_target(config_path: str, path: str) -> tuple[str, int]:
    """Where a gateway started from `config_path` will listen: its first listen address, as a
    loopback address to send to."""
    import ipaddress

    from fastgw.config import ConfigError, load

    try:
        config = load(config_path)
    except ConfigError as exc:
        raise Usage(str(exc)) from None
    if not config.listen:
        raise Usage(f"{config_path}: no listen address")
    address = config.listen[0].address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "localhost": "127.0.0.1", "": "127.0.0.1"}.get(
        address.host, address.host
    )
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Usage(
            f"{config_path}: the first listen address {address} is not a loopback or wildcard address; "
            "fastgw bench sends load to loopback only: listen on 127.0.0.1 (or 0.0.0.0) in the config you bench"
        )
    return host, address.port


def _gateway_pid(pidfile: str) -> int:
    from fastgw.server.procinfo import is_fastgw_master

    try:
        pid = int(Path(pidfile).read_text().strip())
    except (OSError, ValueError) as exc:
        raise Usage(f"--pidfile {pidfile}: cannot read a pid: {exc}") from None
    if not is_fastgw_master(pid):
        raise Usage(f"--pidfile {pidfile}: pid {pid} is not a running fastgw master")
    return pid


def _probe(target: Target, shape: Shape) -> int:
    """One request before any load: a misrouted gateway answering 404 or 502 fast would otherwise
    look like a very quick one."""
    import http.client

    conn = http.client.HTTPConnection(target.host, target.port, timeout=5)
    try:
        body = b"x" * shape.body_bytes if shape.body_bytes else None
        conn.request(shape.method, target.path, body=body, headers=dict(shape.headers))
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _plus_ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:+.2f} ms"


class Bench:
    """One `fastgw bench` run: targets, runs, the report."""

    def __init__(self, args: argparse.Namespace, emit: Callable[[str], None]) -> None:
        self.args = args
        self.emit = emit
        self.stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.base = args.out / f"fastgw-bench-{self.stamp}"
        self.tmp = Path(tempfile.mkdtemp(prefix="fastgw-bench-"))
        self.shape = Shape(args.method.upper(), args.body_bytes, tuple(args.header))
        self.targets: list[Target] = []
        self.gateway_log: Path | None = None
        self.server: Any = None
        self.doc: dict[str, Any] = {}

    # -- setting up ------------------------------------------------------------------------------

    def resolve_targets(self) -> None:
        from fastgw.loadtest.urls import parse_loopback_url

        try:
            host, port, path = parse_loopback_url(self.args.url, "URL", allow_ipv6=True)
            self.targets.append(Target("direct", host, port, path, None))
            gw_path = self.args.gateway_path or path
            if not gw_path.startswith("/"):
                raise Usage(f"--gateway-path {gw_path}: must start with /")
            if self.args.gateway:
                ghost, gport, gpath = parse_loopback_url(self.args.gateway, "--gateway", allow_ipv6=True)
                pid = _gateway_pid(self.args.pidfile) if self.args.pidfile else None
                self.targets.append(Target("gateway", ghost, gport, self.args.gateway_path or gpath, pid))
            elif self.args.config:
                ghost, gport = _listen_target(self.args.config, gw_path)
                self.targets.append(Target("gateway", ghost, gport, gw_path, None))
        except ValueError as exc:
            raise Usage(str(exc)) from None
        if self.args.pidfile and not self.args.gateway:
            raise Usage("--pidfile goes with --gateway (with -c the gateway is started, and its pid known)")

    def start_gateway(self) -> None:
        """With -c: start it and wait until it serves; its pid is then the one accounted."""
        from fastgw.loadtest import gateway

        if not self.args.config:
            return
        self.gateway_log = self.tmp / "fastgw.log"
        self.emit(f"starting fastgw run -c {self.args.config} (log: {self.gateway_log})")
        server = gateway.start(Path(self.args.config), self.gateway_log)
        self.server = server
        i = next(i for i, t in enumerate(self.targets) if t.name == "gateway")
        t = self.targets[i]
        self.targets[i] = Target(t.name, t.host, t.port, t.path, server.pid)

    def probe(self) -> None:
        from fastgw.loadtest.procs import ServerError

        for target in self.targets:
            if self.args.mix:
                continue  # the mix's own requests say what they expect
            try:
                status = _probe(target, self.shape)
            except OSError as exc:
                raise ServerError(f"{target.name} {target.url}: {exc}") from None
            if not 200 <= status < 400:
                raise ServerError(
                    f"{target.name} answered {status} to {self.shape.method} {target.url}: "
                    "fix the URL or the route before measuring it"
                )

    def header(self, tool: str) -> dict[str, Any]:
        from fastgw.loadtest import machine

        return {
            "kind": f"fastgw-bench-{tool}",
            "format": 1,
            "command": ["fastgw", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else ["fastgw", "bench"],
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine.describe(),
            "load_average": {"start": machine.load_average()},
            "targets": [
                {"name": t.name, "url": t.url, "accounted_pid": t.pid} for t in self.targets
            ],
            "request": {"method": self.shape.method, "body_bytes": self.shape.body_bytes,
                        "headers": dict(self.shape.headers)},
        }

    # -- wrk -------------------------------------------------------------------------------------

    def run_wrk(self) -> int:
        from fastgw.loadtest import machine, report, wrk
        from fastgw.loadtest.cpu import tree_ticks, us_per_request

        args = self.args
        duration = args.duration or 10
        threads = args.threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        load = wrk.Load(threads=threads, connections=args.connections, duration_s=duration)
        script = self.tmp / "request.lua"
        script.write_text(wrk.script(self.shape))
        total = args.repeats * len(self.targets)
        estimate = total * (duration + RUN_OVERHEAD_S) + len(self.targets) * args.warmup
        self.emit(
            f"wrk {wrk.version()}: -t{threads} -c{max(args.connections, threads)}, {duration} s × {args.repeats} "
            f"repeats × {len(self.targets)} target(s), interleaved: about {estimate:.0f} s"
        )
        self.doc = {**self.header("wrk"), "settings": {
            "duration_s": duration, "repeats": args.repeats, "warmup_s": args.warmup,
            "threads": threads, "connections": max(args.connections, threads)}, "runs": []}
        runs: list[dict[str, Any]] = self.doc["runs"]
        done = 0
        started = time.monotonic()
        for repeat in range(args.repeats):
            shift = repeat % len(self.targets)
            for target in self.targets[shift:] + self.targets[:shift]:
                if repeat == 0 and args.warmup:
                    wrk.run(wrk.command(target.url, self.shape, wrk.Load(threads, args.connections, args.warmup),
                                        script), load)
                argv = wrk.command(target.url, self.shape, load, script)
                before = tree_ticks(target.pid) if target.pid else None
                result, stdout = wrk.run(argv, load)
                after = tree_ticks(target.pid) if target.pid else None
                self._check_alive()
                cpu = None
                if before is not None and after is not None:
                    cpu = us_per_request(before, after, result.requests)
                run = {"scenario": "request", "target": target.name, "repeat": repeat, "wrk": result.as_dict(),
                       "proxy_cpu_us_per_request": cpu, "backend_cpu_us_per_request": None,
                       "wrk_command": argv, "wrk_stdout": stdout}
                runs.append(run)
                done += 1
                lat = result.latency_us
                self.emit(
                    f"[{done}/{total} {time.monotonic() - started:>4.0f}s] {target.name:<7} #{repeat + 1}  "
                    f"{result.rps:>9,.0f} req/s  p50 {report.ms(lat['50']):>8}  p99 {report.ms(lat['99']):>8}"
                    + (f"  cpu {cpu:.1f} µs/req" if cpu is not None else "")
                    + (f"  !! {result.error_count} errors {result.errors}" if result.error_count else "")
                )
        summary = report.summarize(runs, subject="gateway", reference=None)
        added = report.added_latency(summary, "gateway", "direct").get("request")
        self.doc["summary"] = summary
        self.doc["added_us"] = added
        self.doc["load_average"]["end"] = machine.load_average()
        self.emit("")
        self.emit(self.table(summary, load))
        gw = next((r for r in summary if r["target"] == "gateway"), None)
        problems = []
        if added is not None:
            cpu = gw["proxy_cpu_us_per_request"] if gw else None
            self.emit(
                f"the gateway adds: p50 {_plus_ms(added['50'])}, p99 {_plus_ms(added['99'])}"
                + (f"; it spends {cpu:.1f} µs of CPU per request (master and workers)" if cpu is not None else "")
            )
            bound = args.max_added_p99_ms
            if bound is not None and (added["99"] is None or added["99"] / 1000 > bound):
                problems.append(f"the gateway adds {_plus_ms(added['99'])} to the p99: more than "
                                f"--max-added-p99-ms {args.max_added_p99_ms:g}")
        errors = sum(r["errors"] for r in summary)
        if errors:
            problems.append(f"{errors} requests failed (socket errors or statuses other than 2xx/3xx): "
                            "the figures are not comparable")
        self.doc["problems"] = problems
        self.doc["status"] = "failed" if problems else "complete"
        self.emit(
            "wrk is a closed loop: these are capacity figures, and the latencies are those at full load "
            "(--locust measures them at a fixed rate)."
        )
        self.write(lambda png: self._bars(png, summary, load))
        for problem in problems:
            self.emit(f"FAILED: {problem}")
        return EXIT_FAILED if problems else 0

    def table(self, summary: list[dict[str, Any]], load: Any) -> str:
        from fastgw.loadtest.report import ms, num

        head = (f"{'target':<8} {'req/s':>10} {'spread':>7} {'p50':>8} {'p99':>8} {'p99.9':>8} "
                f"{'CPU µs/req':>10} {'errors':>7}")
        lines = [f"medians of {self.args.repeats} runs, wrk -t{load.threads} -c{max(load.connections, load.threads)}, "
                 f"{load.duration_s} s each", head, "─" * len(head)]
        for row in summary:
            spread = (row["rps_max"] - row["rps_min"]) / row["rps"] * 50 if row["rps"] else 0.0
            lat = row["latency_us"]
            lines.append(
                f"{row['target']:<8} {row['rps']:>10,.0f} {'±' + format(spread, '.1f') + '%':>7} {ms(lat['50']):>8} "
                f"{ms(lat['99']):>8} {ms(lat.get('99.9')):>8} {num(row['proxy_cpu_us_per_request'], '.1f'):>10} "
                f"{row['errors']:>7}"
            )
        return "\n".join(lines)

    def _bars(self, png: Path, summary: list[dict[str, Any]], load: Any) -> None:
        from fastgw.loadtest import plot

        plot.bars([{"summary": summary, "label": f"wrk -c{load.connections}"}], png,
                  f"fastgw bench {self.args.url}: direct and through the gateway, {self.doc['started']}")

    # -- Locust ----------------------------------------------------------------------------------

    def run_locust(self) -> int:
        from fastgw.loadtest import locust, machine, mix
        from fastgw.loadtest.cpu import tree_ticks, us_per_request

        args = self.args
        duration = args.duration or 60
        if args.rate <= 0:
            raise Usage("--rate must be positive")
        settings = locust.Settings(args.rate, args.users, duration)
        self.doc = {**self.header("locust"), "settings": {"rate": args.rate, "users": args.users,
                                                           "duration_s": duration}, "runs": {}}
        self.emit(f"Locust: {args.rate:g} req/s from {args.users} users, {duration} s per target, "
                  f"{len(self.targets)} target(s): about {len(self.targets) * (duration + 5)} s")
        outcomes: dict[str, Any] = {}
        for target in self.targets:
            if args.mix:
                try:
                    endpoints = mix.load(args.mix)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise Usage(f"--mix {args.mix}: {exc}") from None
            else:
                endpoints = (mix.Endpoint(f"{self.shape.method} {target.path}", self.shape.method, target.path,
                                          body=b"x" * self.shape.body_bytes if self.shape.body_bytes else None,
                                          headers=dict(self.shape.headers), expect=()),)
            mix_file = self.tmp / f"mix-{target.name}.json"
            mix.dump(endpoints, mix_file)
            self.emit(f"\n== {target.name}: {target.url}")
            host = target.url[: -len(target.path)] if target.url.endswith(target.path) else target.url
            before = tree_ticks(target.pid) if target.pid else None
            outcome = locust.run(host, mix_file, settings, self.base.with_name(f"{self.base.name}-{target.name}"),
                                 self.emit)
            after = tree_ticks(target.pid) if target.pid else None
            self._check_alive()
            total = outcome.total or {}
            cpu = (us_per_request(before, after, total.get("requests", 0))
                   if before is not None and after is not None else None)
            outcomes[target.name] = outcome
            self.doc["runs"][target.name] = {"exit_status": outcome.exit_status, "final_ms": outcome.final,
                                             "history_ms": outcome.history, "csv_prefix": str(outcome.prefix),
                                             "cpu_us_per_request": cpu}
        self.doc["load_average"]["end"] = machine.load_average()
        problems = []
        self.emit("")
        for name, outcome in outcomes.items():
            t = outcome.total
            if t is None:
                problems.append(f"{name}: Locust wrote no statistics (exit status {outcome.exit_status})")
                continue
            cpu = self.doc["runs"][name]["cpu_us_per_request"]
            self.emit(f"{name:<8} {t['requests']} requests, {t['rps'] or 0:.0f} req/s, {t['failures']} failed: "
                      f"p50 {locust.ms(t['p50'])}, p95 {locust.ms(t['p95'])}, p99 {locust.ms(t['p99'])}"
                      + (f"; CPU {cpu:.1f} µs/req" if cpu is not None else ""))
            if t["failures"]:
                problems.append(f"{name}: {t['failures']} of {t['requests']} requests failed "
                                f"(see {outcome.file('_failures.csv')})")
            if t["rps"] is not None and t["rps"] < locust.RATE_SHORTFALL * args.rate:
                self.emit(f"WARNING: {name}: {t['rps']:.0f} req/s sent of the {args.rate:g} asked: Locust or "
                          "the service could not keep up; the latencies are not those of the asked rate")
        added = None
        if "gateway" in outcomes and "direct" in outcomes:
            added = locust.added(outcomes["gateway"].total, outcomes["direct"].total)
            plus = {k: "-" if v is None else f"{v:+.0f} ms" for k, v in added.items()}
            self.emit(f"the gateway adds: p50 {plus['p50']}, p95 {plus['p95']}, p99 {plus['p99']} "
                      "(Locust's whole milliseconds: ±1 ms)")
            if args.max_added_p99_ms is not None and (added["p99"] is None or added["p99"] > args.max_added_p99_ms):
                problems.append(f"the gateway adds {plus['p99']} to the p99: more than --max-added-p99-ms "
                                f"{args.max_added_p99_ms:g}")
        self.doc["added_ms"] = added
        self.doc["problems"] = problems
        self.doc["status"] = "failed" if problems else "complete"
        self.doc["note"] = locust.NOTE
        self.emit(locust.NOTE)
        self.write(lambda png: self._timeline(png, outcomes))
        for problem in problems:
            self.emit(f"FAILED: {problem}")
        return EXIT_FAILED if problems else 0

    def _timeline(self, png: Path, outcomes: dict[str, Any]) -> None:
        from fastgw.loadtest import plot

        plot.timeline({k: o.history for k, o in outcomes.items()}, png,
                      f"fastgw bench --locust {self.args.url}: {self.args.rate:g} req/s asked; p50/p95/p99 over "
                      "a ~10 s window")

    # -- output ----------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.server is not None and not self.server.alive():
            raise self.server.fail("the gateway died during the run")

    def write(self, draw: Callable[[Path], None]) -> None:
        from fastgw.loadtest import plot, report
        from fastgw.loadtest.tools import BENCH_EXTRA

        json_path = self.base.with_suffix(".json")
        self.doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        report.write_json(json_path, self.doc)
        self.emit(f"JSON: {json_path}")
        if self.args.plot is False:
            return
        if not plot.available():
            self.emit(f"no plot: matplotlib is not installed ({BENCH_EXTRA})")
            return
        png = self.base.with_suffix(".png")
        draw(png)
        if png.exists():
            self.emit(f"plot: {png}")

    def close(self) -> None:
        import shutil

        from fastgw.loadtest.procs import stop_all

        stop_all()
        if self.doc.get("status") != "complete" and self.gateway_log is not None and self.gateway_log.exists():
            kept = self.base.with_name(self.base.name + "-fastgw.log")
            try:
                shutil.copy(self.gateway_log, kept)
                self.emit(f"the gateway's log: {kept}")
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _preflight(args: argparse.Namespace) -> None:
    """Every tool the run will need, before anything starts."""
    from fastgw.loadtest import plot, tools

    if args.locust:
        tools.require_module("locust", "fastgw bench --locust")
    else:
        tools.wrk_binary()
    if args.plot and not plot.available():
        tools.require_module("matplotlib", "the plot (--plot)")


def main(args: argparse.Namespace, emit: Callable[[str], None] | None = None) -> int:
    from fastgw.loadtest.procs import ServerError, install_cleanup
    from fastgw.loadtest.tools import MissingTool
    from fastgw.loadtest.wrk import WrkError
    from fastgw.server.fdlimit import raise_nofile

    say = emit or (lambda line: print(line, flush=True))

    def fail(code: int, message: str) -> int:
        print(f"fastgw bench: {message}", file=sys.stderr)
        return code

    if args.locust and (args.gateway_path and args.mix):
        return fail(EXIT_USAGE, "--gateway-path has no effect with --mix (the mix's paths go to both)")
    if args.mix and not args.locust:
        return fail(EXIT_USAGE, "--mix goes with --locust")
    bench = Bench(args, say)
    try:
        try:
            bench.resolve_targets()
            _preflight(args)
            args.out.mkdir(parents=True, exist_ok=True)
        except Usage as exc:
            return fail(EXIT_USAGE, str(exc))
        except MissingTool as exc:
            return fail(EXIT_MISSING, str(exc))
        except OSError as exc:
            return fail(EXIT_USAGE, f"-o {args.out}: {exc.strerror or exc}")
        install_cleanup()
        raise_nofile(args.connections * 2 + 1024)
        if len(bench.targets) == 1:
            say("no gateway given (-c FILE or --gateway URL): measuring the service alone")
        bench.start_gateway()
        bench.probe()
        return bench.run_locust() if args.locust else bench.run_wrk()
    except Usage as exc:
        return fail(EXIT_USAGE, str(exc))
    except MissingTool as exc:
        return fail(EXIT_MISSING, str(exc))
    except (ServerError, WrkError, OSError) as exc:
        return fail(EXIT_FAILED, str(exc))
    finally:
        bench.close()
