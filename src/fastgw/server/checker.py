"""The master's per-generation helper processes: the health checker (one per worker generation
that has active checks, so probes run once per host however many workers there are, DESIGN §2),
and the auth agent (`fastgw.auth.agent`: JWKS URL fetches and token introspection, once per host),
both supervised by `GenerationProcesses`.

A generation's checker is forked with the generation (it writes that generation's shared health
table) and stopped when the generation is retired or given up; during a reload the old and the
new one both run until the new generation takes over. A checker that dies is restarted, after a
back-off if it keeps dying. Like the workers, a checker exits when the master's lifeline closes.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from fastgw.log import process_log
from fastgw.server.procinfo import set_title
from fastgw.upstream.health import run_checker
from fastgw.upstream.shared import UpstreamShared

MAX_BACKOFF = 5.0
STOP_WAIT = 2.0
"""Seconds the master waits for its checkers to exit at shutdown before killing them."""


@dataclass(eq=False)
class _Checker:
    generation: int
    shared: Any
    pid: int = 0
    started: float = 0.0
    restart_at: float | None = None
    backoff: float = 0.0


class GenerationProcesses:
    """One helper process per generation, running `run(payload, lifeline_fd)`: restarted when it
    dies (with a back-off if it keeps dying), stopped when its generation is retired. A payload
    with a `fds()` method keeps those descriptors open in the child."""

    def __init__(
        self,
        close_fds: Callable[[set[int]], None],
        lifeline_fd: int,
        name: str = "health checker",
        run: Callable[[Any, int], NoReturn] = run_checker,
        title: str = "checker",
    ) -> None:
        """`close_fds(keep)` closes, in a freshly forked child, every descriptor the master owns
        except `keep`. `name` is what log lines call the process, `title` its process title
        (`fastgw: TITLE (generation N)`, docs/operations.md)."""
        self._close_fds = close_fds
        self._lifeline = lifeline_fd
        self._checkers: dict[int, _Checker] = {}
        self._stopping = False
        self.name = name
        self.title = title
        self._run = run

    def start(self, generation: int, payload: Any) -> None:
        if self._stopping:
            return
        checker = _Checker(generation, payload)
        self._checkers[generation] = checker
        self._spawn(checker)

    def generations(self) -> list[int]:
        return list(self._checkers)

    def _spawn(self, checker: _Checker) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                set_title(f"fastgw: {self.title} (generation {checker.generation})")
                fds = getattr(checker.shared, "fds", None)
                self._close_fds({self._lifeline, *(fds() if fds is not None else ())})
            finally:
                self._run(checker.shared, self._lifeline)
        checker.pid = pid
        checker.started = time.monotonic()
        checker.restart_at = None

    def pids(self) -> dict[int, int]:
        """Generation → pid of its running checker."""
        return {g: c.pid for g, c in self._checkers.items() if c.pid}

    def reaped(self, pid: int, status: int) -> bool:
        """The master reaped `pid`: True if it was a checker (then restarted unless retired)."""
        for checker in self._checkers.values():
            if checker.pid == pid:
                break
        else:
            return False
        checker.pid = 0
        if self._stopping:
            return True
        code = os.waitstatus_to_exitcode(status)
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        lived = time.monotonic() - checker.started
        checker.backoff = min(MAX_BACKOFF, max(0.1, checker.backoff * 2)) if lived < 1.0 else 0.0
        process_log(f"{self.name} {pid} exited ({how}); restarting it"
                    + (f" in {checker.backoff:.1f}s" if checker.backoff else ""))
        checker.restart_at = time.monotonic() + checker.backoff
        return True

    def supervise(self, now: float) -> None:
        if self._stopping:
            return
        for checker in self._checkers.values():
            if checker.restart_at is not None and checker.restart_at <= now:
                self._spawn(checker)

    def retire(self, generation: int) -> None:
        """The generation is gone (replaced, or its reload given up): stop its checker."""
        checker = self._checkers.pop(generation, None)
        if checker is not None and checker.pid:
            _kill(checker.pid, signal.SIGTERM)

    def stop(self) -> None:
        self._stopping = True
        for checker in self._checkers.values():
            if checker.pid:
                _kill(checker.pid, signal.SIGTERM)

    def wait(self) -> None:
        """At the master's exit: every checker is gone when this returns."""
        self.stop()
        deadline = time.monotonic() + STOP_WAIT
        for checker in self._checkers.values():
            while checker.pid:
                try:
                    pid, _ = os.waitpid(checker.pid, os.WNOHANG)
                except ChildProcessError:
                    pid = checker.pid
                if pid == checker.pid:
                    checker.pid = 0
                elif time.monotonic() >= deadline:
                    _kill(checker.pid, signal.SIGKILL)
                    deadline = float("inf")
                else:
                    time.sleep(0.01)
        self._checkers.clear()


class HealthCheckers(GenerationProcesses):
    def start(self, generation: int, shared: UpstreamShared) -> None:
        """Starts the checker of `generation`, if any of its upstreams has active checks."""
        if shared.health is not None:
            super().start(generation, shared)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
