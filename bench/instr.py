"""Instructions per request, counted by callgrind: `python -m bench.instr`.

Wall-clock CPU figures need a quiet machine; instruction counts do not. This runs one proxy worker
(fastgw or nginx) under `valgrind --tool=callgrind`, sends a warm-up batch, zeroes the counters
(`callgrind_control --dump`), sends a measured batch of sequential keep-alive requests, dumps again,
and divides the second dump's total by the batch size. What it counts is user-space work only
(the kernel's share of the same four syscalls per request is alike for both proxies), which is
exactly the part Python adds. The top functions of the measured dump are printed so that every
optimisation starts from a profile.

With `--syscalls`, the worker runs without valgrind and `strace -c` counts the system calls it
makes during the measured batch instead: the kernel's side of the same comparison. With `--cpu`,
it runs natively and its CPU time (user and system) per request is read from /proc: the figure to
trust where instruction counts mislead, as in TLS, whose crypto takes other code paths under
valgrind.

TLS scenarios: the client resumes each new connection's session from the one before, as wrk does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from bench import gateway, nginx, tlscert
from bench.scenarios import SCENARIOS, Scenario
from fastgw.loadtest import gateway as loadtest_gateway
from fastgw.loadtest.procs import Server, free_port, install_cleanup, stop_all, tree_pids

_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.M)


def _valgrind(out_dir: Path, argv: list[str]) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--dump-instr=no",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
        *argv,
    ]


def _measurable(scenario: Scenario) -> bool:
    """Sequential GETs without a body (the backend here is always the built-in one, so scenarios
    that need its 4 KiB JSON are measurable too)."""
    return scenario.method == "GET" and not scenario.body_bytes


def _closes(scenario: Scenario) -> bool:
    """The scenario opens a new client connection per request (`Connection: close`)."""
    return any(n.lower() == "connection" and v.lower() == "close" for n, v in scenario.headers)


def _request(scenario: Scenario) -> bytes:
    headers = "".join(f"{name}: {value}\r\n" for name, value in scenario.headers)
    return (
        f"GET {scenario.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench-instr\r\nAccept: */*\r\n{headers}\r\n"
    ).encode()


class _TlsClient:
    """The client side of TLS as wrk has it: one context, and each new connection resumes the
    session of the one before (wrk keeps its SSL object across reconnects), so a new-connection
    scenario measures resumed handshakes, as the wall-clock run does."""

    def __init__(self) -> None:
        self.context = ssl._create_unverified_context()
        self.session: ssl.SSLSession | None = None
        self.resumed = 0

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        return self.context.wrap_socket(sock, server_hostname="localhost", session=self.session)

    def keep(self, sock: ssl.SSLSocket) -> None:
        """TLS 1.3 tickets come after the handshake: the session is resumable once a response
        has been read."""
        self.resumed += sock.session_reused
        self.session = sock.session


def _connect(port: int, tls: _TlsClient | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    return tls.wrap(sock) if tls is not None else sock


def _send(port: int, n: int, request: bytes, new_connections: bool = False, tls: _TlsClient | None = None,
          conn: socket.socket | None = None) -> None:
    """`n` sequential requests, each response read in full: on one keep-alive connection (`conn`,
    kept by the caller so that the warm-up and the measured batch share it and no connection
    set-up, a TLS handshake above all, falls in the measured batch), or each on a connection of
    its own (`new_connections`), as wrk does with `Connection: close`; over TLS with `tls`."""
    if new_connections:
        for _ in range(n):
            with _connect(port, tls) as sock:
                _exchange(sock, request)
                if tls is not None:
                    tls.keep(sock)  # type: ignore[arg-type]
        return
    assert conn is not None
    for _ in range(n):
        _exchange(conn, request)


def _exchange(sock: socket.socket, request: bytes) -> None:
    sock.sendall(request)
    buf = b""
    while True:
        buf += sock.recv(65536)
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            continue
        m = re.search(rb"(?i)content-length:\s*(\d+)", buf[:head_end])
        if m and len(buf) >= head_end + 4 + int(m.group(1)):
            break
        if m is None and re.search(rb"(?i)transfer-encoding:\s*chunked", buf[:head_end]) and buf.endswith(b"0\r\n\r\n"):
            break  # a re-framed body (compressed): no trailers here, so the last chunk ends it


def _dump(pid: int, out_dir: Path, before: set[Path]) -> Path:
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = {p for p in out_dir.glob(f"callgrind.{pid}.*")} - before
        done = [p for p in new if _TOTALS.search(p.read_text(errors="replace"))]
        if done:
            return done[0]
        time.sleep(0.1)
    raise RuntimeError(f"callgrind did not dump pid {pid}")


def _count_syscalls(target: str, worker: int, out_dir: Path, requests: int, send: Callable[[], None]) -> float:
    """`strace -c` on the worker around `send`; prints the calls per request by name."""
    out = out_dir / "strace.txt"
    tracer = subprocess.Popen(["strace", "-c", "-q", "-o", str(out), "-p", str(worker)], stderr=subprocess.PIPE)
    # strace says nothing once attached: wait until the worker's status shows the tracer.
    deadline = time.monotonic() + 30
    while "TracerPid:\t0\n" in Path(f"/proc/{worker}/status").read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    send()
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    rows = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] not in ("syscall", "total") and fields[3].isdigit():
            rows[fields[-1]] = int(fields[3])
    total = sum(rows.values()) / requests
    detail = ", ".join(f"{name} {calls / requests:.2f}" for name, calls in sorted(rows.items(), key=lambda r: -r[1]))
    print(f"{target}: {total:.2f} syscalls/request ({requests} requests): {detail}")
    return total


def _cpu_time(target: str, worker: int, out_dir: Path, requests: int, send: Callable[[], None]) -> float:
    """The worker's CPU time around `send`, natively: the total from the scheduler (ns), split
    into user and system by the clock ticks of /proc/PID/stat. Where instructions mislead (OpenSSL
    picks its code path by CPU features, which valgrind masks), this is the figure to compare; it
    wants a quiet machine and a batch of a second or more."""

    def sample() -> tuple[int, int, int]:
        with open(f"/proc/{worker}/schedstat") as f:
            run_ns = int(f.read().split()[0])
        with open(f"/proc/{worker}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return run_ns, int(fields[11]), int(fields[12])

    before = sample()
    send()
    after = sample()
    run_us = (after[0] - before[0]) / 1000 / requests
    ticks = (after[1] - before[1]) + (after[2] - before[2])
    user = (after[1] - before[1]) / ticks if ticks else 0.0
    print(f"{target}: {run_us:.1f} µs CPU/request ({user:.0%} user, {1 - user:.0%} system; {requests} requests)")
    return run_us


def _worker_pid(master: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [p for p in tree_pids(master) if p != master]
        if kids:
            return kids[0]
        time.sleep(0.1)
    raise RuntimeError("no worker process")


def _busiest_child(master: int) -> int:
    """The child process that has used the most CPU time so far."""

    def cpu(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return -1
        return int(fields[11]) + int(fields[12])

    return max((p for p in tree_pids(master) if p != master), key=cpu)


def measure(
    target: str,
    backend_port: int,
    work: Path,
    warmup: int,
    requests: int,
    top: int,
    scenario: Scenario,
    keepalive: int = 64,
    metrics: bool = True,
    tracing: str | None = None,
    mode: str = "instructions",
) -> float:
    out_dir = work / f"cg-{target}"
    out_dir.mkdir()
    port = free_port()
    upstream = f"127.0.0.1:{backend_port}"
    request = _request(scenario)
    # TLS scenarios: both proxies on a TLS listener with the same certificate (bench/tlscert.py).
    tls = (free_port(), *tlscert.make_cert(work)) if scenario.tls else None

    def wrap(argv: list[str]) -> list[str]:
        return _valgrind(out_dir, argv) if mode == "instructions" else argv

    if target == "fastgw":
        doc = gateway.config(
            port, 1, upstream, keepalive, work / "fastgw-access.log", [scenario], metrics=metrics, tracing=tracing,
            tls=tls,
        )
        path = work / "fastgw.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        server = Server(
            "fastgw", wrap([sys.executable, "-m", "fastgw", "run", "-c", str(path)]), work / "fastgw.log"
        )
        server.wait_line(loadtest_gateway.READY, 300)
    else:
        prefix = work / "nginx-proxy"
        prefix.mkdir()
        conf = nginx.proxy_config(prefix, port, 1, upstream, keepalive, [scenario], tls=tls)
        server = Server(
            "nginx", wrap([nginx.binary(), "-p", str(prefix), "-c", str(conf)]), prefix / "stderr.log"
        )
        server.wait_listening(port, 2, timeout=300)
    try:
        _worker_pid(server.pid, 60)
        send_port = tls[0] if tls is not None else port
        client = _TlsClient() if tls is not None else None
        conn = None if _closes(scenario) else _connect(send_port, client)
        _send(send_port, warmup, request, _closes(scenario), client, conn)
        # the child that served the warm-up (nginx with proxy_cache also runs a cache manager)
        worker = _busiest_child(server.pid)
        def batch() -> None:
            _send(send_port, requests, request, _closes(scenario), client, conn)

        if mode != "instructions":
            count = _count_syscalls if mode == "syscalls" else _cpu_time
            result = count(target, worker, out_dir, requests, batch)
        else:
            first = _dump(worker, out_dir, set())
            batch()
            second = _dump(worker, out_dir, {first})
        if conn is not None:
            conn.close()
        if client is not None and _closes(scenario):
            print(f"{target}: {client.resumed} of {warmup + requests} TLS connections resumed")
        if mode != "instructions":
            return result
    finally:
        server.stop(30)
    total = int(_TOTALS.search(second.read_text(errors="replace")).group(1))  # type: ignore[union-attr]
    per_request = total / requests
    print(f"{target}: {per_request:,.0f} instructions/request (user space, {requests} requests after {warmup} warm-up)")
    if top:
        report = subprocess.run(
            ["callgrind_annotate", "--inclusive=no", "--threshold=99", str(second)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        rows = [line for line in report.splitlines() if re.match(r"^\s*[\d,]+ \(", line)]
        for line in rows[:top]:
            print("   ", line.strip()[:150])
    return per_request


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-t", "--targets", default="fastgw,nginx")
    ap.add_argument("-n", "--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--top", type=int, default=25, help="functions to list from the profile (0: none)")
    ap.add_argument(
        "-s", "--scenario", default="get-small",
        help="a GET scenario of bench/scenarios.py without a body (its route and nginx equivalent are set up)",
    )
    ap.add_argument(
        "--keepalive", type=int, default=64,
        help="idle upstream connections both proxies keep (0: a new upstream connection per request,"
        " which measures the connection set-up path; default 64)",
    )
    ap.add_argument(
        "--metrics", choices=("on", "off"), default="on",
        help="fastgw's per-request metrics; measure both to see what they cost per request (default on)",
    )
    ap.add_argument(
        "--tracing", metavar="SAMPLE", default=None,
        help="add a fastgw `tracing` section sampling SAMPLE of new traces (e.g. 0%% or 100%%; no export), "
        "to see what W3C trace propagation costs per request (default: no tracing)",
    )
    what = ap.add_mutually_exclusive_group()
    what.add_argument(
        "--syscalls", dest="mode", action="store_const", const="syscalls", default="instructions",
        help="count system calls per request with strace -c instead of instructions (no valgrind)",
    )
    what.add_argument(
        "--cpu", dest="mode", action="store_const", const="cpu",
        help="the worker's CPU time per request, natively (no valgrind; wants a quiet machine)",
    )
    args = ap.parse_args(argv)
    usable = {s.name: s for s in SCENARIOS if _measurable(s)}
    scenario = usable.get(args.scenario)
    if scenario is None:
        print(f"--scenario must be one of {', '.join(usable)}", file=sys.stderr)
        return 2
    tool = {"syscalls": "strace", "instructions": "valgrind"}.get(args.mode)
    if tool is not None and shutil.which(tool) is None:
        print(f"{tool} not found: apt-get install {tool}", file=sys.stderr)
        return 2
    install_cleanup()
    work = Path(tempfile.mkdtemp(prefix="fastgw-instr-"))
    backend_port = free_port()
    prefix = work / "nginx-backend"
    prefix.mkdir()
    backend = nginx.start("backend", prefix, nginx.backend_config(prefix, backend_port, 1), backend_port, 1, None)
    try:
        results = {
            t: measure(
                t, backend_port, work, args.warmup, args.requests, args.top, scenario, args.keepalive,
                args.metrics == "on", args.tracing, args.mode,
            )
            for t in args.targets.split(",")
            if t != "nginx" or scenario.nginx_equivalent  # no nginx row where nginx cannot do the work
        }
    finally:
        backend.stop()
        stop_all()
    if "fastgw" in results and "nginx" in results:
        unit = {"syscalls": "system calls", "cpu": "CPU time"}.get(args.mode, "instructions")
        print(f"fastgw/nginx: {results['fastgw'] / results['nginx']:.2f}x {unit} per request")
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
