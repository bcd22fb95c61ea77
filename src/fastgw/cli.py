"""Command line: `fastgw run|check|reload|stop|demo|bench`. Argument handling only; the work lives
in the config, server, demo and loadtest modules.

Exit statuses: 0 success; 1 the command failed (the gateway could not start, a reload failed, no
running master to signal, a timeout); 2 the configuration is invalid (or the command line is);
`bench` also 3: a tool it needs (wrk, Locust) is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from fastgw._version import __version__
from fastgw.config import ConfigError, load
from fastgw.config.check import check_main
from fastgw.loadtest.command import add_parser as add_bench_parser
from fastgw.server.procinfo import command_of, is_fastgw_master, is_running

POLL = 0.05
"""Seconds between looks at a master's state while `reload` and `stop` wait for it."""


def _pidfile_from(args: argparse.Namespace) -> str:
    pidfile: str | None = args.pidfile
    if pidfile is None and args.config:
        try:
            pidfile = load(args.config).pidfile
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(2) from None
    if pidfile is None:
        print("fastgw: no pidfile: give --pidfile, or -c with a config that sets 'pidfile'", file=sys.stderr)
        raise SystemExit(2)
    return pidfile


def _master_pid(pidfile: str) -> int:
    """The pid in `pidfile`, once it is checked to be a running fastgw master: a stale pidfile
    may name a pid the system has since given to an unrelated process, which must not be
    signalled."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"fastgw: cannot read pidfile {pidfile}: {reason} (is the gateway running?)", file=sys.stderr)
        raise SystemExit(1) from None
    if not is_fastgw_master(pid):
        if not is_running(pid):
            what = "no process runs with that pid"
        else:
            what = f"that is not a fastgw master but {command_of(pid) or 'a process whose command cannot be read'}"
        print(f"fastgw: pidfile {pidfile} names pid {pid}, but {what}: the pidfile is stale, nothing was signalled",
              file=sys.stderr)
        raise SystemExit(1)
    return pid


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config, host_checks=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.pidfile:
        import dataclasses

        config = dataclasses.replace(config, pidfile=os.path.abspath(args.pidfile))
    from fastgw.server.master import Master

    return Master(args.config, config).run()


def cmd_check(args: argparse.Namespace) -> int:
    return check_main(args.config)


def _read_status(path: str) -> dict[str, object] | None:
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def cmd_reload(args: argparse.Namespace) -> int:
    if args.config:
        try:
            load(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            print("fastgw: not reloading: the configuration is invalid", file=sys.stderr)
            return 2
    pidfile = _pidfile_from(args)
    pid = _master_pid(pidfile)
    status_path = f"{pidfile}.status"
    before = _read_status(status_path)
    requests_before = before.get("reload_requests", 0) if before and before.get("pid") == pid else 0
    assert isinstance(requests_before, int)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"fastgw: master {pid} is gone", file=sys.stderr)
        return 1
    # The master numbers reload requests and records the outcome of each attempt with the last
    # request it covers (see Master._record_reload): wait for one covering ours.
    ours = 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = _read_status(status_path)
        if state is not None and state.get("pid") == pid:
            seen = state.get("reload_requests", 0)
            if not ours and isinstance(seen, int) and seen > requests_before:
                ours = seen
            last = state.get("last_reload")
            if ours and isinstance(last, dict) and isinstance(last.get("request"), int) and last["request"] >= ours:
                if last.get("result") == "ok":
                    print(f"fastgw: reloaded: master {pid} serves generation {last.get('generation')}")
                    return 0
                error = str(last.get("error") or "unknown error").replace("\n", "\nfastgw:   ")
                print(f"fastgw: reload failed: {error}", file=sys.stderr)
                return 1
        if not is_running(pid):
            print(f"fastgw: master {pid} exited before the reload completed", file=sys.stderr)
            return 1
        time.sleep(POLL)
    if not os.path.exists(status_path):
        print(f"fastgw: reload signalled to master {pid}, but its outcome cannot be seen: no {status_path}",
              file=sys.stderr)
    else:
        print(f"fastgw: reload signalled to master {pid}, no outcome within {args.timeout:g}s", file=sys.stderr)
    return 1


def cmd_stop(args: argparse.Namespace) -> int:
    pid = _master_pid(_pidfile_from(args))
    try:
        os.kill(pid, signal.SIGQUIT if args.quick else signal.SIGTERM)
    except ProcessLookupError:
        print(f"fastgw: master {pid} is gone", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            print(f"fastgw: master {pid} stopped")
            return 0
        time.sleep(POLL)
    print(f"fastgw: master {pid} still running after {args.timeout:g}s", file=sys.stderr)
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from fastgw.demo import run_demo

    return run_demo(port=args.port, admin_port=args.admin_port, backend_port=args.backend_port)


def _version() -> str:
    try:
        import fastgw._core  # noqa: F401
        import fastgw._proxy  # noqa: F401

        core = "compiled core"
    except ImportError:
        core = "compiled core missing: run `make compile`"
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"fastgw {__version__} (Python {python}, {core})"


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgw",
        description="HTTP API gateway. Exit status: 0 ok, 1 failed, 2 invalid configuration.",
        epilog="See docs/operations.md for signals, reloads and the admin API.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_help = "the configuration file (YAML, or JSON when it ends in .json)"
    p = sub.add_parser("run", help="start the gateway (master + workers) in the foreground",
                       description="Start the gateway: validate the configuration, listen, fork the workers. "
                       "Runs until TERM/INT (graceful stop) or QUIT (immediate stop).")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help=config_help)
    p.add_argument("--pidfile", metavar="PATH",
                   help="write the master's pid to PATH (default: the config's 'pidfile'; none if unset)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a configuration and print its route table",
                       description="Validate FILE as `run` would and print the route table and `config ok` "
                       "(exit 0), or every problem as FILE:LINE: key.path: message (exit 2).")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help=config_help)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("reload", help="hot-reload a running gateway (HUP) and wait for the outcome",
                       description="Validate FILE (when given), send HUP to the master named by the pidfile, "
                       "and wait until it reports the reload's outcome: exit 0 when the new generation "
                       "serves, 1 when the reload failed (the old configuration keeps serving), 2 when "
                       "FILE is invalid (nothing is signalled).")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="the configuration to validate first; its 'pidfile' finds the master")
    p.add_argument("--pidfile", metavar="PATH", help="the running master's pidfile (default: the config's 'pidfile')")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="how long to wait for the outcome, in seconds (default: 60)")
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("stop", help="stop a running gateway (TERM, or QUIT with --quick) and wait for it",
                       description="Send TERM (graceful stop) or QUIT (--quick) to the master named by the "
                       "pidfile and wait until it has exited: exit 0 once it has, 1 otherwise.")
    p.add_argument("-c", "--config", metavar="FILE", help="a configuration whose 'pidfile' finds the master")
    p.add_argument("--pidfile", metavar="PATH", help="the running master's pidfile (default: the config's 'pidfile')")
    p.add_argument("--quick", action="store_true",
                   help="immediate stop (QUIT): in-flight requests are cut instead of drained (default: graceful)")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="how long to wait for the master to exit, in seconds (default: 60)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("demo", help="start demo backends and the gateway on a built-in config (what `make run` does)",
                       description="Start three demo backends on 127.0.0.1 and the gateway in front of them, "
                       "and print commands to try. Ctrl-C stops everything.")
    p.add_argument("--port", type=_port, default=8080, metavar="PORT",
                   help="the gateway's port on 127.0.0.1 (default: 8080)")
    p.add_argument("--admin-port", type=_port, default=9901, metavar="PORT",
                   help="the admin API's port on 127.0.0.1 (default: 9901)")
    p.add_argument("--backend-port", type=_port, default=18081, metavar="PORT",
                   help="the first of the three consecutive ports of the demo backends (default: 18081)")
    p.set_defaults(func=cmd_demo)

    add_bench_parser(sub)  # `fastgw bench`: its options and its work live in fastgw.loadtest.command
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
