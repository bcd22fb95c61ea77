"""Start and stop the processes of an end-to-end test: backends and the gateway.

Every wait here is on an event (a pipe line, a process exit) with a timeout, and every process is
started in its own session so that teardown can kill its whole group, workers included, even when
a test fails half-way.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import yaml

from tests.support.client import LOOPBACK, Response, http_get

REPO = Path(__file__).resolve().parents[2]
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable

#: What starts every line of the gateway's stderr: a UTC timestamp (none when stderr is the
#: journal), then `fastgw: `.
PREFIX = r"^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z )?fastgw: "
#: The line the master prints when every worker of a generation listens (the readiness contract).
READY = re.compile(PREFIX + r"master (\d+) ready: generation (\d+), workers (\d+(?:,\d+)*)$")
RELOAD_FAILED = re.compile(PREFIX + r"reload failed")
_TAIL = 40


class ProcessError(Exception):
    """A process did not start, stop or announce itself as the contract says."""


class ReloadFailed(ProcessError):
    """The gateway refused a reload; `index` is the position of its `reload failed` line in
    `Gateway.lines`, the problem lines follow it."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def free_port() -> int:
    """A port that was free a moment ago (another process may take it before we bind)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


class Backend:
    """A running `tests.support.backend` process."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.port = port
        self.proc = proc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters since start: `requests` (heads received, excluding /stats), `completed`
        (requests received in full), `connections`, `parse_errors`, `health_probes` (requests to
        /healthz), `app` and `app_posts` (requests and POST requests to /app), and `paths`
        (request heads per path under /count/)."""
        stats: dict[str, Any] = http_get(self.port, "/stats").json()
        return stats

    def count(self, path: str) -> int:
        """Request heads received for `path` (a path under /count/)."""
        return int(self.stats()["paths"].get(path, 0))

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_backend(
    name: str = "backend",
    *,
    port: int = 0,
    timeout: float = 10.0,
    module: str = "tests.support.backend",
    args: Sequence[str] = (),
) -> Backend:
    """Start a backend on `port` (0, the default: one it picks itself; a given port lets a
    stopped backend come back where it was), and wait for its `PORT <n>` line. `module` is the
    backend program (tests.support.wsbackend for WebSocket), `args` more of its options."""
    proc = subprocess.Popen(
        [PYTHON, "-m", module, "--port", str(port), "--name", name, *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in out:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                _kill_group(proc)
                raise ProcessError(f"backend {name!r} printed no PORT line within {timeout}s (got {out!r})")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise ProcessError(f"backend {name!r} exited with {proc.wait()} before listening (got {out!r})")
            out += chunk
    line = out.split(b"\n", 1)[0].decode()
    match = re.fullmatch(r"PORT (\d+)", line)
    if match is None:
        _kill_group(proc)
        raise ProcessError(f"backend {name!r} printed {line!r} instead of PORT <n>")
    return Backend(name, int(match.group(1)), proc)


def _port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


class Gateway:
    """A `python -m fastgw run -c FILE` master with its workers, watched through its stderr.

    `config` is the YAML document as a mapping; `listen` and `admin` are filled with free
    loopback ports when absent. Use as a context manager: on exit the whole process group is
    killed, whatever state the test left it in."""

    def __init__(
        self, config: Mapping[str, Any], workdir: Path, *, ready_timeout: float = 30.0,
        command: Sequence[str] | None = None, preexec: Callable[[], None] | None = None,
    ) -> None:
        """`command`: the arguments of `python -m fastgw` when not `run -c CONFIG_FILE` (`demo`
        with its ports: the demo starts the master itself). `preexec` runs in the master's process
        just before it starts (resource limits)."""
        self.preexec = preexec
        self.config: dict[str, Any] = dict(config)
        self.command = command
        self.config.setdefault("listen", [{"address": f"{LOOPBACK}:{free_port()}"}])
        self.config.setdefault("admin", {"address": f"{LOOPBACK}:{free_port()}"})
        self.port = _port_of(self.config["listen"][0]["address"])
        self.admin_port = _port_of(self.config["admin"]["address"])
        self.config_path = workdir / "gateway.yaml"
        self.stdout_path = workdir / "gateway.stdout"
        self.ready_timeout = ready_timeout
        self.lines: list[str] = []
        self.master_pid = 0
        self.generation = -1
        self.workers: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._cond = threading.Condition()
        self._eof = False
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write_config(self, config: Mapping[str, Any] | None = None) -> None:
        """Write `config` (default: the current one) to the config file, keeping the ports."""
        if config is not None:
            self.config = {**config, "listen": self.config["listen"], "admin": self.config["admin"]}
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self) -> Self:
        """Start the master and wait for its first ready line; on failure nothing is left running."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Self:
        self.write_config()
        with open(self.stdout_path, "wb") as stdout:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "fastgw", *(self.command or ("run", "-c", str(self.config_path)))],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=self.preexec,
            )
        self._reader = threading.Thread(target=self._read_stderr, name="gateway-stderr", daemon=True)
        self._reader.start()
        self.wait_ready(timeout=self.ready_timeout)
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def tail(self, n: int = _TAIL) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])

    def _wait_for(self, patterns: Sequence[re.Pattern[str]], timeout: float, start: int) -> tuple[int, re.Match[str]]:
        """The first stderr line from index `start` matching any of `patterns`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            checked = start
            while True:
                for i in range(checked, len(self.lines)):
                    for rx in patterns:
                        if m := rx.search(self.lines[i]):
                            return i, m
                checked = max(checked, len(self.lines))
                if self._eof:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        wanted = " or ".join(repr(rx.pattern) for rx in patterns)
        state = "exited" if self._eof else f"still running after {timeout}s"
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(5.0) if self._eof else self.proc.poll()
            except subprocess.TimeoutExpired:
                pass  # stderr closed but the process lives on: reported as rc=None
        raise ProcessError(
            f"gateway {state} (rc={rc}) without a stderr line matching {wanted}; last lines:\n{self.tail()}"
        )

    def wait_line(self, pattern: str | re.Pattern[str], timeout: float = 10.0, *, start: int = 0) -> re.Match[str]:
        """The first stderr line from index `start` that `pattern` searches successfully."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return self._wait_for([rx], timeout, start)[1]

    def _apply_ready(self, m: re.Match[str]) -> None:
        self.master_pid = int(m.group(1))
        self.generation = int(m.group(2))
        self.workers = [int(p) for p in m.group(3).split(",")]

    def wait_ready(self, generation: int | None = None, timeout: float = 30.0, *, start: int = 0) -> int:
        """Wait for the ready line of `generation` (any, if None); updates `master_pid`,
        `generation` and `workers`, and returns the generation."""
        deadline = time.monotonic() + timeout
        while True:
            i, m = self._wait_for([READY], max(deadline - time.monotonic(), 0.0), start)
            if generation is None or int(m.group(2)) == generation:
                self._apply_ready(m)
                return self.generation
            start = i + 1

    def reload(self, timeout: float = 30.0) -> int:
        """SIGHUP, then wait for the next generation's ready line; raises ReloadFailed if the
        gateway reports `reload failed` first. Returns the new generation."""
        with self._cond:
            start = len(self.lines)
        expected = self.generation + 1
        os.kill(self.master_pid, signal.SIGHUP)
        i, m = self._wait_for([READY, RELOAD_FAILED], timeout, start)
        if m.re is RELOAD_FAILED:
            raise ReloadFailed(f"reload refused:\n{self.tail()}", i)
        if int(m.group(2)) != expected:
            raise ProcessError(f"reload announced generation {m.group(2)}, expected {expected}:\n{self.tail()}")
        self._apply_ready(m)
        return self.generation

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM (graceful stop) and wait for the master to exit 0; by default for the
        configured grace period plus 10 s."""
        assert self.proc is not None
        if timeout is None:
            timeout = _seconds(self.config.get("grace_period", "30s")) + 10.0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessError(f"gateway did not exit within {timeout}s of SIGTERM:\n{self.tail()}") from None
        self._join_reader()
        if rc != 0:
            raise ProcessError(f"gateway exited with {rc} after SIGTERM:\n{self.tail()}")
        return rc

    def kill_worker(self, pid: int, sig: int = signal.SIGKILL) -> None:
        if pid not in self.workers:
            raise ProcessError(f"{pid} is not a worker of the latest generation {self.workers}")
        os.kill(pid, sig)

    def healthz(self) -> dict[str, Any]:
        resp: Response = http_get(self.admin_port, "/healthz")
        if resp.status != 200:
            raise ProcessError(f"/healthz answered {resp.summary()}")
        health: dict[str, Any] = resp.json()
        return health

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5.0)

    def close(self) -> None:
        """Kill the whole process group (master and any worker left behind)."""
        if self.proc is None:
            return
        _kill_group(self.proc)
        self._join_reader()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied; mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def gateway_config(backend_port: int, **overrides: Any) -> dict[str, Any]:
    """The reference config of the gateway contract: 2 workers, one route `/` to the backend
    (upstream `backend`), access log off. Keyword arguments are merged in (see `_merge`)."""
    base: dict[str, Any] = {
        "workers": 2,
        "grace_period": "5s",
        "limits": {
            "max_head": "32KiB",
            "max_headers": 100,
            "max_url": "8KiB",
            "max_body": "1MiB",
            "header_timeout": "10s",
            "body_timeout": "30s",
            "idle_timeout": "60s",
        },
        "upstreams": {
            "backend": {
                "targets": [f"127.0.0.1:{backend_port}"],
                "keepalive": 16,
                "timeouts": {"connect": "1s", "read": "5s"},
            },
        },
        "routes": [{"match": {"prefix": "/"}, "upstream": "backend"}],
        # YAML's `off` is the boolean false: written as such so the file reads as the contract's.
        "access_log": {"path": False},
    }
    return _merge(base, overrides)


def start_gateway(
    backend: Backend, workdir: Path, config: Mapping[str, Any] | None = None, **overrides: Any
) -> Gateway:
    """A started gateway with `config`, or else `gateway_config(backend.port, **overrides)`;
    the caller closes it."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Gateway(config if config is not None else gateway_config(backend.port, **overrides), workdir).start()


def _seconds(duration: str | float) -> float:
    """A config duration (`250ms`, `5s`, `1m`) in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    if m is None:
        raise ValueError(f"not a duration: {duration!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]
