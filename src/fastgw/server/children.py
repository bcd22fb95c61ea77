"""The master's child processes. What supervising a child takes is written here once, for the
workers and the helper processes alike: the back-off before replacing a child that keeps dying,
the words the log uses for an exit, signalling a pid that may have exited already, and ending
children started with `subprocess`.

The helper processes are one per generation: the health checker (for a generation with active
checks, so probes run once per host however many workers there are, DESIGN §2) and the auth agent
(`fastgw.auth.agent`: JWKS URL fetches and token introspection, once per host), both supervised by
`GenerationProcesses`, which also gives them their process main (signals, uvloop, the lifeline).

A generation's helper is forked with the generation (the checker writes that generation's shared
health table) and stopped when the generation is retired or given up; during a reload the old and
the new one both run until the new generation takes over. A helper that dies is restarted, after
a back-off if it keeps dying. Like the workers, a helper exits when the master's lifeline closes.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import uvloop

from fastgw.backoff import Backoff
from fastgw.log import log_exception, process_log
from fastgw.server.procinfo import set_title
from fastgw.upstream.health import run_checker
from fastgw.upstream.shared import UpstreamShared

MAX_BACKOFF = 5.0
"""Seconds at most between the exit of a child that keeps dying and its replacement."""
SHORT_LIFE = 1.0
"""A child that exits within this many seconds of its start counts as one that keeps dying."""
STOP_WAIT = 2.0
"""Seconds the master waits for its helpers to exit at shutdown before killing them."""


class Restarts(Backoff):
    """The wait before replacing a child that exited: none after one that lived SHORT_LIFE or
    longer, so that a crash now and then is mended at once; 0.1 s after one that did not, doubled
    at each further short life up to MAX_BACKOFF, so that a child that cannot start is not forked
    in a tight loop."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(0.1, MAX_BACKOFF)

    def after_exit(self, lived: float) -> float:
        return self.failed() if lived < SHORT_LIFE else self.reset()

    def words(self) -> str:
        """` in 0.4s` for the log line, or "" when the child is replaced at once."""
        return f" in {self.delay:.1f}s" if self.delay else ""


def exit_words(status: int) -> str:
    """A `waitpid` status as the log says it: `signal SIGKILL`, `status 3`."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"status {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name of its own
        return f"signal {-code}"


def send_signal(pid: int, sig: int) -> None:
    """`kill(pid, sig)`; a child that has exited already is no error (it is reaped, or soon)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def end_processes(procs: Sequence[subprocess.Popen[Any]], wait: float) -> None:
    """Ends children started with `subprocess` (the demo's backends, a Locust run): TERM to each,
    KILL to those still running `wait` seconds later; all are reaped when this returns."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + wait
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(eq=False)
class _Helper:
    generation: int
    payload: Any
    pid: int = 0
    started: float = 0.0
    restart_at: float | None = None
    restarts: Restarts = field(default_factory=Restarts)


class GenerationProcesses:
    """One helper process per generation, running the coroutine `main(payload)` on its own uvloop
    loop until it returns, the process gets TERM, INT or QUIT, or the master's lifeline reports
    end-of-file: restarted when it dies (with a back-off if it keeps dying), stopped when its
    generation is retired. A payload with a `fds()` method keeps those descriptors open in the
    child."""

    def __init__(
        self,
        close_fds: Callable[[set[int]], None],
        lifeline_fd: int,
        name: str = "health checker",
        main: Callable[[Any], Coroutine[Any, Any, None]] = run_checker,
        title: str = "checker",
    ) -> None:
        """`close_fds(keep)` closes, in a freshly forked child, every descriptor the master owns
        except `keep`. `name` is what log lines call the process, `title` its process title
        (`fastgw: TITLE (generation N)`, docs/operations.md)."""
        self._close_fds = close_fds
        self._lifeline = lifeline_fd
        self._helpers: dict[int, _Helper] = {}
        self._stopping = False
        self.name = name
        self.title = title
        self._main = main

    def start(self, generation: int, payload: Any) -> None:
        if self._stopping:
            return
        helper = _Helper(generation, payload)
        self._helpers[generation] = helper
        self._spawn(helper)

    def generations(self) -> list[int]:
        return list(self._helpers)

    def _spawn(self, helper: _Helper) -> None:
        pid = os.fork()
        if pid == 0:
            self._child(helper)
        helper.pid = pid
        helper.started = time.monotonic()
        helper.restart_at = None

    def _child(self, helper: _Helper) -> NoReturn:
        """The helper's process main, in the child the master forked; never returns."""
        code = 1
        try:
            set_title(f"fastgw: {self.title} (generation {helper.generation})")
            fds = getattr(helper.payload, "fds", None)
            self._close_fds({self._lifeline, *(fds() if fds is not None else ())})
            for sig in (signal.SIGHUP, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_IGN)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            task = loop.create_task(self._main(helper.payload))
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                loop.add_signal_handler(sig, task.cancel)
            loop.add_reader(self._lifeline, task.cancel)
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            code = 0
        except BaseException as exc:
            log_exception(f"{self.name} {os.getpid()}", exc)
        finally:
            os._exit(code)

    def pids(self) -> dict[int, int]:
        """Generation → pid of its running helper."""
        return {g: h.pid for g, h in self._helpers.items() if h.pid}

    def reaped(self, pid: int, status: int) -> bool:
        """The master reaped `pid`: True if it was a helper (then restarted unless retired)."""
        for helper in self._helpers.values():
            if helper.pid == pid:
                break
        else:
            return False
        helper.pid = 0
        if self._stopping:
            return True
        delay = helper.restarts.after_exit(time.monotonic() - helper.started)
        process_log(f"{self.name} {pid} exited ({exit_words(status)}); restarting it{helper.restarts.words()}")
        helper.restart_at = time.monotonic() + delay
        return True

    def supervise(self, now: float) -> None:
        if self._stopping:
            return
        for helper in self._helpers.values():
            if helper.restart_at is not None and helper.restart_at <= now:
                self._spawn(helper)

    def retire(self, generation: int) -> None:
        """The generation is gone (replaced, or its reload given up): stop its helper."""
        helper = self._helpers.pop(generation, None)
        if helper is not None and helper.pid:
            send_signal(helper.pid, signal.SIGTERM)

    def stop(self) -> None:
        self._stopping = True
        for helper in self._helpers.values():
            if helper.pid:
                send_signal(helper.pid, signal.SIGTERM)

    def wait(self) -> None:
        """At the master's exit: every helper is gone when this returns (killed after STOP_WAIT)."""
        self.stop()
        deadline = time.monotonic() + STOP_WAIT
        for helper in self._helpers.values():
            while helper.pid:
                try:
                    pid, _ = os.waitpid(helper.pid, os.WNOHANG)
                except ChildProcessError:
                    pid = helper.pid
                if pid == helper.pid:
                    helper.pid = 0
                elif time.monotonic() >= deadline:
                    send_signal(helper.pid, signal.SIGKILL)
                    deadline = float("inf")
                else:
                    time.sleep(0.01)
        self._helpers.clear()


class HealthCheckers(GenerationProcesses):
    def start(self, generation: int, shared: UpstreamShared) -> None:
        """Starts the checker of `generation`, if any of its upstreams has active checks."""
        if shared.health is not None:
            super().start(generation, shared)
