"""A worker process: forked by the master with its listen sockets, it serves requests on a uvloop
loop until told to drain or until the master disappears.

The worker talks to the master through two pipes: a status pipe it writes (`R` once listening,
`H` every second as a heartbeat, `S` once it has stopped accepting) and a lifeline it reads, whose
end-of-file means the master died.
"""
from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
from collections.abc import Callable
from functools import partial
from typing import NoReturn

import uvloop

from fastgw._proxy import ListenerContext
from fastgw._tls import TlsListener
from fastgw.cache import SharedCache
from fastgw.config.model import Address, Config
from fastgw.http.protocol import ClientProtocol
from fastgw.log import log_exception, process_log
from fastgw.metrics.shared import SharedMetrics
from fastgw.ratelimit import SharedBuckets
from fastgw.runtime import TICK, ListenerInfo, Runtime
from fastgw.server.procinfo import set_title
from fastgw.server.security import Security
from fastgw.server.sockets import BACKLOG
from fastgw.tls import TLS_STATS, tls_listeners
from fastgw.upstream.shared import UpstreamShared

WORKER_BOOT_ERROR = 3
"""Exit status of a worker that could not start serving: the master must not respawn it blindly."""

HEARTBEAT = 1.0
"""Seconds between two heartbeats (`H` on the status pipe)."""

GC_THRESHOLD = 20_000
"""Allocations of tracked objects between two young-generation collections in a worker (Python's
default is 700). Each connection and request allocates a few tracked objects (protocol, parser,
request, transport); at the default, a collection ran every few dozen new connections and cost
about 2,500 instructions per connection (callgrind on get-small-close). The worker's long-lived
objects (config, routes, plans) are frozen out of the collections altogether."""


def _settle_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


class Worker:
    def __init__(
        self,
        config: Config,
        generation: int,
        sockets: list[tuple[socket.socket, Address]],
        status_fd: int,
        lifeline_fd: int,
        shared: UpstreamShared | None = None,
        slot: int = 0,
        buckets: SharedBuckets | None = None,
        metrics: SharedMetrics | None = None,
        security: Security | None = None,
        cache: SharedCache | None = None,
        push_sock: socket.socket | None = None,
    ) -> None:
        """`shared` is the generation's shared upstream state, `slot` the worker's slot (where it
        publishes its upstream stats), `buckets` the rate-limit table the master set up before
        forking, common to every worker, `metrics` the generation's metrics table (the worker
        writes row `slot`), `security` the generation's TLS contexts and auth state, `push_sock`
        the worker's end of its push channel (fastgw.bridge)."""
        self.config = config
        self.push_sock = push_sock
        self.cache = cache
        self.security = security or Security()
        self.metrics = metrics
        self.shared = shared
        self.slot = slot
        self.buckets = buckets
        self.generation = generation
        self.sockets = sockets
        self.status_fd = status_fd
        self.lifeline_fd = lifeline_fd
        self.servers: list[asyncio.AbstractServer] = []
        self.tls_listeners: list[TlsListener] = []
        self.stopping = False

    def main(self) -> NoReturn:
        """Entry point in the forked child; never returns."""
        code = WORKER_BOOT_ERROR
        try:
            set_title(f"fastgw: worker {self.slot} (generation {self.generation})")
            code = self.run()
        except BaseException as exc:
            log_exception(f"worker {os.getpid()}", exc)
        finally:
            os._exit(code)

    def run(self) -> int:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.rt = rt = Runtime(
            self.config, loop, self.generation, self.shared, self.slot, self.buckets, self.metrics,
            self.security.auth, self.cache,
        )
        listeners = {listener.address: listener for listener in self.config.listen}
        tls_index = {address: i for i, address in enumerate(tls_listeners(self.config))}
        tls_stats = rt.metrics.block(TLS_STATS) if tls_index else None
        for sock, address in self.sockets:
            info = ListenerInfo(listeners[address])
            context = self.security.tls.get(address)
            factory: Callable[[], asyncio.BaseProtocol] = partial(ClientProtocol, ListenerContext(rt, info))
            if context is not None:
                # TLS in front of the HTTP protocol, which it makes once the handshake is done.
                i = tls_index[str(address)]
                counters = tuple(TLS_STATS.at(name, i)
                                 for name in ("handshakes", "resumed", "handshake_errors", "handshake_timeouts"))
                tls = TlsListener(context, factory, loop, rt.header_timeout, tls_stats.inc, counters)
                self.tls_listeners.append(tls)
                rt.every(TICK, tls.expire)
                factory = tls
            server = loop.run_until_complete(loop.create_server(factory, sock=sock, backlog=BACKLOG))
            self.servers.append(server)
        if self.push_sock is not None and rt.bridge is not None:
            loop.run_until_complete(rt.bridge.listen(self.push_sock))
        rt.start()
        _settle_gc()
        self.done = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self.drain)
        loop.add_signal_handler(signal.SIGINT, self.drain)
        loop.add_signal_handler(signal.SIGQUIT, self.quit)
        loop.add_signal_handler(signal.SIGUSR1, rt.access.reopen)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        loop.add_reader(self.lifeline_fd, self._master_gone)
        os.write(self.status_fd, b"R")
        rt.every(HEARTBEAT, self._heartbeat)
        try:
            loop.run_until_complete(self.done)
        finally:
            rt.close()
        return 0

    def _heartbeat(self) -> None:
        try:
            os.write(self.status_fd, b"H")
        except OSError:
            self.drain()

    def _master_gone(self) -> None:
        self.loop.remove_reader(self.lifeline_fd)
        process_log(f"worker {os.getpid()}: master is gone, draining")
        self.drain()

    def drain(self) -> None:
        """Stop accepting, finish in-flight exchanges (each answered with `Connection: close`),
        close idle keep-alive connections, and exit when none is left or the grace period ends."""
        if self.stopping:
            return
        self.stopping = True
        for server in self.servers:
            server.close()
        try:
            os.write(self.status_fd, b"S")
        except OSError:
            pass
        rt = self.rt
        rt.drain()
        self.loop.call_later(self.config.grace_period, self._finish)
        self._check_drained()
        rt.every(TICK, self._check_drained)

    def _check_drained(self) -> None:
        if not self.rt.connections and not any(tls.handshaking for tls in self.tls_listeners):
            self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def quit(self) -> None:
        self.rt.access.flush()
        os._exit(0)
