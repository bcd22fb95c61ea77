"""`fastgw demo` (what `make run` starts): demo backends plus the gateway on a built-in config,
so a new user sees routing, prefix stripping, load balancing and gateway errors in a minute."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from importlib import resources

BACKENDS = ("users-1", "users-2", "orders")
"""The demo backends, on three consecutive ports from `backend_port`."""


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
    base = f"http://127.0.0.1:{port}"
    print(
        f"""
fastgw demo: config {config_path}
  curl -i {base}/api/users/42            # prefix route, /api stripped, balanced over users-1 and users-2
  curl -i {base}/api/orders/7/items      # {{param}} route to the orders service
  curl -i -X DELETE {base}/api/orders/7/items   # 405 with Allow
  curl -i {base}/nowhere                 # 404 as a JSON error
  for i in $(seq 12); do curl -s -o /dev/null -w '%{{http_code}} ' {base}/api/orders/7/items; done; echo
                                         # rate limit 1/s, burst 10 per client: ten 200s, then 429s
  curl -s 127.0.0.1:{admin_port}/healthz # admin API: generation and worker pids
  curl -s 127.0.0.1:{admin_port}/ratelimits      # limits, their counters, the shared bucket table
  curl -s 127.0.0.1:{admin_port}/config  # the effective configuration, secrets redacted
  curl -s 127.0.0.1:{admin_port}/metrics # Prometheus metrics, summed over the workers
  open http://127.0.0.1:{admin_port}/    # the status page, in a browser
  {_fastgw()} reload -c {config_path}    # hot reload, waits for the outcome; Ctrl-C stops everything
""",
        flush=True,
    )
    from fastgw.cli import main

    try:
        return main(["run", "-c", config_path])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=5)
