"""`python -m bench`: fastgw, nginx and the backend itself under wrk, in one run;
`python -m bench MODE ...` for a cost curve (MODE: connections, body, routes, ratelimit; see
bench/curves). See README.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.curves import MODES
from bench.run import TARGETS, Options, main, parse_loopback_url
from bench.scenarios import SCENARIOS


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be 1 or more: {text}")
    return values


def _targets(text: str) -> tuple[str, ...]:
    values = _csv(text)
    bad = [v for v in values if v not in TARGETS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"targets are {', '.join(TARGETS)}; got {text}")
    return tuple(t for t in TARGETS if t in values)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput and latency of fastgw against nginx (and the backend alone) with wrk, "
        "interleaved repeats, medians, CPU time per request. Output: a table, a JSON report and a PNG.",
        epilog="scenarios: " + "; ".join(f"{s.name} ({s.summary})" for s in SCENARIOS)
        + ". Cost curves: python -m bench {" + ",".join(MODES) + "} --help",
    )
    p.add_argument("-d", "--duration", type=int, default=5, help="whole seconds per wrk run (default 5)")
    p.add_argument(
        "-r", "--repeats", type=int, default=5, help="runs per scenario and target; medians are reported (default 5)"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="whole seconds of unrecorded load before the first run of each "
        "scenario and target (default 1; 0 for none)",
    )
    p.add_argument(
        "-w", "--workers", type=_ints, default=(1, 2), help="proxy worker counts, one case each (default 1,2)"
    )
    p.add_argument("-s", "--scenarios", type=_csv, default=None, help="comma-separated scenario names (default: all)")
    p.add_argument(
        "-t", "--targets", type=_targets, default=TARGETS, help="subset of direct,nginx,fastgw (default: all)"
    )
    p.add_argument("-c", "--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=None, help="wrk threads (default: one per load CPU)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="run everything unpinned")
    p.add_argument(
        "--backend",
        metavar="URL",
        default=None,
        help="benchmark your own service instead of the built-in backend: http://127.0.0.1:PORT/PATH "
        "(loopback only); every scenario then requests PATH",
    )
    p.add_argument(
        "--backend-workers",
        type=int,
        default=None,
        help="built-in backend's nginx workers (default: as many as wrk threads)",
    )
    p.add_argument(
        "--keepalive", type=int, default=32,
        help="upstream keep-alive pool size of both proxies (default 32: fastgw's default, nginx's usual)"
    )
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="output directory (default bench/out)",
    )
    p.add_argument("--keep-temp", action="store_true", help="keep the generated configs and server logs")
    p.add_argument(
        "--scrape", type=float, metavar="SECONDS", default=None,
        help="GET fastgw's /metrics (from an admin listener) every SECONDS during its runs, as Prometheus "
        "would; compare with a run without it to see what scraping does to p99 (default: no scraping)",
    )
    p.add_argument(
        "--metrics", choices=("on", "off"), default="on",
        help="fastgw's per-request metrics (`metrics: {enabled: ...}`); run both to see their cost (default on)",
    )
    return p


def cli(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in MODES:
        import importlib

        return int(importlib.import_module(f"bench.curves.{argv[0]}").main(argv[1:]))
    args = parser().parse_args(argv)
    if args.duration <= 0 or args.repeats < 1 or args.connections < 1:
        parser().error("--duration, --repeats and --connections must be positive")
    if args.backend:
        try:
            parse_loopback_url(args.backend, "--backend")
        except ValueError as exc:
            parser().error(str(exc))
    opts = Options(
        duration_s=args.duration,
        repeats=args.repeats,
        warmup_s=max(0, args.warmup),
        workers=args.workers,
        scenarios=args.scenarios,
        targets=args.targets,
        connections=args.connections,
        threads=args.threads,
        pin=args.pin,
        backend_url=args.backend,
        backend_workers=args.backend_workers,
        keepalive=args.keepalive,
        out_dir=args.out,
        keep_temp=args.keep_temp,
        metrics=args.metrics == "on",
        scrape_s=args.scrape,
    )
    try:
        return main(opts)
    except (ValueError, RuntimeError) as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
