"""`python -m bench body`: throughput (GB/s), CPU per MiB and the proxy's peak memory as the body
size grows (default 4 KiB → 1 MiB → 100 MiB), streamed both ways: `download` (GET of an N-byte
response served by the built-in backend from a sparse file) and `upload` (POST of an N-byte
request body, read and discarded by the backend), for direct, nginx and fastgw.

The upload sink is a small uvloop server (bench/curves/sink.py) that answers only once it has read
the whole body: nginx's `return 200` answers before reading it, which would let a proxy relay the
answer while the body is still on its way.

A streaming proxy holds a bounded amount of each body at a time, so its peak memory must not grow
with the body size; one that buffers whole bodies grows linearly, and is flagged. nginx is set to
stream too: request bodies unbuffered (`proxy_request_buffering off`, as in `python -m bench`),
responses through its in-memory buffers without spooling to a temporary file
(`proxy_max_temp_file_size 0`), no body size limit on either proxy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from bench import nginx, pinning
from bench.curves import common, servers
from bench.run import TARGETS, rotation
from bench.scenarios import SMALL_PATH
from fastgw.loadtest import wrk
from fastgw.loadtest.procs import Server, free_port, install_cleanup, taskset
from fastgw.loadtest.tools import MissingTool
from fastgw.server.fdlimit import raise_nofile

METRICS = (
    common.Metric("gbps", "throughput", " GB/s", None, fmt=".3f"),
    common.Metric("cpu_us_per_mib", "CPU/MiB", " µs", 0.0, "copying a MiB costs the same in any body"),
    common.Metric("memory_growth", "peak memory", " MiB", 0.0, "streaming holds a bounded part of each body",
                  scale=1 / 2**20, fmt=".1f"),
)
DIRECTIONS = ("download", "upload")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench body", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=common.parse_ints, default=(4096, 2**20, 100 * 2**20),
                   help="body sizes in bytes, KiB, MiB (default 4KiB,1MiB,100MiB)")
    p.add_argument("--directions", default="download,upload", help="download, upload or both (default both)")
    p.add_argument("-c", "--connections", type=int, default=4, help="wrk connections (default 4)")
    p.add_argument("-d", "--duration", type=int, default=5, help="whole seconds per wrk run (default 5)")
    p.add_argument("-r", "--repeats", type=int, default=3, help="runs per point and target; medians (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="unrecorded seconds before each point and target (default 1)")
    p.add_argument("-w", "--workers", type=int, default=1, help="proxy workers (default 1)")
    p.add_argument("-t", "--targets", default="direct,nginx,fastgw", help="subset of direct,nginx,fastgw")
    p.add_argument("--keepalive", type=int, default=32, help="upstream keep-alive pool (default 32)")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="run unpinned")
    p.add_argument("-o", "--out", type=Path, default=common.OUT_DIR, help="output directory (default bench/out)")
    p.add_argument("--keep-temp", action="store_true", help="keep the generated configs and server logs")
    return p


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def point(size: int, label: str, direction: str, runs: list[dict[str, Any]], baseline: int | None) -> dict[str, Any]:
    """Medians of one point's runs. Bytes moved: the responses wrk read (download) or the bodies
    it sent (upload)."""
    moved = [
        (r["wrk"]["bytes"] if direction == "download" else r["wrk"]["requests"] * size) / r["wrk"]["duration_s"]
        for r in runs
    ]
    cpu_per_mib = [
        r["cpu_s"] * 1e6 / (r["wrk"]["requests"] * size / 2**20) if r["cpu_s"] is not None and r["wrk"]["requests"]
        else None
        for r in runs
    ]
    peaks = [r["memory"]["peak_rss"] for r in runs if r["memory"]]
    peak = _median(peaks) if peaks else None
    return {
        "x": size,
        "target": label,
        "direction": direction,
        "gbps": _median(moved) / 1e9 if moved else None,
        "rps": _median([r["wrk"]["rps"] for r in runs]),
        "p99_ms": _median([r["wrk"]["latency_us"]["99"] / 1000 for r in runs]),
        "cpu_us_per_mib": _median(cpu_per_mib),
        "rss_started": baseline,
        "peak_rss": peak,
        "memory_growth": peak - baseline if peak is not None and baseline is not None else None,
        "errors": sum(sum(r["wrk"]["errors"].values()) for r in runs),
        "runs": runs,
    }


def start_sink(tmp: Path, cpus: tuple[int, ...] | None) -> tuple[str, int]:
    port = free_port()
    server = Server("upload sink", taskset(cpus, [sys.executable, "-m", "bench.curves.sink", "--port", str(port)]),
                    tmp / "sink.log", cwd=Path(__file__).resolve().parents[2])
    server.wait_listening(port, 1, timeout=15)
    return ("127.0.0.1", port)


def main(argv: list[str] | None = None, emit: Any = print) -> int:
    args = parser().parse_args(argv)
    targets = [t for t in TARGETS if t in args.targets.split(",")]
    directions = [d for d in DIRECTIONS if d in args.directions.split(",")]
    if not targets or not directions or args.duration < 1 or args.repeats < 1 or args.connections < 1:
        parser().error("--targets, --directions, --duration, --repeats and --connections: see --help")
    install_cleanup()
    try:
        wrk.binary()
    except MissingTool as exc:
        emit(f"python -m bench body: {exc}")
        return 2
    raise_nofile(4096)
    placement = pinning.plan(common.cpus(), args.workers, args.pin)
    curve = common.Curve("body", "body bytes", METRICS, vars(args), args.out)
    curve.start_note(emit)
    runs_total = len(args.sizes) * len(targets) * len(directions) * args.repeats
    estimate = runs_total * (args.duration + 0.5) + len(args.sizes) * len(targets) * len(directions) * (args.warmup + 2)
    emit(f"sizes {', '.join(map(common.human, args.sizes))}; {', '.join(directions)}; targets {', '.join(targets)}; "
         f"{placement.note}; {runs_total} runs of {args.duration} s: about {estimate / 60:.1f} min")
    stack = servers.Stack(
        curve.tmp, args.workers, placement, 4096, args.keepalive, targets, body_sizes=args.sizes,
        fastgw_extra={"limits": {"max_body": max(args.sizes) + 2**20}},
        nginx_http="    client_max_body_size 0;\n    proxy_max_temp_file_size 0;",
    )

    def points() -> None:
        backend = stack.start_backend()
        sink = start_sink(curve.tmp, placement.load) if "upload" in directions else None
        for size in args.sizes:
            for direction in directions:
                emit(f"\n== {common.human(size)} B {direction}")
                shape = wrk.Shape("GET") if direction == "download" else wrk.Shape(
                    "POST", size, (("Content-Type", "application/octet-stream"),))
                path = f"{nginx.BODY_PREFIX}{size}" if direction == "download" else SMALL_PATH
                script = curve.tmp / f"{direction}-{size}.lua"
                script.write_text(wrk.script(shape))
                threads = min(placement.wrk_threads, args.connections)
                load = wrk.Load(threads, args.connections, args.duration, timeout_s=30)
                stack.backend_address = backend if direction == "download" or sink is None else sink
                ends = stack.start_proxies(f"{direction}-{size}")
                try:
                    for end in ends.values():
                        servers.probe(end, path, shape.method, shape.body_bytes)
                    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
                    for repeat in range(args.repeats):
                        for target in rotation(targets, repeat):
                            if repeat == 0 and args.warmup:
                                servers.measure(ends[target], path, shape,
                                                wrk.Load(threads, args.connections, args.warmup, timeout_s=30),
                                                script, placement.load)
                            runs[target].append(servers.measure(ends[target], path, shape, load, script,
                                                                placement.load))
                    for target in targets:
                        label = target if direction == "download" else f"{target}-up"
                        curve.add(point(size, label, direction, runs[target], stack.baseline_rss.get(target)), emit)
                finally:
                    servers.stop(ends)

    notes = [
        "targets: NAME = download (GET of an N-byte response), NAME-up = upload (POST of an N-byte body). "
        "peak memory: the proxy's peak RSS during the runs (median) less its RSS when just started."
    ]
    return curve.run(points, emit, notes, args.keep_temp)


if __name__ == "__main__":
    sys.exit(main())
