"""The master: owns the listen sockets, forks and supervises workers, reloads and drains.

It never touches a request. One thread, one `selectors` loop: signal handlers only enqueue (the
gunicorn arbiter rule), and everything happens in the loop, which also serves the small admin API.
Forking from this loop is safe because the child closes everything the master owns before it
starts its own event loop.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastgw.auth.agent import run_agent
from fastgw.bridge.router import PushRouter
from fastgw.cache import SharedCache, shared_cache
from fastgw.config import ConfigError, load
from fastgw.config.model import Address, Config
from fastgw.log import log_exception, process_log
from fastgw.metrics.shared import MetricsHub, SharedMetrics
from fastgw.ratelimit import SharedBuckets, shared_buckets
from fastgw.server.admin import AdminServer
from fastgw.server.children import GenerationProcesses, HealthCheckers, Restarts, exit_words, send_signal
from fastgw.server.fdlimit import raise_for_gateway
from fastgw.server.place import place
from fastgw.server.procinfo import MASTER_TITLE, is_fastgw_master, set_title
from fastgw.server.security import Security, build_security
from fastgw.server.sockets import make_listener, probe
from fastgw.server.worker import WORKER_BOOT_ERROR, Worker
from fastgw.upstream.shared import UpstreamShared

BOOT_TIMEOUT = 30.0
"""Seconds a new worker has to report that it listens before its generation is given up."""
HEARTBEAT_TIMEOUT = 30.0
"""A ready worker silent for this long is stuck (its loop is blocked) and is killed."""
OLD_ACCEPT_TIMEOUT = 5.0
"""Seconds the announcement of a reloaded generation waits for old workers to stop accepting."""
_RELOAD_REQUEST = -1
"""In the signal queue: a reload requested through the admin API (already counted)."""


@dataclass(eq=False)
class WorkerProc:
    pid: int
    slot: int
    generation: int
    status_fd: int
    started: float
    ready: bool = False
    stopping: bool = False
    accepting: bool = True
    last_seen: float = 0.0


@dataclass
class Generation:
    number: int
    config: Config
    workers: dict[int, WorkerProc] = field(default_factory=dict)
    announced: bool = False
    buckets: SharedBuckets | None = None
    """Rate-limit state, created before the generation's first fork; its bucket table is carried
    over from the previous generation while it fits (see fastgw.ratelimit.shared)."""
    promoted: float = 0.0
    shared: UpstreamShared | None = None
    """Upstream state shared by the generation's workers and its health checker."""
    covers: int = 0
    """The reload requests (numbered from 1) this generation answers: all those made before the
    configuration file was read for it."""
    new_sockets: list[tuple[Address, socket.socket]] = field(default_factory=list)
    """Listen sockets created for this generation (closed again if it never serves)."""
    metrics: SharedMetrics | None = None
    """The generation's metrics table, one row per worker slot (see fastgw.metrics.shared)."""
    security: Security | None = None
    """TLS contexts and auth state, built before the generation's first fork (fastgw.server.security)."""
    cache: SharedCache | None = None
    """The host's response cache, carried over from the previous generation while cache_size is
    unchanged (see fastgw.cache.shared)."""


class StartError(Exception):
    """Something in the configuration that cannot be put in place: the message says what and
    where (`FILE:LINE: key.path: ...`)."""


