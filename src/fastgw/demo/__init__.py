"""`fastgw demo` (what `make run` starts): demo backends plus the gateway on a built-in config,
so a new user sees routing, prefix stripping, load balancing and gateway errors in a minute."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from importlib import resources

BACKENDS = (("users-1", 18081), ("users-2", 18082), ("orders", 18083))


def _config_text(port: int, admin_port: int, pidfile: str) -> str:
    template = resources.files("fastgw.demo").joinpath("gateway.yaml").read_text()
    return (
        template.replace("@PORT@", str(port))
        .replace("@ADMIN_PORT@", str(admin_port))
        .replace("@PIDFILE@", pidfile)
    )


def run_demo(port: int, admin_port: int) -> int:
    workdir = tempfile.mkdtemp(prefix="fastgw-demo-")
    config_path = os.path.join(workdir, "gateway.yaml")
    with open(config_path, "w") as f:
        f.write(_config_text(port, admin_port, os.path.join(workdir, "fastgw.pid")))
    procs = [
        subprocess.Popen([sys.executable, "-m", "fastgw.demo.backend", name, str(bport)])
        for name, bport in BACKENDS
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
  kill -HUP $(cat {workdir}/fastgw.pid)  # hot reload; Ctrl-C stops everything
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
