"""The gateway's own HTTP/1.1 client over the upstream groups: for requests the gateway makes itself
(aggregation calls, the cache's background refresh), not for proxying a client's request.

`await client.request(group, b"GET", b"/users/1?x=y", headers, timeout=2.0, max_body=1 << 20)`
returns an `UpstreamResponse` (status, headers, whole body) or raises `UpstreamError`. Each call
goes through the group exactly as a proxied request does:

- `group.on_request()` once per call (the retry budget's denominator), a target from the group's
  balancer (`group.pick`), and for every attempt `target.begin()` then exactly one of
  `on_success(status, elapsed)`, `on_failure(kind)` or `on_cancel()`, so active and passive health,
  outlier ejection and the latency EWMA see these calls like any other traffic;
- retries by the upstream's `retries` policy and budget (`RetryPolicy.allows`, the same outcomes
  `connect_error`, `reset`, `timeout` and statuses), to another target when there is one, never
  back to a target that refused a connection; a pooled connection that turns out closed before any
  response byte is tried again on a new one without counting (RFC 9112 §9.3.1), as the exchange does;
- timeouts: `timeouts.connect` for the connect, `timeouts.read` (or `retries.per_try_timeout` when
  shorter) for the response head and `timeouts.read` for each gap between body reads, all within
  the call's own `timeout` and `retries.total_timeout`; an attempt cut short by the call's deadline
  is not retried.

Why connections of its own, per target, instead of the exchange's pool: an exchange connection
(`UpstreamConnection`, compiled) is bound to a client connection and streams the response to it,
while this client needs the response in memory, bounded by `max_body`. What the two share is the
target's state (`TargetState`), which is what health and balancing read.

Responses are framed by httptools (llhttp) alone: a response that llhttp refuses, an unrequested
101, or a connection closed mid-response is an error, never a guess. A response bigger than
`max_body` (by its Content-Length, or as its body arrives) ends the attempt as `too_large` and its
connection is closed. Header values and the target are checked for CR, LF and NUL before sending,
so values taken from requests or JSON can never split a request.
"""
from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import httptools

from fastgw._proxy import Request

__all__ = ["DEFAULT_MAX_BODY", "UpstreamClient", "UpstreamError", "UpstreamResponse"]

DEFAULT_MAX_BODY = 1024 * 1024
"""Bytes of response body a call accepts unless it says otherwise."""
MAX_HEAD = 64 * 1024
"""Bytes of response head (names and values) a response may have."""
MAX_HEADERS = 100
STALE_RETRIES = 2
"""Times a call goes again on a new connection after a pooled one was found closed."""
KEEPALIVE_IDLE = 15.0
TICK = 0.05
"""Seconds between two checks of the deadlines of exchanges in progress: the resolution of every
timeout here (one timer for all of them, none per request)."""
"""Seconds an idle connection is kept (the same reasoning as the exchange's pool, in pool.py)."""

_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
_CLIENT_OWNED = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"te",
                           b"keep-alive", b"proxy-connection", b"trailer"))