class Master:
    def __init__(self, config_path: str, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.sel = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.workers: dict[int, WorkerProc] = {}
        self.sockets: dict[Address, list[socket.socket]] = {}
        self.current: Generation | None = None
        self.pending: Generation | None = None
        self.reload_queued = False
        self.stopping: float | None = None
        self.quick = False
        self.exit_code = 0
        self.restarts = Restarts()
        self.respawn_at: dict[int, float] = {}
        self.admin: AdminServer | None = None
        self.pidfile = config.pidfile
        self.reload_requests = 0
        """Reload requests so far (HUP, `POST /reload`); each reload outcome answers a prefix."""
        self.last_reload: dict[str, object] | None = None
        self._listening: list[str] = []
        self._wake_r, self._wake_w = os.pipe()
        self._life_r, self._life_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.checkers = HealthCheckers(self._close_in_child, self._life_r)
        self.agents = GenerationProcesses(self._close_in_child, self._life_r, "auth agent", run_agent, "auth agent")
        """The auth agent of each generation that needs one, kept until its last worker is gone."""
        self.securities: dict[int, Security] = {}
        self.metrics = MetricsHub()
        """Every generation's metrics table, and what retired generations counted."""
        self.pushes = PushRouter(self.sel)
        """The push channel of each worker whose generation bridges WebSocket (fastgw.bridge)."""

    # ---- public entry point -------------------------------------------------------------------

    def run(self) -> int:
        self._set_title("starting")
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self._wake_w)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)
        try:
            self._check_pidfile()
            self._check_access_log(self.config)
            security = self._build_security(self.config)
            self._ensure_sockets(self.config)
            if self.config.admin is not None:
                try:
                    admin = self.config.admin
                    self.admin = AdminServer(admin.address, self.sel, self, token=admin.token)
                except OSError as exc:
                    raise StartError(f"{place(self.config_path, ('admin', 'address'))}: {exc}") from None
            self._write_pidfile()
        except StartError as exc:
            process_log(str(exc))
            self._cleanup()
            return 1
        for line in raise_for_gateway(self.config):
            process_log(line)
        self._log_listening(self.config)
        self.current = self._start_generation(1, self.config, security)
        try:
            while not self._finished():
                self._loop_once()
        finally:
            self._cleanup()
        process_log(f"master {os.getpid()} stopped")
        return self.exit_code

    def request_reload(self) -> int:
        """A reload request from the admin API; returns its number (see `last_reload`)."""
        self.reload_requests += 1
        self.signals.append(_RELOAD_REQUEST)
        return self.reload_requests

    # ---- loop ---------------------------------------------------------------------------------

    def _loop_once(self) -> None:
        timeout = 1.0
        if self.respawn_at:
            timeout = max(0.0, min(timeout, min(self.respawn_at.values()) - time.monotonic()))
        try:
            events = self.sel.select(timeout)
        except InterruptedError:
            events = []
        for key, mask in events:
            callback: Callable[..., None] = key.data
            callback(key.fileobj, mask)
        self._handle_signals()
        self._reap()
        self._supervise()
        self.pushes.sweep(time.monotonic())
        if self.admin is not None:
            self.admin.sweep(time.monotonic())

    def _finished(self) -> bool:
        return self.stopping is not None and not self.workers

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _drain_wakeups(self, fileobj: object, mask: int) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGCHLD:
                continue
            if sig == signal.SIGHUP:
                self.reload_requests += 1
                self._reload()
            elif sig == _RELOAD_REQUEST:
                self._reload()
            elif sig in (signal.SIGTERM, signal.SIGINT):
                self._stop(quick=False)
            elif sig == signal.SIGQUIT:
                self._stop(quick=True)
            elif sig == signal.SIGUSR1:
                for w in self.workers.values():
                    send_signal(w.pid, signal.SIGUSR1)

    # ---- workers ------------------------------------------------------------------------------

    def _ensure_sockets(self, config: Config) -> list[tuple[Address, socket.socket]]:
        """One reuseport socket per worker slot per address; returns the sockets it created.
        Sockets are only ever added while running: closing one would drop the connections queued
        in it. An address is first probed (see `sockets.probe`) so that one another process
        listens on is refused, not shared. On failure the sockets created here are closed again,
        and StartError says which `listen` entry failed and why."""
        created: list[tuple[Address, socket.socket]] = []
        try:
            for index, listener in enumerate(config.listen):
                address = listener.address
                try:
                    if address not in self.sockets:
                        probe(address)
                    socks = self.sockets.setdefault(address, [])
                    while len(socks) < config.workers:
                        sock = make_listener(address)
                        socks.append(sock)
                        created.append((address, sock))
                except OSError as exc:
                    raise StartError(f"{place(self.config_path, ('listen', index, 'address'))}: {exc}") from None
        except StartError:
            self._close_sockets(created)
            raise
        return created

    def _close_sockets(self, sockets: list[tuple[Address, socket.socket]]) -> None:
        """Closes sockets made for a generation that never served (a reload given up): no worker
        that stays accepts on them, so connections the kernel put in their queues would wait
        forever."""
        for address, sock in sockets:
            socks = self.sockets.get(address, [])
            if sock in socks:
                socks.remove(sock)
            if not socks:
                self.sockets.pop(address, None)
            sock.close()

    def _check_access_log(self, config: Config) -> None:
        """The access log file can be opened (workers open it after the fork, where a failure
        would only be a worker that cannot start)."""
        path = config.access_log.path
        if path is None or path in ("stdout", "stderr"):
            return
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            where = place(self.config_path, ("access_log", "path"))
            raise StartError(f"{where}: cannot open {path} for writing: {exc.strerror}") from None

    def _log_listening(self, config: Config) -> None:
        """Says where the gateway listens, at start and after a reload that changed it."""
        listening = [str(listener.address) for listener in config.listen]
        if listening == self._listening:
            return
        self._listening = listening
        admin = f"admin API on {self.admin.address}" if self.admin is not None else "no admin API"
        process_log(f"listening on {', '.join(listening)} ({admin})")

    def _slot_sockets(self, config: Config, slot: int) -> list[tuple[socket.socket, Address]]:
        n = config.workers
        out = []
        for listener in config.listen:
            for i, sock in enumerate(self.sockets[listener.address]):
                if i % n == slot:
                    out.append((sock, listener.address))
        return out

    def _build_security(self, config: Config) -> Security:
        """The generation's TLS contexts and auth state; StartError when a certificate became
        unusable since the config was checked."""
        previous = self.current.security if self.current is not None else None
        try:
            return build_security(config, previous)
        except (OSError, ValueError) as exc:
            index = next((i for i, listener in enumerate(config.listen) if listener.tls is not None), 0)
            raise StartError(f"{place(self.config_path, ('listen', index, 'tls'))}: {exc}") from None

    def _start_generation(self, number: int, config: Config, security: Security) -> Generation:
        previous = self.current.shared if self.current is not None else None
        gen = Generation(number, config, shared=UpstreamShared(config, config.workers, number, previous))
        gen.covers = self.reload_requests
        assert gen.shared is not None
        self.checkers.start(number, gen.shared)
        gen.security = security
        self.securities[number] = security
        if security.agent_needed:
            self.agents.start(number, security.auth)
        gen.buckets = shared_buckets(config, self.current.buckets if self.current is not None else None)
        gen.cache = shared_cache(config, self.current.cache if self.current is not None else None)
        gen.metrics = self.metrics.start(config, config.workers, number, gen.buckets)
        for slot in range(config.workers):
            self._spawn(gen, slot)
        return gen

    def _spawn(self, gen: Generation, slot: int) -> WorkerProc | None:
        status_r, status_w = os.pipe()
        sockets = self._slot_sockets(gen.config, slot)
        push_master, push_worker = PushRouter.channel() if _bridges(gen.config) else (None, None)
        worker = Worker(
            gen.config, gen.number, sockets, status_w, self._life_r, gen.shared, slot, gen.buckets, gen.metrics,
            gen.security, gen.cache, push_worker,
        )
        pid = os.fork()
        if pid == 0:
            try:
                os.close(status_r)
                keep = {status_w, self._life_r, *(s.fileno() for s, _ in sockets)}
                if push_master is not None and push_worker is not None:
                    push_master.close()
                    keep.add(push_worker.fileno())
                self._close_in_child(keep=keep)
            finally:
                worker.main()
        os.close(status_w)
        if push_master is not None and push_worker is not None:
            push_worker.close()
            self.pushes.attach(pid, push_master, gen.number, slot)
        os.set_blocking(status_r, False)
        now = time.monotonic()
        proc = WorkerProc(pid, slot, gen.number, status_r, now, last_seen=now)
        self.workers[pid] = proc
        gen.workers[pid] = proc
        self.sel.register(status_r, selectors.EVENT_READ, lambda f, m, p=proc: self._on_status(p))
        return proc

    def _close_in_child(self, keep: set[int]) -> None:
        signal.set_wakeup_fd(-1)
        self.sel.close()
        fds = {self._wake_r, self._wake_w, self._life_w}
        fds |= {w.status_fd for w in self.workers.values()}
        for security in self.securities.values():
            fds |= security.fds()
        if self.admin is not None:
            fds |= self.admin.fds()
        fds |= self.pushes.fds()
        for socks in self.sockets.values():
            fds |= {s.fileno() for s in socks}
        for fd in fds - keep:
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_status(self, proc: WorkerProc) -> None:
        try:
            data = os.read(proc.status_fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._unregister(proc)
            return
        proc.last_seen = time.monotonic()
        if b"R" in data:
            proc.ready = True
        if b"S" in data:
            proc.accepting = False

    def _unregister(self, proc: WorkerProc) -> None:
        if proc.status_fd >= 0:
            try:
                self.sel.unregister(proc.status_fd)
            except (KeyError, ValueError):
                pass
            os.close(proc.status_fd)
            proc.status_fd = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.workers.pop(pid, None)
            if proc is None:
                if not self.checkers.reaped(pid, status):
                    self.agents.reaped(pid, status)
                continue
            self._unregister(proc)
            self.pushes.detach(pid)
            self._release_cache(pid)
            self._worker_exited(proc, status)
            self.metrics.retire(self._metric_generations())

    def _release_cache(self, pid: int) -> None:
        """A reaped worker's unfinished cache writes and fill claims are freed at once (before any
        new fork can reuse its pid), so its waiters need not wait for their deadline."""
        seen: set[int] = set()
        for gen in (self.current, self.pending):
            if gen is not None and gen.cache is not None and id(gen.cache.store) not in seen:
                seen.add(id(gen.cache.store))
                gen.cache.release_dead(pid)

    def _worker_exited(self, proc: WorkerProc, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = exit_words(status)
        for gen in (self.current, self.pending):
            if gen is not None:
                gen.workers.pop(proc.pid, None)
        if proc.stopping or self.stopping is not None:
            return
        if self.pending is not None and proc.generation == self.pending.number:
            self._abandon_pending(f"new worker {proc.pid} exited ({how}) before listening")
            return
        if self.current is None or proc.generation != self.current.number:
            return
        if not proc.ready and code == WORKER_BOOT_ERROR:
            if not self.current.announced:
                process_log(f"worker {proc.pid} could not start ({how}); stopping")
                self.exit_code = 1
                self._stop(quick=True)
                return
        delay = self.restarts.after_exit(time.monotonic() - proc.started)
        self.metrics.restarts += 1
        process_log(f"worker {proc.pid} (slot {proc.slot}) exited ({how}); replacing it{self.restarts.words()}")
        self.respawn_at[proc.slot] = time.monotonic() + delay

    def _supervise(self) -> None:
        now = time.monotonic()
        if self.stopping is not None:
            if now >= self.stopping:
                for w in self.workers.values():
                    send_signal(w.pid, signal.SIGKILL)
            return
        cur = self.current
        assert cur is not None
        self.checkers.supervise(now)
        self.agents.supervise(now)
        self._retire_agents()
        for slot, at in list(self.respawn_at.items()):
            if at <= now:
                del self.respawn_at[slot]
                self._spawn(cur, slot)
        if not cur.announced and self._generation_serves_alone(cur, now):
            cur.announced = True
            if cur.number > 1:
                self._reload_done(cur, None)
            else:
                self._write_status()
            self._announce(cur)
            if self.reload_queued:
                self.reload_queued = False
                self._reload()
        pending = self.pending
        if pending is not None:
            if all(w.ready for w in pending.workers.values()) and len(pending.workers) == pending.config.workers:
                self._promote(pending)
            elif any(now - w.started > BOOT_TIMEOUT for w in pending.workers.values() if not w.ready):
                self._abandon_pending("new workers did not start listening in time")
        for w in self.workers.values():
            if w.ready and not w.stopping and now - w.last_seen > HEARTBEAT_TIMEOUT:
                process_log(f"worker {w.pid} sent no heartbeat for {HEARTBEAT_TIMEOUT:.0f}s; killing it")
                send_signal(w.pid, signal.SIGKILL)
            elif not w.ready and now - w.started > BOOT_TIMEOUT and w.generation == cur.number:
                send_signal(w.pid, signal.SIGKILL)

    def _retire_agents(self) -> None:
        """A generation's auth agent and shared auth state go when none of its workers is left
        (old workers finishing their requests during a reload still introspect through it)."""
        live = {w.generation for w in self.workers.values()}
        live |= {g.number for g in (self.current, self.pending) if g is not None}
        for number in [n for n in self.securities if n not in live]:
            self.agents.retire(number)
            self.securities.pop(number).close()

    def _generation_serves_alone(self, gen: Generation, now: float) -> bool:
        """Every worker of `gen` listens and no older worker still accepts, so from now on every
        new connection gets this generation's configuration. An old worker that does not report
        within OLD_ACCEPT_TIMEOUT (stuck) does not hold the announcement back."""
        if len(gen.workers) != gen.config.workers or not all(w.ready for w in gen.workers.values()):
            return False
        return now >= gen.promoted + OLD_ACCEPT_TIMEOUT or not any(
            w.accepting for w in self.workers.values() if w.generation < gen.number
        )

    def _announce(self, gen: Generation) -> None:
        """The ready line, printed once what it announces can be observed (title, status)."""
        self._set_title(f"generation {gen.number}")
        self._log_listening(gen.config)
        pids = ",".join(str(p) for p in sorted(gen.workers))
        process_log(f"master {os.getpid()} ready: generation {gen.number}, workers {pids}")

    # ---- reload and stop ----------------------------------------------------------------------

    def _reload(self) -> None:
        """One reload attempt, answering every request made so far; while another attempt is
        under way (or the serving generation is not announced yet) it waits for its outcome."""
        cur = self.current
        assert cur is not None
        covers = self.reload_requests
        if self.stopping is not None:
            self._reload_failed(covers, "the gateway is stopping")
            return
        if self.pending is not None or not cur.announced:
            self.reload_queued = True
            self._write_status()
            return
        try:
            config = load(self.config_path, host_checks=True)
        except ConfigError as exc:
            self._reload_failed(covers, "the new configuration is invalid; still serving the old one", exc.problems)
            return
        except Exception as exc:
            log_exception("reload", exc)
            self._reload_failed(covers, f"internal error: {exc!r}")
            return
        try:
            self._check_access_log(config)
            security = self._build_security(config)
            created = self._ensure_sockets(config)
        except StartError as exc:
            self._reload_failed(covers, f"{exc}; still serving the old configuration")
            return
        self.pending = self._start_generation(cur.number + 1, config, security)
        self.pending.new_sockets = created
        self._write_status()

    def _reload_failed(self, covers: int, error: str, details: list[str] | tuple[str, ...] = ()) -> None:
        process_log(f"reload failed: {error}")
        for line in details:
            process_log(f"  {line}")
        cur = self.current
        self._record_reload(covers, cur.number if cur is not None else 0, "\n".join([error, *details]))

    def _reload_done(self, gen: Generation, error: str | None) -> None:
        self._record_reload(gen.covers, gen.number, error)

    def _record_reload(self, covers: int, generation: int, error: str | None) -> None:
        """The outcome of the reload requests up to number `covers`: `fastgw reload` and
        `GET /healthz` read it (`last_reload`)."""
        self.metrics.reloads["ok" if error is None else "failed"] += 1
        self.last_reload = {
            "request": covers,
            "result": "ok" if error is None else "failed",
            "generation": generation,
            "error": error,
            "at": round(time.time(), 3),
        }
        self._write_status()

    def _promote(self, new: Generation) -> None:
        old = self.current
        assert old is not None
        self.pending = None
        self.current = new
        self.config = new.config
        self.respawn_at.clear()
        new.promoted = time.monotonic()
        self.checkers.retire(old.number)
        for w in list(old.workers.values()):
            w.stopping = True
            send_signal(w.pid, signal.SIGTERM)
        for w in self.workers.values():
            if w.generation < new.number and not w.stopping:
                w.stopping = True
                send_signal(w.pid, signal.SIGTERM)
        self._retire_sockets()
        self._update_admin(new.config)

    def _update_admin(self, config: Config) -> None:
        """The admin listener stays as it started (its address and presence change at the next
        start); a new token applies at once."""
        wanted = config.admin.address if config.admin is not None else None
        current = self.admin.address if self.admin is not None else None
        if wanted != current:
            process_log(f"the admin address changed ({current or 'none'} -> {wanted or 'none'}): it takes effect "
                        "at the next start")
        if self.admin is not None and config.admin is not None:
            self.admin.set_token(config.admin.token)

    def _retire_sockets(self) -> None:
        """Sockets of addresses the new configuration no longer listens on."""
        wanted = {listener.address for listener in self.config.listen}
        for address in list(self.sockets):
            if address not in wanted:
                for sock in self.sockets.pop(address):
                    sock.close()

    def _abandon_pending(self, why: str) -> None:
        pending = self.pending
        self.pending = None
        if pending is None:
            return
        for w in pending.workers.values():
            w.stopping = True
            send_signal(w.pid, signal.SIGKILL)
        self.checkers.retire(pending.number)
        self._retire_agents()
        self._close_sockets(pending.new_sockets)
        self._reload_failed(pending.covers, f"{why}; still serving the old configuration")
        if self.reload_queued:
            self.reload_queued = False
            self._reload()

    def _stop(self, quick: bool) -> None:
        if self.stopping is not None and not quick:
            return
        grace = 0.5 if quick else self.config.grace_period + 1.0
        self.stopping = time.monotonic() + grace
        self.quick = quick
        if self.admin is not None:
            self.admin.close()
            self.admin = None
        if self.pending is not None or self.reload_queued:
            self.reload_queued = False
            self._reload_failed(self.reload_requests, "the gateway is stopping")
        sig = signal.SIGQUIT if quick else signal.SIGTERM
        for w in self.workers.values():
            w.stopping = True
            send_signal(w.pid, sig)
        self.checkers.stop()
        self.agents.stop()

    # ---- pidfile and cleanup ------------------------------------------------------------------

    def _check_pidfile(self) -> None:
        """Refuses to start while the pidfile names a running master: the second one would take
        the pidfile over and the first would run on unreachable by `fastgw stop`. A pidfile naming
        a dead process, or one that is not a fastgw master, is stale and replaced."""
        if not self.pidfile:
            return
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return
        if pid != os.getpid() and is_fastgw_master(pid):
            where = place(self.config_path, ("pidfile",))
            raise StartError(
                f"{where}: {self.pidfile} names fastgw master {pid}, which is running: not starting a second "
                f"instance (stop it with `fastgw stop --pidfile {self.pidfile}`, or give this one another pidfile)"
            )

    def _write_pidfile(self) -> None:
        if not self.pidfile:
            return
        tmp = f"{self.pidfile}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, self.pidfile)
        except OSError as exc:
            pidfile, self.pidfile = self.pidfile, None
            try:
                os.unlink(tmp)
            except OSError:
                pass
            where = place(self.config_path, ("pidfile",))
            raise StartError(f"{where}: cannot write {pidfile}: {exc.strerror}") from None
        self._write_status()

    @property
    def status_path(self) -> str | None:
        """The reload status file beside the pidfile (read by `fastgw reload`)."""
        return f"{self.pidfile}.status" if self.pidfile else None

    def _write_status(self) -> None:
        """`PIDFILE.status`: this master's generation and its reload requests and last outcome,
        replaced atomically, so that `fastgw reload` can wait for the outcome of its request."""
        path = self.status_path
        if path is None:
            return
        cur = self.current
        state = {
            "pid": os.getpid(),
            "generation": cur.number if cur is not None else 0,
            "reload_requests": self.reload_requests,
            "last_reload": self.last_reload,
        }
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(state, f)
                f.write("\n")
            os.replace(tmp, path)
        except OSError as exc:
            process_log(f"cannot write the status file {path}: {exc.strerror}")

    def _set_title(self, state: str) -> None:
        set_title(f"{MASTER_TITLE} ({state}) -c {os.path.abspath(self.config_path)}")

    def _cleanup(self) -> None:
        if self.pidfile:
            try:
                with open(self.pidfile) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(self.pidfile)
                        if self.status_path is not None:
                            os.unlink(self.status_path)
            except OSError:
                pass
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        if self.admin is not None:
            self.admin.close()
        self.pushes.close()
        self.checkers.wait()
        self.agents.wait()
        for security in self.securities.values():
            security.close()
        os.close(self._life_w)

    # ---- for the admin API --------------------------------------------------------------------

    def push(self, cid: str, op: int, payload: bytes, answer: Callable[[int, dict[str, object]], None]) -> None:
        """A request for bridged connection `cid` (`/connections/{id}`), forwarded to the worker
        holding it; `answer(status, json)` is called once, now or when the worker answers."""
        self.pushes.send(cid, op, payload, answer, lambda pid: pid in self.workers)

    def _metric_generations(self) -> set[int]:
        """Generations whose metrics tables are still written: serving, starting, or with a
        worker not yet reaped."""
        alive = {w.generation for w in self.workers.values()}
        for gen in (self.current, self.pending):
            if gen is not None:
                alive.add(gen.number)
        return alive

    def live_slots(self) -> dict[int, dict[int, int]]:
        """generation -> {slot: pid} of every running worker (draining ones included)."""
        out: dict[int, dict[int, int]] = {}
        for w in self.workers.values():
            out.setdefault(w.generation, {})[w.slot] = w.pid
        return out

    def status(self) -> dict[str, object]:
        cur = self.current
        return {
            "status": "stopping" if self.stopping is not None else "ok",
            "pid": os.getpid(),
            "generation": cur.number if cur else 0,
            "workers": sorted(p for p, w in (cur.workers.items() if cur else ()) if w.ready),
            "reloading": self.pending is not None or self.reload_queued,
            "reload_requests": self.reload_requests,
            "last_reload": self.last_reload,
        }


def _bridges(config: Config) -> bool:
    """Whether some route of `config` bridges WebSocket (its workers then get a push channel)."""
    return any(r.websocket is not None and r.websocket.bridge is not None for r in config.routes)
