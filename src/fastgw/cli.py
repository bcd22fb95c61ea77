"""Command line: `fastgw run|check|reload|stop|demo`. Argument handling only; the work lives in
the config, server and demo modules."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from fastgw.config import ConfigError, load
from fastgw.config.check import check_main


def _pid_from(args: argparse.Namespace) -> int:
    pidfile = args.pidfile
    if pidfile is None and args.config:
        try:
            pidfile = load(args.config).pidfile
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(2) from None
    if pidfile is None:
        print("fastgw: no pidfile: give --pidfile, or -c with a config that sets 'pidfile'", file=sys.stderr)
        raise SystemExit(2)
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError) as exc:
        print(f"fastgw: cannot read pidfile {pidfile}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _running(pid: int) -> bool:
    """Whether `pid` still runs; an exited process its parent has not reaped yet (a zombie)
    counts as stopped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
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


def cmd_reload(args: argparse.Namespace) -> int:
    if args.config:
        try:
            load(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            print("fastgw: not reloading: the configuration is invalid", file=sys.stderr)
            return 2
    pid = _pid_from(args)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"fastgw: no process {pid}", file=sys.stderr)
        return 1
    print(f"fastgw: reload signalled to master {pid}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    pid = _pid_from(args)
    try:
        os.kill(pid, signal.SIGQUIT if args.quick else signal.SIGTERM)
    except ProcessLookupError:
        print(f"fastgw: no process {pid}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            print(f"fastgw: master {pid} stopped")
            return 0
        time.sleep(0.05)
    print(f"fastgw: master {pid} still running after {args.timeout}s", file=sys.stderr)
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from fastgw.demo import run_demo

    return run_demo(port=args.port, admin_port=args.admin_port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastgw", description="HTTP API gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="start the gateway (master + workers)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--pidfile")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="validate a configuration and print its route table")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_check)
    for name, func, text in (("reload", cmd_reload, "hot-reload a running gateway (SIGHUP)"),
                             ("stop", cmd_stop, "stop a running gateway (SIGTERM, or SIGQUIT with --quick)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("-c", "--config")
        p.add_argument("--pidfile")
        if name == "stop":
            p.add_argument("--quick", action="store_true", help="do not drain in-flight requests")
            p.add_argument("--timeout", type=float, default=60.0)
        p.set_defaults(func=func)
    p = sub.add_parser("demo", help="start demo backends and the gateway on a built-in config")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--admin-port", type=int, default=9901)
    p.set_defaults(func=cmd_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))
