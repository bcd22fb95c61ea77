"""`fastgw bench` (issue 14, item 4) end to end: against the test backend for one second, direct
and through a fastgw it starts from a config, it prints the summary and writes the JSON; without
wrk on PATH it says how to install it and exits 3, with no traceback. Run from a directory outside
the checkout, as an installed command would be (the repo's `bench/` is not importable there).

No figure is asserted: speed is measured by benchmarks, never by tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.procs import PYTHON, Backend, free_port

pytestmark = pytest.mark.e2e


def fastgw_bench(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> (
    subprocess.CompletedProcess[str]
):
    proc = subprocess.Popen(
        [PYTHON, "-m", "fastgw", "bench", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"fastgw bench still ran after {timeout}s:\n{out[-3000:]}\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _config(tmp_path: Path, backend: Backend) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({
        "workers": 1,
        "listen": [{"address": f"127.0.0.1:{free_port()}"}],
        "upstreams": {"svc": {"targets": [f"127.0.0.1:{backend.port}"], "keepalive": 16}},
        "routes": [{"match": {"prefix": "/"}, "upstream": "svc"}],
        "access_log": {"path": False},
    }))
    return path


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (`make test` installs it)")
def test_bench_direct_and_through_a_gateway(backend: Backend, tmp_path: Path) -> None:
    config = _config(tmp_path, backend)
    out_dir = tmp_path / "out"
    done = fastgw_bench(
        tmp_path, f"http://127.0.0.1:{backend.port}/bytes/100", "-c", str(config),
        "-d", "1", "-r", "1", "--warmup", "0", "--connections", "8", "--no-plot", "-o", str(out_dir),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("direct ") and "ms" in line for line in lines), done.stdout
    assert any(line.startswith("gateway ") and "ms" in line for line in lines), done.stdout
    assert "the gateway adds: p50 " in done.stdout and "µs of CPU per request" in done.stdout

    [report] = out_dir.glob("fastgw-bench-*.json")
    doc = json.loads(report.read_text())
    assert doc["kind"] == "fastgw-bench-wrk" and doc["status"] == "complete"
    rows = {r["target"]: r for r in doc["summary"]}
    assert set(rows) == {"direct", "gateway"}
    for row in rows.values():
        assert row["rps"] > 0 and row["errors"] == 0
        assert row["latency_us"]["50"] > 0 and row["latency_us"]["99"] >= row["latency_us"]["50"]
    assert rows["direct"]["proxy_cpu_us_per_request"] is None
    assert rows["gateway"]["proxy_cpu_us_per_request"] is not None
    assert set(doc["added_us"]) == {"50", "99"}
    assert [t["name"] for t in doc["targets"]] == ["direct", "gateway"]
    assert not list(out_dir.glob("*.png"))  # --no-plot


def test_missing_wrk_says_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = fastgw_bench(tmp_path, "http://127.0.0.1:9/", env={**os.environ, "PATH": str(empty)}, timeout=30)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "wrk not found" in done.stderr and "apt-get install wrk" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not list(tmp_path.glob("fastgw-bench-*"))  # nothing was run, nothing written


def test_not_loopback_is_a_usage_error(tmp_path: Path) -> None:
    done = fastgw_bench(tmp_path, "http://192.0.2.1:80/", timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "loopback" in done.stderr and "Traceback" not in done.stderr
