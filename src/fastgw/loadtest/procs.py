"""Starting and always stopping the servers a load test needs (a backend, nginx, fastgw).

Every server runs in its own session (process group) so that stopping it reaches its workers
too, even if its master dies first. Servers are registered as they start and stopped by
`stop_all`, which the callers run in `finally` and which is also registered with atexit; SIGTERM
and SIGHUP are turned into SystemExit so that the `finally` blocks run on those as well.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from fastgw.loadtest.cpu import tree_pids

_running: list[Server] = []


def cpu_list(cpus: Sequence[int]) -> str:
    """The `taskset -c` spelling."""
    return ",".join(str(c) for c in cpus)


def taskset(cpus: Sequence[int] | None, argv: list[str]) -> list[str]:
    """`argv` run on `cpus` (unchanged when None); taskset execs the command, so the pid we get is
    the program's, and children (nginx and fastgw workers) inherit the affinity."""
    return argv if cpus is None else ["taskset", "-c", cpu_list(cpus), *argv]


def free_port() -> int:
    """A loopback port free right now (the kernel's pick; a small race with other programs
    is accepted, and shows up as a server that fails to start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ServerError(RuntimeError):
    pass


class Server:
    """A started server process. Its stderr is copied to `log` line by line by a thread, both so
    that the pipe never fills and blocks the server, and so that a ready line can be waited for."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._lines: list[str] = []
        self._lock = threading.Condition()
        self._log_file: IO[str] = open(log, "w", encoding="utf-8", errors="replace")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.PIPE,
            start_new_session=True,
            text=True,
            errors="replace",
        )
        _running.append(self)
        self._reader = threading.Thread(target=self._copy_stderr, name=f"{name}-stderr", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _copy_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log_file.write(line)
            self._log_file.flush()
            with self._lock:
                self._lines.append(line)
                self._lock.notify_all()

    def tail(self, n: int = 15) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in lines)

    def fail(self, why: str) -> ServerError:
        return ServerError(f"{self.name}: {why}; command: {' '.join(self.argv)}; log {self.log}:\n{self.tail()}")

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first stderr line matching `pattern`; fails if the server exits or is silent
        for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lock:
            while True:
                for line in self._lines[seen:]:
                    if m := pattern.search(line):
                        return m
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if self.proc.poll() is not None:
                    raise self.fail(f"exited with status {self.proc.returncode} before it was ready")
                if left <= 0:
                    raise self.fail(f"not ready after {timeout:.0f} s")
                self._lock.wait(min(left, 0.2))

    def wait_listening(self, port: int, processes: int, timeout: float) -> None:
        """Until the port accepts connections and the tree has `processes` processes (master and
        workers), so that no run starts while workers are still being forked."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode} before it was ready")
            if port_open(port) and len(tree_pids(self.pid)) >= processes:
                return
            if time.monotonic() > deadline:
                raise self.fail(f"not listening on 127.0.0.1:{port} with {processes} processes after {timeout:.0f} s")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the master (a graceful stop lets it stop its workers itself), then SIGKILL
        to whatever is left in its process group."""
        if self in _running:
            _running.remove(self)
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._reader.join(2)
        self._log_file.close()


def stop_all() -> None:
    for server in reversed(list(_running)):
        server.stop()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Called once by each command line entry point."""
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
