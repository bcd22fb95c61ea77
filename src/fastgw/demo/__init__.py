"""`fastgw demo` (what `make run` starts): demo backends plus the gateway on a built-in config,
so a new user sees the gateway's features in a few minutes: routing and load balancing, rate
limits, API keys, the shared cache, aggregation, CORS, IP access lists, fixed responses and
redirects, the WebSocket bridge, gateway errors and the admin API."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources

from fastgw.server.children import end_processes

BACKENDS = ("users-1", "users-2", "orders")
"""The demo backends, on three consecutive ports from `backend_port`."""
BACKEND_START = 10.0
"""Seconds the demo backends have to start listening."""
BACKEND_STOP = 5.0
"""Seconds the demo backends have to exit on TERM before they are killed."""


def _config_text(port: int, admin_port: int, pidfile: str, backend_port: int = 18081) -> str:
    template = resources.files("fastgw.demo").joinpath("gateway.yaml").read_text()
    return (
        template.replace("@PORT@", str(port))
        .replace("@ADMIN_PORT@", str(admin_port))
        .replace("@PIDFILE@", pidfile)
        .replace("@USERS_1@", str(backend_port))
        .replace("@USERS_2@", str(backend_port + 1))
        .replace("@ORDERS@", str(backend_port + 2))
    )


def _python() -> str:
    """The interpreter that runs this demo (the venv's, where the test tools are installed)."""
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def _fastgw() -> str:
    """How to run the `fastgw` command of the interpreter that runs this demo (the venv's)."""
    script = os.path.join(os.path.dirname(sys.executable), "fastgw")
    if not os.path.exists(script):
        return f"{sys.executable} -m fastgw"
    relative = os.path.relpath(script)
    return script if relative.startswith("..") else relative


def busy_ports(port: int, admin_port: int, backend_port: int) -> list[str]:
    """One sentence per demo port that something on 127.0.0.1 already listens on, naming the
    holder and how to pick another port."""
    from fastgw.config.model import Address
    from fastgw.server.sockets import probe

    wanted = [
        (port, "gateway", f"`make run PORT={port + 1}` or `fastgw demo --port {port + 1}`"),
        (admin_port, "admin API",
         f"`make run ADMIN_PORT={admin_port + 1}` or `fastgw demo --admin-port {admin_port + 1}`"),
    ]
    following = backend_port + len(BACKENDS)
    wanted += [
        (backend_port + i, f"demo backend {name}",
         f"`make run BACKEND_PORT={following}` or `fastgw demo --backend-port {following}` "
         f"(the backends take {len(BACKENDS)} consecutive ports)")
        for i, name in enumerate(BACKENDS)
    ]
    problems = []
    for number, what, how in wanted:
        try:
            probe(Address("127.0.0.1", number))
        except OSError as exc:
            problems.append(f"{exc} (port for the {what}); pick another port with {how}")
    return problems


def run_demo(port: int, admin_port: int, backend_port: int = 18081) -> int:
    problems = busy_ports(port, admin_port, backend_port)
    if problems:
        for problem in problems:
            print(f"fastgw demo: {problem}", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="fastgw-demo-")
    config_path = os.path.join(workdir, "gateway.yaml")
    with open(config_path, "w") as f:
        f.write(_config_text(port, admin_port, os.path.join(workdir, "fastgw.pid"), backend_port))
    procs = [
        subprocess.Popen([sys.executable, "-m", "fastgw.demo.backend", name, str(backend_port + i)])
        for i, name in enumerate(BACKENDS)
    ]
    try:
        problem = _wait_for_backends(procs, backend_port)
        if problem is not None:
            print(f"fastgw demo: {problem}", file=sys.stderr)
            return 1
        print(_tour(port, admin_port, config_path), flush=True)
        from fastgw.cli import main

        return main(["run", "-c", config_path])
    finally:
        end_processes(procs, BACKEND_STOP)


def _wait_for_backends(procs: list[subprocess.Popen[bytes]], backend_port: int) -> str | None:
    """Waits until every demo backend accepts connections, so that the gateway's first requests
    find them (a backend takes a moment to import and bind); what went wrong, or None."""
    deadline = time.monotonic() + BACKEND_START
    for i, (name, proc) in enumerate(zip(BACKENDS, procs, strict=True)):
        while True:
            if proc.poll() is not None:
                return f"demo backend {name} exited (status {proc.returncode}) before listening"
            try:
                socket.create_connection(("127.0.0.1", backend_port + i), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    where = f"127.0.0.1:{backend_port + i}"
                    return f"demo backend {name} is not listening on {where} after {BACKEND_START:.0f}s"
                time.sleep(0.02)
    return None


def _tour(port: int, admin_port: int, config_path: str) -> str:
    """What to try, one command per feature of the demo config."""
    base = f"http://127.0.0.1:{port}"
    admin = f"http://127.0.0.1:{admin_port}"
    ws = f"ws://127.0.0.1:{port}/ws"
    return f"""
fastgw demo: config {config_path}
  curl -i {base}/api/users/42            # prefix route, /api/users stripped, balanced over users-1 and users-2
  curl -i {base}/api/orders/7/items      # {{param}} route to the orders service
  curl -i -X DELETE {base}/api/orders/7/items   # 405 with Allow
  curl -i {base}/nowhere                 # 404 as a JSON error
  for i in $(seq 12); do curl -s -o /dev/null -w '%{{http_code}} ' {base}/api/orders/7/items; done; echo
                                         # rate limit 1/s, burst 10 per client: ten 200s, then 429s
  curl -i {base}/api/account             # 401: an API key is required
  curl -i -H 'X-API-Key: demo-key-0123456789' {base}/api/account   # 200; the backend sees X-Consumer
  curl -si {base}/api/catalog/1 | grep -i cache-status; curl -si {base}/api/catalog/1 | grep -i cache-status
                                         # a miss, then a hit from the shared cache
  curl -i --compressed {base}/api/dashboard/7   # two upstream calls merged into one JSON answer, compressed
  curl -i -X OPTIONS -H 'Origin: https://app.example.com' -H 'Access-Control-Request-Method: PUT' {base}/api/public/x
                                         # a CORS preflight answered by the gateway
  curl -i {base}/internal                # 403: only 10.0.0.0/8 may call it
  curl -i {base}/maintenance             # a fixed response; {base}/v1/users/7 redirects
  {_python()} -m websockets {ws}   # WebSocket bridge: each message you type is POSTed to a backend
  curl -s {admin}/healthz                # admin API: generation and worker pids
  curl -s {admin}/ratelimits             # limits, their counters, the shared bucket table
  curl -s {admin}/config                 # the effective configuration, secrets redacted
  curl -s {admin}/metrics                # Prometheus metrics, summed over the workers
  open {admin}/                          # the status page, in a browser
  {_fastgw()} reload -c {config_path}    # hot reload, waits for the outcome; Ctrl-C stops everything
"""
