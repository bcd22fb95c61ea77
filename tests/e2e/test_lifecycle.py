"""The process contract (DESIGN §2): graceful and immediate stop, hot reload (valid, invalid, under
load), worker replacement, crash-loop back-off, orphaned workers, and the CLI around the pidfile."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.client import Conn, build_request, http_get, raw_request, run_load, start_load
from tests.support.procs import PYTHON, REPO, Backend, Gateway, ReloadFailed, free_port, start_backend

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with start_backend("life") as b:
        yield b


def config_for(backend: Backend, **over: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "workers": 2,
        "grace_period": "5s",
        "upstreams": {"backend": {"targets": [f"127.0.0.1:{backend.port}"], "keepalive": 16}},
        "routes": [{"match": {"prefix": "/"}, "upstream": "backend"}],
        "access_log": {"path": "off"},
    }
    config.update(over)
    return config


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once it is not running.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Polls state that offers no event to wait on (another process's liveness)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_term_drains_in_flight_requests(backend: Backend, tmp_path: Path) -> None:
    g = Gateway(config_for(backend), tmp_path).start()
    try:
        results: dict[str, Any] = {}
        before = backend.stats()["requests"]

        def slow() -> None:
            results["r"] = raw_request(g.port, build_request("GET", "/sleep/1500", host="x"), timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        wait_until(lambda: backend.stats()["requests"] > before, 5, "the slow request to reach the backend")
        assert g.proc is not None
        g.proc.send_signal(signal.SIGTERM)
        t.join(10)
        r = results["r"]
        assert r.status == 200, r.summary()
        assert r.responses[0].header("connection") == "close"
        assert g.proc.wait(10) == 0
        with pytest.raises(OSError):
            http_get(g.port, "/echo", timeout=1)
    finally:
        g.close()


def test_term_closes_idle_keepalive_connections(backend: Backend, tmp_path: Path) -> None:
    g = Gateway(config_for(backend), tmp_path).start()
    try:
        conn = Conn(g.port, timeout=5)
        assert conn.request("GET", "/echo").status == 200
        assert g.proc is not None
        started = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        assert conn.wait_closed(timeout=3)
        assert time.monotonic() - started < 1.5  # DESIGN §8: idle connections closed within 1 s
        assert g.proc.wait(10) == 0
    finally:
        g.close()


def test_quit_stops_immediately(backend: Backend, tmp_path: Path) -> None:
    g = Gateway(config_for(backend, grace_period="30s"), tmp_path).start()
    try:
        sock_result: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: sock_result.update(
                r=raw_request(g.port, build_request("GET", "/sleep/5000", host="x"), timeout=10)
            )
        )
        before = backend.stats()["requests"]
        t.start()
        wait_until(lambda: backend.stats()["requests"] > before, 5, "the request to reach the backend")
        assert g.proc is not None
        started = time.monotonic()
        g.proc.send_signal(signal.SIGQUIT)
        assert g.proc.wait(5) == 0
        assert time.monotonic() - started < 3
        t.join(10)
        assert sock_result["r"].status is None  # the in-flight request was cut, not answered
    finally:
        g.close()


def test_reload_applies_new_routes_and_retires_old_workers(backend: Backend, tmp_path: Path) -> None:
    with Gateway(config_for(backend), tmp_path) as g:
        old_workers = list(g.workers)
        assert http_get(g.port, "/new/echo").json() == {"no_such_path": "/new/echo"}
        config = config_for(backend)
        config["routes"] = [
            {"match": {"prefix": "/new"}, "upstream": "backend", "strip_prefix": True},
            {"match": {"prefix": "/"}, "upstream": "backend"},
        ]
        g.write_config(config)
        assert g.reload() == 2
        assert set(g.workers).isdisjoint(old_workers)
        assert http_get(g.port, "/new/echo").json()["target"] == "/echo"
        assert g.healthz()["generation"] == 2
        wait_until(lambda: not any(pid_alive(p) for p in old_workers), 10, "old workers to exit")


def test_invalid_reload_keeps_serving_old_config(backend: Backend, tmp_path: Path) -> None:
    with Gateway(config_for(backend), tmp_path) as g:
        workers = list(g.workers)
        g.config_path.write_text("workers: 2\nroutes:\n  - match: {prefix: /}\n    upstream: missing\n")
        with pytest.raises(ReloadFailed) as info:
            g.reload(timeout=10)
        problem = g.wait_line(r"gateway\.yaml:\d+: routes\[0\]\.upstream", timeout=5, start=info.value.index)
        assert "missing" in problem.string
        assert http_get(g.port, "/echo").status == 200
        health = g.healthz()
        assert health["generation"] == 1 and sorted(health["workers"]) == sorted(workers)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_reload_every_second_under_load_fails_no_request(backend: Backend, tmp_path: Path) -> None:
    with Gateway(config_for(backend, workers=2), tmp_path) as g:
        fresh = start_load(g.port, "/echo", concurrency=8, duration_s=21, max_requests=10**6, keepalive=False)
        kept = start_load(g.port, "/echo", concurrency=8, duration_s=21, max_requests=10**6, keepalive=True)
        generations = []
        for _ in range(20):
            started = time.monotonic()
            generations.append(g.reload(timeout=10))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        fresh_result = fresh.result(timeout=40)
        kept_result = kept.result(timeout=40)
    assert generations == list(range(2, 22))
    assert fresh_result.ok > 500 and kept_result.ok > 500
    assert fresh_result.failed == 0, fresh_result.failures[:5]
    assert kept_result.failed == 0, kept_result.failures[:5]


@pytest.mark.slow
def test_killed_worker_replaced_within_a_second_under_load(backend: Backend, tmp_path: Path) -> None:
    with Gateway(config_for(backend, workers=2), tmp_path) as g:
        load = start_load(g.port, "/echo", concurrency=8, duration_s=4, max_requests=10**6, keepalive=False)
        time.sleep(1)  # load is running on both workers
        victim = g.workers[0]
        killed_at = time.monotonic()
        g.kill_worker(victim)

        def replaced() -> bool:
            pids = g.healthz()["workers"]
            return victim not in pids and len(pids) == 2

        wait_until(replaced, 1.0, "a replacement worker listening")
        assert time.monotonic() - killed_at <= 1.0
        result = load.result(timeout=20)
        after = run_load(g.port, "/echo", concurrency=4, duration_s=1, max_requests=400, keepalive=False)
    # Requests in flight on the killed worker's connections die with it; nothing else may fail.
    assert result.failed <= 8, result.failures[:5]
    assert after.failed == 0 and after.ok > 0


def test_crash_loop_backs_off(backend: Backend, tmp_path: Path) -> None:
    with Gateway(config_for(backend, workers=1), tmp_path) as g:
        delays = []
        for _ in range(4):
            victim = g.healthz()["workers"][0]
            os.kill(victim, signal.SIGKILL)
            m = g.wait_line(rf"worker {victim} \(slot 0\) exited .*replacing it", timeout=5)
            delay = re.search(r"in ([0-9.]+)s", m.string)
            delays.append(float(delay.group(1)) if delay else 0.0)
            wait_until(lambda old=victim: (w := g.healthz()["workers"]) and w[0] != old, 10, "replacement")
        assert delays[-1] > delays[0] >= 0.0
        assert http_get(g.port, "/echo").status == 200


def test_a_worker_killed_by_a_signal_without_a_name_is_replaced(backend: Backend, tmp_path: Path) -> None:
    """A real-time signal has no name in Python's `signal.Signals`: the exit is logged with its
    number, the worker replaced, and the master goes on (it used to die on the ValueError)."""
    sig = signal.SIGRTMIN + 5
    with Gateway(config_for(backend, workers=1), tmp_path) as g:
        victim = g.healthz()["workers"][0]
        os.kill(victim, sig)
        g.wait_line(rf"worker {victim} \(slot 0\) exited \(signal {int(sig)}\); replacing it", timeout=5)
        wait_until(lambda: (w := g.healthz()["workers"]) and w[0] != victim, 10, "a replacement worker")
        assert http_get(g.port, "/echo").status == 200


def test_workers_exit_when_master_dies(backend: Backend, tmp_path: Path) -> None:
    with Gateway(config_for(backend), tmp_path) as g:
        workers = list(g.workers)
        os.kill(g.master_pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in workers), 10, "orphaned workers to exit")


def test_worker_boot_failure_stops_master(backend: Backend, tmp_path: Path) -> None:
    """A worker that cannot build its runtime (here: made to fail, since the master now vets
    everything in the config it can before forking) stops the master instead of a respawn loop."""
    config = config_for(backend)
    cfg_path = tmp_path / "gateway.yaml"
    config["listen"] = [{"address": f"127.0.0.1:{free_port()}"}]
    cfg_path.write_text(yaml.safe_dump(config))
    # Workers are forked, not exec'd: a patch made in the master is in every worker.
    script = (
        "import sys, fastgw.server.worker as w\n"
        "def boom(*a, **k): raise RuntimeError('injected boot failure')\n"
        "w.Runtime = boom\n"
        "from fastgw.cli import main\n"
        "sys.exit(main(['run', '-c', sys.argv[1]]))\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", script, str(cfg_path)], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert "could not start" in proc.stderr and "injected boot failure" in proc.stderr


def test_listen_address_in_use_is_a_clear_error(backend: Backend, tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        config = config_for(backend)
        config["listen"] = [{"address": "127.0.0.1:%d" % busy.getsockname()[1]}]
        cfg_path = tmp_path / "gateway.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        proc = subprocess.run(
            [PYTHON, "-m", "fastgw", "run", "-c", str(cfg_path)], cwd=REPO, capture_output=True, text=True, timeout=30
        )
    finally:
        busy.close()
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr


def test_invalid_config_never_starts(tmp_path: Path) -> None:
    cfg_path = tmp_path / "gateway.yaml"
    cfg_path.write_text("workers: 2\nlisten: [{address: '127.0.0.1:1'}]\nroutes:\n  - match: {prefx: /}\n")
    proc = subprocess.run(
        [PYTHON, "-m", "fastgw", "run", "-c", str(cfg_path)], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert f"{cfg_path}:4: routes[0].match" in proc.stderr


def test_pidfile_reload_and_stop_commands(backend: Backend, tmp_path: Path) -> None:
    pidfile = tmp_path / "fastgw.pid"
    with Gateway(config_for(backend, pidfile=str(pidfile)), tmp_path) as g:
        assert int(pidfile.read_text()) == g.master_pid
        start = len(g.lines)
        out = subprocess.run(
            [PYTHON, "-m", "fastgw", "reload", "-c", str(g.config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        g.wait_ready(generation=2, start=start)
        out = subprocess.run(
            [PYTHON, "-m", "fastgw", "stop", "-c", str(g.config_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert g.proc is not None and g.proc.wait(10) == 0
        assert not pidfile.exists()