"""Request headers whose value is the client's to decide (framing, connection management)."""
# Visible ASCII: what a request target may contain (RFC 9112 §3.2; no spaces, no controls).
_TARGET_CHARS = bytes(range(0x21, 0x7F))
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class UpstreamError(Exception):
    """A call that got no usable response. `kind` is one of `no_target`, `connect_error`,
    `timeout`, `reset`, `protocol_error` or `too_large`; `message` says what happened without naming
    the target (it may be shown to clients); `target` is the address of the last attempt ("" when
    none was made), for logs only."""

    def __init__(self, kind: str, message: str, target: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.target = target
        self.attempts = attempts

    @property
    def status(self) -> int:
        """The status a gateway answers with for this failure (DESIGN §5)."""
        if self.kind == "no_target":
            return 503
        if self.kind == "timeout":
            return 504
        return 502


class UpstreamResponse:
    """A complete response: `headers` are (name, value) byte pairs as received."""

    __slots__ = ("status", "headers", "body", "target", "attempts")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, target: str, attempts: int
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.target = target
        self.attempts = attempts

    def header(self, lname: bytes) -> bytes | None:
        """The first value of header `lname` (lower case), or None."""
        for name, value in self.headers:
            if name.lower() == lname:
                return value
        return None

    def __repr__(self) -> str:
        return f"UpstreamResponse({self.status}, {len(self.body)} bytes from {self.target})"


class _Failed(Exception):
    """One attempt failed: `sent` when any of the request may have reached the target, `stale` when
    a pooled connection was found closed before any response byte (no fault of the target)."""

    def __init__(self, kind: str, message: str, *, sent: bool = True, stale: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.sent = sent
        self.stale = stale


class _TooLarge(Exception):
    pass


class _HeadTooLarge(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One keep-alive connection of the client to one target.

    Call order: `connect` (or the idle list) -> `send(...)` returns a future -> httptools callbacks
    -> the future gets the response, or a `_Failed` -> the client gives the connection back
    (`reusable`) or aborts it. Deadlines (the head's, the gap between reads, the call's) are checked
    by the client's tick (`check_time`), so neither a request nor a read costs a timer."""

    __slots__ = (
        "client", "target", "loop", "transport", "parser", "fd", "family", "waiter", "status", "headers",
        "head_size", "body", "body_len", "max_body", "head_only", "has_length", "chunked", "informational",
        "got_head", "got_bytes", "done", "broken", "closed", "reused", "last_active", "head_deadline",
        "deadline", "read_timeout",
    )

    def __init__(self, client: UpstreamClient, target: Any) -> None:
        self.client = client
        self.target = target
        self.loop = client.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.fd = -1
        self.family = socket.AF_INET
        self.waiter: asyncio.Future[UpstreamResponse] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.body: list[bytes] = []
        self.body_len = 0
        self.max_body = 0
        self.head_only = False
        self.has_length = False
        self.chunked = False
        self.informational = False
        self.got_head = False
        self.got_bytes = False
        self.done = False
        self.broken = False
        self.closed = False
        self.reused = False
        self.last_active = 0.0
        self.head_deadline = 0.0
        self.deadline = 0.0
        self.read_timeout = 0.0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        # Over TLS the socket holds records the TLS layer has not read yet (a session ticket after
        # the handshake is usual), not response bytes: no peek there.
        if sock is not None and not getattr(self.target, "tls", None):
            self.fd = sock.fileno()
            self.family = sock.family

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or self.done:
            # Bytes nobody asked for: where the next response starts is no longer known.
            self.broken = True
            self.abort()
            return
        self.got_bytes = True
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _TooLarge):
                self._fail("too_large", f"response body larger than {self.max_body} bytes")
            elif isinstance(cause, _HeadTooLarge):
                self._fail("protocol_error", "response head too large")
            else:
                self._fail("protocol_error", f"invalid response: {cause}")
        except httptools.HttpParserUpgrade:
            self._fail("protocol_error", "upstream switched protocols unrequested")
        except httptools.HttpParserError as exc:
            self._fail("protocol_error", f"invalid response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        waiter = self.waiter
        if waiter is None or waiter.done() or self.done:
            return
        if self.got_head and not self.has_length and not self.chunked and exc is None:
            # A close-delimited body (no Content-Length, not chunked) ends with the connection.
            self.broken = True
            self._complete()
        elif not self.got_bytes:
            self._fail("reset", "upstream closed the connection", stale=self.reused)
        else:
            self._fail("reset", "upstream closed the connection mid-response")

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.done:
            self.broken = True
        self.headers = []
        self.head_size = 0
        self.has_length = False
        self.chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD or len(self.headers) >= MAX_HEADERS:
            raise _HeadTooLarge
        self.headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            self.has_length = True
            if self.done:
                return
            length = int(value) if value.isdigit() else -1
            if length > self.max_body and not self.head_only:
                raise _TooLarge
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self.chunked = True

    def on_headers_complete(self) -> None:
        if self.done:
            return
        status = self.parser.get_status_code()
        if status < 200:
            self.informational = True
            return
        self.status = status
        self.got_head = True
        if status == 204 or status == 304:
            self.has_length = True
        if self.head_only:
            # llhttp cannot be told the response answers a HEAD, so it would wait for the body
            # the headers announce: the response ends here and the connection is not reused.
            self.broken = True
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.done:
            return
        self.body_len += len(body)
        if self.body_len > self.max_body:
            raise _TooLarge
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        if self.done:
            return
        if not self.parser.should_keep_alive():
            self.broken = True
        self._complete()

    # the exchange

    def send(
        self, data: list[bytes], head_timeout: float, read_timeout: float, deadline: float, max_body: int,
        head_only: bool,
    ) -> asyncio.Future[UpstreamResponse]:
        loop = self.loop
        now = loop.time()
        self.waiter = waiter = loop.create_future()
        self.status = 0
        self.headers = []
        self.body = []
        self.body_len = 0
        self.max_body = max_body
        self.head_only = head_only
        self.informational = False
        self.got_head = False
        self.got_bytes = False
        self.done = False
        self.last_active = now
        self.deadline = deadline
        self.head_deadline = min(now + head_timeout, deadline)
        self.read_timeout = read_timeout
        self.client._watch(self)
        assert self.transport is not None
        self.transport.writelines(data)
        return waiter

    def check_time(self, now: float) -> bool:
        """Fails the exchange whose deadline passed; False when it is over (nothing to watch)."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return False
        if now >= self.deadline:
            self._fail("timeout", "upstream timed out")
            return False
        if not self.got_head:
            if now >= self.head_deadline:
                self._fail("timeout", "upstream sent no response head in time")
                return False
        elif now - self.last_active >= self.read_timeout:
            self._fail("timeout", "upstream timed out")
            return False
        return True

    def _complete(self) -> None:
        self.done = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
            waiter.set_result(UpstreamResponse(self.status, self.headers, body, self.target.label, 0))

    def _fail(self, kind: str, message: str, *, stale: bool = False) -> None:
        self.broken = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(_Failed(kind, message, stale=stale))
        self.abort()

    def idle_ok(self, now: float) -> bool:
        """Whether this idle connection may carry another request: open, not idle too long, and
        with nothing waiting to be read (bytes after a response, or an EOF the loop has not seen
        yet), which would be taken for the next answer."""
        if self.closed or self.broken or now - self.last_active > KEEPALIVE_IDLE:
            return False
        if self.fd < 0:
            return True
        sock = socket.socket(self.family, socket.SOCK_STREAM, 0, self.fd)
        try:
            sock.recv(1, _PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            sock.detach()
        return False

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.client._forget(self)


class UpstreamClient:
    """One per worker (`Runtime.client`); see the module docstring. `sweep(now)` runs from the
    worker's sweeper and closes connections idle for longer than KEEPALIVE_IDLE; `close()` closes
    the idle ones and keeps any other from going back to the pool."""

    __slots__ = ("loop", "_idle", "_host_headers", "_closing", "_watched", "_ticking")

    def __init__(self, loop: asyncio.AbstractEventLoop, host_headers: Mapping[str, str | None] | None = None) -> None:
        self.loop = loop
        self._idle: dict[Any, list[_Connection]] = {}
        self._host_headers = {name: h.encode("latin-1") for name, h in (host_headers or {}).items() if h}
        """Upstream name → its `host_header`, for calls that do not give a Host."""
        self._closing = False
        self._watched: set[_Connection] = set()
        """Connections with an exchange in progress, whose deadlines `_tick` checks."""
        self._ticking = False

    async def request(
        self,
        group: Any,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        *,
        timeout: float | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        host: bytes | None = None,
        key_request: Request | None = None,
    ) -> UpstreamResponse:
        """`method target` (origin form: path and query) to a target of `group`, with `headers`
        (the client sets Host, Content-Length and Connection itself and drops callers' values for
        them) and `body`. `host`: the Host header (default: the upstream's `host_header`, else its
        first target's address). `key_request`: the request a `balance: hash` upstream takes its
        key from (default: one made of this call's method, target and headers). Raises
        UpstreamError, or ValueError for a target or header value that could split the request."""
        loop = self.loop
        start = loop.time()
        if not isinstance(headers, (list, tuple)):
            headers = list(headers)
        retry = group.retry
        deadline = start + timeout if timeout is not None else math.inf
        if retry.total_timeout is not None:
            deadline = min(deadline, start + retry.total_timeout)
        head_only = method == b"HEAD"
        data = self._render(group, method, target, headers, body, host)
        idempotent = method in _IDEMPOTENT
        if key_request is None and group.balance == "hash":
            key_request = _key_request(method, target, headers, host)
        group.on_request()
        pool = group.pick(None, key_request, None)
        attempts = 0
        stale = 0
        while True:
            if pool is None:
                raise UpstreamError("no_target", "no healthy upstream target", "", attempts)
            attempts += 1
            try:
                response = await self._attempt(pool, retry, data, deadline, max_body, head_only)
            except _Failed as failed:
                if failed.stale and stale < STALE_RETRIES and idempotent:
                    stale += 1
                    attempts -= 1
                    continue
                other = None
                if failed.kind not in ("too_large", "protocol_error") and loop.time() < deadline:
                    other = self._retry_target(group, pool, failed.kind, attempts, idempotent, failed.sent,
                                               key_request)
                if other is None:
                    raise UpstreamError(failed.kind, failed.message, pool.label, attempts) from None
                pool = other
                continue
            statuses = group.retry_statuses
            if statuses is not None and response.status in statuses and loop.time() < deadline:
                other = self._retry_target(group, pool, response.status, attempts, idempotent, True, key_request)
                if other is not None:
                    pool = other
                    continue
            response.attempts = attempts
            return response

    @staticmethod
    def _retry_target(
        group: Any, pool: Any, outcome: str | int, attempts: int, idempotent: bool, sent: bool, key_request: Any
    ) -> Any:
        """The exchange's `retry_target`: another attempt if the policy allows one, to another
        target where there is one, never back to one that just refused a connection."""
        if not group.retry.allows(outcome, attempts, idempotent, sent):
            return None
        other = group.pick(None, key_request, pool)
        if other is None or (other is pool and outcome == "connect_error"):
            return None
        return other

    async def _attempt(
        self, pool: Any, retry: Any, data: list[bytes], deadline: float, max_body: int, head_only: bool
    ) -> UpstreamResponse:
        loop = self.loop
        pool.begin()
        t0 = loop.time()
        conn = self._take(pool, t0)
        if conn is None:
            try:
                conn = await self._connect(pool, deadline)
            except asyncio.CancelledError:
                pool.on_cancel()
                raise
            except TimeoutError:
                pool.on_failure("connect_error")
                raise _Failed("connect_error", "timed out connecting to the upstream", sent=False) from None
            except OSError as exc:
                pool.on_failure("connect_error")
                message = f"cannot connect to the upstream: {exc.strerror or type(exc).__name__}"
                raise _Failed("connect_error", message, sent=False) from None
        read = pool.read_timeout
        head_timeout = read if retry.per_try_timeout is None else min(read, retry.per_try_timeout)
        try:
            response = await conn.send(data, head_timeout, read, deadline, max_body, head_only)
        except asyncio.CancelledError:
            conn.abort()
            pool.on_cancel()
            raise
        except _Failed as failed:
            conn.abort()
            if failed.stale or failed.kind == "too_large":
                pool.on_cancel()
            else:
                pool.on_failure(failed.kind)
            raise
        pool.on_success(response.status, loop.time() - t0)
        self._give(conn)
        return response

    def _take(self, pool: Any, now: float) -> _Connection | None:
        idle = self._idle.get(pool)
        while idle:
            conn = idle.pop()
            if conn.idle_ok(now):
                conn.reused = True
                return conn
            conn.abort()
        return None

    async def _connect(self, pool: Any, deadline: float) -> _Connection:
        loop = self.loop
        async with asyncio.timeout_at(min(loop.time() + pool.connect_timeout, deadline)):
            _, conn = await loop.create_connection(lambda: _Connection(self, pool), pool.host, pool.port, **pool.tls)
        conn.reused = False
        return conn

    def _give(self, conn: _Connection) -> None:
        conn.waiter = None
        if conn.broken or conn.closed or self._closing:
            conn.abort()
            return
        idle = self._idle.get(conn.target)
        if idle is None:
            idle = self._idle[conn.target] = []
        if len(idle) >= conn.target.max_idle:
            conn.abort()
            return
        conn.last_active = self.loop.time()
        idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.target)
        if idle and conn in idle:
            idle.remove(conn)

    def _render(
        self, group: Any, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes,
        host: bytes | None,
    ) -> list[bytes]:
        if not target.startswith(b"/") or target.translate(None, _TARGET_CHARS):
            raise ValueError(f"invalid request target {target[:80]!r}")
        if host is None:
            host = self._host_headers.get(group.name)
        lines = [method, b" ", target, b" HTTP/1.1\r\n"]
        if host is not None:
            lines += (b"host: ", host, b"\r\n")
        else:
            lines.append(group.default_host_line)
        breaks = 3
        for name, value in headers:
            if name.lower() in _CLIENT_OWNED:
                continue
            lines += (name, b": ", value, b"\r\n")
            breaks += 1
        if body or method in (b"POST", b"PUT", b"PATCH"):
            lines.append(b"content-length: %d\r\n" % len(body))
            breaks += 1
        lines.append(b"\r\n")
        head = b"".join(lines)
        # Each line ends with the one CRLF put there above: a CR, LF or NUL anywhere else came in
        # with a name or value, and would split the request (three scans in C, no per-value work).
        if head.count(b"\n") != breaks or head.count(b"\r") != breaks or b"\0" in head:
            raise ValueError(f"CR, LF or NUL in a request header: {head[:200]!r}")
        out = [head]
        if body:
            out.append(body)
        return out

    def _watch(self, conn: _Connection) -> None:
        self._watched.add(conn)
        if not self._ticking:
            self._ticking = True
            self.loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        """Every TICK while exchanges are in progress: their deadlines."""
        now = self.loop.time()
        watched = self._watched
        for conn in tuple(watched):
            if not conn.check_time(now):
                watched.discard(conn)
        if watched:
            self.loop.call_later(TICK, self._tick)
        else:
            self._ticking = False

    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def sweep(self, now: float) -> None:
        """Closes connections idle for longer than KEEPALIVE_IDLE (the loop's clock, `now` being
        the worker's monotonic clock, is read here)."""
        now = self.loop.time()
        for idle in self._idle.values():
            if idle and now - idle[0].last_active > KEEPALIVE_IDLE:
                for conn in [c for c in idle if now - c.last_active > KEEPALIVE_IDLE]:
                    conn.abort()

    def close(self) -> None:
        self._closing = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.abort()
        self._idle.clear()


def _key_request(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], host: bytes | None) -> Request:
    path, sep, query = target.partition(b"?")
    return Request.build(list(headers), method=method, path=path, host=host, query=sep + query)
