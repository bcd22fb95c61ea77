"""The client side of the gateway: one `ClientProtocol` per downstream connection.

httptools calls back into this object as bytes arrive; a request whose head is complete is routed
and bound to an upstream connection, and from then on bytes flow both ways without buffering
beyond what one read brings (flow control pauses the faster side). Everything a request needs from
configuration was compiled into its `RoutePlan`; nothing here reads configuration.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from fastgw._core import PathError, normalize_path
from fastgw.http.replies import status_line
from fastgw.http.request import Request

if TYPE_CHECKING:
    from fastgw.runtime import ListenerInfo, Runtime
    from fastgw.upstream.pool import TargetPool, UpstreamConnection

# Header names the request path must look at, by kind.
_HOST, _TE, _CL, _CONN, _EXPECT, _XFF, _XRID, _UA, _REF = range(9)
_SPECIAL = {
    b"host": _HOST,
    b"transfer-encoding": _TE,
    b"content-length": _CL,
    b"connection": _CONN,
    b"expect": _EXPECT,
    b"x-forwarded-for": _XFF,
    b"x-request-id": _XRID,
    b"user-agent": _UA,
    b"referer": _REF,
}
_RESP_CL = b"content-length"
_RESP_CONN = b"connection"
_RID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Reasons to stop reading from the client (a bit each; reading resumes when none is left).
_P_QUEUE, _P_UPSTREAM, _P_BUFFER = 1, 2, 4
_BODY_BUFFER = 256 * 1024
DRAIN_FIRST_REQUEST = 1.0


class Reject(Exception):
    """Raised inside parser callbacks to refuse a request; carries the status to answer."""

    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        self.message = message


class ClientProtocol(asyncio.Protocol):
    __slots__ = (
        "rt", "listener", "transport", "parser", "req", "active", "queue", "up", "paused",
        "write_paused", "closing", "peer", "trusted", "last_active", "deferred", "out", "served", "last_host",
    )

    def __init__(self, rt: Runtime, listener: ListenerInfo) -> None:
        self.rt = rt
        self.listener = listener
        self.transport: Any = None
        self.parser = HttpRequestParser(self)
        self.req: Request | None = None
        self.active: Request | None = None
        self.queue: deque[Request] | None = None
        self.up: UpstreamConnection | None = None
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.peer = b""
        self.trusted = False
        self.last_active = rt.clock.now
        self.deferred: Reject | None = None
        self.served = 0
        self.last_host: bytes | None = None
        """The last Host value found valid on this connection: keep-alive clients repeat it, so
        it is checked once."""
        self.out: list[bytes] = []
        """Response bytes produced while parsing one upstream read, written with one writev by
        `flush` when the read is done."""

    # ---- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else ""
        self.peer = ip.encode()
        self.trusted = self.rt.is_trusted(ip)
        self.rt.connections.add(self)
        if self.rt.draining:
            self.closing = True

    def data_received(self, data: bytes) -> None:
        self.last_active = self.rt.clock.now
        req = self.req
        if req is not None and not req.head_done:
            req.raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Reject):
                self.reject(cause.status, cause.message)
            else:
                self.rt.internal_error(cause)
                self.reject(500)
            return
        except HttpParserUpgrade as exc:
            self._upgrade_ignored(data, exc.args[0])
            return
        except HttpParserError as exc:
            self._parse_error(exc)
            return
        req = self.req
        if req is not None and not req.head_done and req.raw_head > self.rt.max_head:
            self.reject(431)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.rt.connections.discard(self)
        up = self.up
        if up is not None:
            self.up = None
            up.abort()
        active = self.active
        if active is not None and not active.finished:
            if not active.resp_started:
                active.status = 499
            self._log(active)
        self.active = None
        self.queue = None

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.up
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    # ---- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.req = Request(self.rt.clock.now)

    def on_url(self, url: bytes) -> None:
        req = self.req
        req.url += url  # type: ignore[union-attr]
        if len(req.url) > self.rt.max_url:  # type: ignore[union-attr]
            raise Reject(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.req
        assert req is not None
        req.nheaders += 1
        req.head_size += len(name) + len(value) + 4
        if req.nheaders > self.rt.max_headers or req.head_size > self.rt.max_head:
            raise Reject(431)
        lname = name.lower()
        kind = _SPECIAL.get(lname)
        if kind is not None:
            if kind == _HOST:
                req.host = value
                req.host_count += 1
            elif kind == _TE:
                if req.te is None:
                    req.te = []
                req.te.append(value)
            elif kind == _CL:
                req.cl = int(value)
            elif kind == _CONN:
                self._connection_tokens(req, value)
            elif kind == _EXPECT:
                req.expect = value
            elif kind == _XFF:
                if req.xff is None:
                    req.xff = []
                req.xff.append(value)
            elif kind == _XRID:
                req.rid_in = value if req.rid_in is None else b"!"
            elif kind == _UA:
                req.ua = value
            else:
                req.referer = value
        req.headers.append((lname, name, value))

    def on_headers_complete(self) -> None:
        req = self.req
        assert req is not None
        parser = self.parser
        req.head_done = True
        req.version = parser.get_http_version()
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        req.upgrade = parser.should_upgrade()
        if req.te is None and req.cl <= 0:
            # No body follows: the request is complete now, so a local answer need not close.
            req.body_done = True
        if self.active is None and self.deferred is None:
            self._start(req)
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(req)
            self._pause(_P_QUEUE)

    def on_body(self, body: bytes) -> None:
        req = self.req
        assert req is not None
        req.body_len += len(body)
        if req.body_len > self.rt.max_body:
            raise Reject(413)
        up = self.up
        if up is not None and req is self.active and req.req_sent is False and req.head:
            up.last_active = self.rt.clock.now
            if req.chunked:
                up.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
            else:
                up.transport.write(body)
            return
        if req.finished:
            return
        if req.body is None:
            req.body = []
        req.body.append(body)
        if req.body_len > _BODY_BUFFER:
            self._pause(_P_BUFFER)

    def on_message_complete(self) -> None:
        req = self.req
        assert req is not None
        req.body_done = True
        self.req = None
        if req is self.active:
            up = self.up
            if up is not None and req.head and not req.req_sent:
                if req.chunked:
                    up.transport.write(b"0\r\n\r\n")
                req.req_sent = True
            if req.finished:
                self._after_response(req)

    # ---- request start ----------------------------------------------------------------------

    def _start(self, req: Request) -> None:
        rt = self.rt
        self.active = req
        self.served += 1
        rid = req.rid_in
        if rid is None or not rid or len(rid) > 128 or rid.translate(None, _RID_CHARS):
            rid = rt.new_request_id()
        req.rid = rid
        version = req.version
        if version != "1.1" and version != "1.0":
            return self._local_error(req, 400, "unsupported HTTP version", close=True)
        if req.host_count > 1:
            return self._local_error(req, 400, "duplicate Host header", close=True)
        if req.host_count == 0 and version == "1.1":
            return self._local_error(req, 400, "missing Host header", close=True)
        if req.host is not None and req.host != self.last_host:
            if not _valid_host(req.host):
                return self._local_error(req, 400, "invalid Host header", close=True)
            self.last_host = req.host
        if req.te is not None:
            if version == "1.0":
                # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
                return self._local_error(req, 400, "Transfer-Encoding in an HTTP/1.0 request", close=True)
            status, message = _check_te(req.te)
            if status:
                return self._local_error(req, status, message, close=True)
            req.chunked = True
        if req.expect is not None and req.expect.lower() != b"100-continue":
            return self._local_error(req, 417, close=True)
        url = req.url
        if url[:1] != b"/":
            if not self._absolute_form(req):
                return
            url = req.url
        q = url.find(b"?")
        if q >= 0:
            raw_path = url[:q]
            req.query = url[q:]
        else:
            raw_path = url
        if b"#" in req.query:
            return self._local_error(req, 400, "fragment in request target", close=True)
        try:
            path = normalize_path(raw_path)
        except PathError as exc:
            return self._local_error(req, 400, f"invalid path: {exc}", close=True)
        req.path = path
        m = rt.trie.match(req.host or b"", req.method, path)
        if m.status != 200:
            if m.status == 405:
                return self._local_error(req, 405, extra=b"allow: " + m.allow + b"\r\n")
            return self._local_error(req, 404)
        plan = m.target
        req.plan = plan
        if req.cl > rt.max_body:
            return self._local_error(req, 413, close=True)
        filters = plan.filters
        if filters:
            for f in filters:
                reply = f.on_request(self, req)
                if reply is not None:
                    status, message, headers = reply
                    return self._local_error(req, status, message, extra=headers)
        if plan.strip_len >= 0:
            path = path[plan.strip_len:] or b"/"
        req.head = self._upstream_head(req, plan, path)
        pool = plan.group.pick(self, req, None)
        if pool is None:
            return self._local_error(req, 503, "no healthy upstream target")
        self._send_to(req, pool)

    def _upstream_head(self, req: Request, plan: Any, path: bytes) -> bytes:
        rt = self.rt
        drop = plan.request_drop
        if req.conn_drop is not None:
            drop = drop | req.conn_drop
        host_header = plan.host_header
        parts = [req.method, b" ", path, req.query, b" HTTP/1.1\r\n"]
        append = parts.append
        for lname, name, value in req.headers:
            if lname in drop or (host_header is not None and lname == b"host"):
                continue
            append(name)
            append(b": ")
            append(value)
            append(b"\r\n")
        if host_header is not None:
            append(b"host: " + host_header + b"\r\n")
        elif req.host is None:
            append(plan.default_host_line)
        xff = req.xff
        if xff is not None and self.trusted:
            append(b"x-forwarded-for: " + b", ".join(xff) + b", " + self.peer + b"\r\n")
        else:
            append(b"x-forwarded-for: " + self.peer + b"\r\n")
        append(self.listener.forwarded_lines)
        if req.host is not None:
            append(b"x-forwarded-host: " + req.host + b"\r\n")
        append(b"x-request-id: " + req.rid + b"\r\n")
        append(plan.request_set)
        if req.chunked:
            append(b"transfer-encoding: chunked\r\n\r\n")
        elif req.cl >= 0:
            append(b"content-length: %d\r\n\r\n" % req.cl)
        else:
            append(b"\r\n")
        rt.requests_routed += 1
        return b"".join(parts)

    def _send_to(self, req: Request, pool: TargetPool) -> None:
        req.pool = pool
        req.upstream = pool.label
        req.attempts += 1
        conn = pool.take()
        if conn is not None:
            self._attach(req, conn)
        else:
            if not req.body_done:
                self._pause(_P_BUFFER)
            self.rt.spawn(self._connect(req, pool))

    async def _connect(self, req: Request, pool: TargetPool) -> None:
        try:
            conn = await pool.connect()
        except TimeoutError:
            self._connect_failed(req, pool, 504, "timed out connecting to the upstream")
            return
        except OSError as exc:
            self._connect_failed(req, pool, 502, f"cannot connect to the upstream: {exc.strerror or exc}")
            return
        if req is not self.active or self.transport is None or self.transport.is_closing():
            pool.give(conn)
            return
        self._attach(req, conn)

    def _connect_failed(self, req: Request, pool: TargetPool, status: int, message: str) -> None:
        if req is not self.active:
            return
        pool.on_failure("connect_error")
        group = req.plan.group
        if req.attempts < 2 and len(group.pools) > 1:
            other = group.pick(self, req, pool)
            if other is not None:
                self._send_to(req, other)
                return
        self._local_error(req, status, message, close=not req.body_done)

    def _attach(self, req: Request, conn: UpstreamConnection) -> None:
        self.up = conn
        conn.bind(self)
        transport = conn.transport
        if req.expect is not None and not req.body_done and req.body is None and req.version == "1.1":
            self.transport.write(_CONTINUE)
            req.continue_sent = True
        body = req.body
        if body is None:
            transport.write(req.head)
        elif req.chunked:
            parts = [req.head]
            for chunk in body:
                parts.append(b"%x\r\n" % len(chunk))
                parts.append(chunk)
                parts.append(b"\r\n")
            transport.writelines(parts)
        else:
            transport.writelines([req.head, *body])
        req.body = None
        if req.body_done:
            if req.chunked:
                transport.write(b"0\r\n\r\n")
            req.req_sent = True
        self._resume(_P_BUFFER)

    # ---- upstream events ----------------------------------------------------------------------

    def upstream_head(self, conn: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        req = self.active
        if req is None:
            return
        if status < 200:
            if status == 101:
                self.upstream_failed(conn, 502, "upstream switched protocols unrequested")
                return
            if status != 100 and req.version == "1.1":
                self.out.append(self._response_head(req, status, headers, informational=True))
            return
        req.status = status
        req.resp_started = True
        self.out.append(self._response_head(req, status, headers, informational=False))
        if req.method == b"HEAD":
            # llhttp cannot be told the response answers a HEAD, so it would wait for the body the
            # headers announce: the response ends here and the connection is not reused.
            conn.broken = True
            conn.done = True
        elif not req.resp_nobody and conn.until_close is False and req.resp_chunked_up is False \
                and req.resp_cl_up is False:
            conn.until_close = True

    def _response_head(
        self, req: Request, status: int, headers: list[tuple[bytes, bytes]], informational: bool
    ) -> bytes:
        plan = req.plan
        drop = plan.response_drop
        conn_drop = None
        upstream_cl = None
        chunked_up = False
        for name, value in headers:
            lname = name.lower()
            if lname == _RESP_CONN:
                conn_drop = _tokens(value, conn_drop)
            elif lname == _RESP_CL:
                upstream_cl = value
            elif lname == b"transfer-encoding":
                chunked_up = True
        req.resp_chunked_up = chunked_up
        req.resp_cl_up = upstream_cl is not None
        parts = [status_line(status)]
        append = parts.append
        for name, value in headers:
            lname = name.lower()
            if lname in drop or (conn_drop is not None and lname in conn_drop):
                continue
            append(name)
            append(b": ")
            append(value)
            append(b"\r\n")
        append(plan.response_set)
        append(req.resp_extra)
        append(b"x-request-id: " + req.rid + b"\r\n")
        if informational:
            append(b"\r\n")
            return b"".join(parts)
        nobody = req.method == b"HEAD" or status == 204 or status == 304
        req.resp_nobody = nobody
        close = self.closing or not req.keep_alive or not req.body_done
        if nobody:
            if upstream_cl is not None and status != 204:
                append(b"content-length: " + upstream_cl + b"\r\n")
        elif upstream_cl is not None and not chunked_up:
            append(b"content-length: " + upstream_cl + b"\r\n")
        elif req.version == "1.1":
            append(b"transfer-encoding: chunked\r\n")
            req.resp_chunked = True
        else:
            close = True
        if close:
            append(b"connection: close\r\n\r\n")
        elif req.version == "1.0":
            append(b"connection: keep-alive\r\n\r\n")
        else:
            append(b"\r\n")
        req.resp_close = close
        return b"".join(parts)

    def upstream_body(self, body: bytes) -> None:
        req = self.active
        if req is None or req.resp_nobody:
            return
        req.sent += len(body)
        out = self.out
        if req.resp_chunked:
            out.append(b"%x\r\n" % len(body))
            out.append(body)
            out.append(b"\r\n")
        else:
            out.append(body)

    def upstream_message_complete(self, conn: UpstreamConnection) -> bool:
        """Returns True when the final response is complete (False after an informational one)."""
        req = self.active
        if req is None:
            return True
        if not req.resp_started:
            return False
        if req.resp_chunked:
            self.out.append(b"0\r\n\r\n")
        return True

    def flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            if self.transport is not None:
                self.transport.writelines(out)

    def upstream_complete(self, conn: UpstreamConnection) -> None:
        """Called once the read that completed the response is fully parsed."""
        self.flush()
        req = self.active
        self.up = None
        if req is None:
            conn.release(False)
            return
        conn.release(req.req_sent and req.body_done)
        pool = req.pool
        if pool is not None:
            pool.on_success(req.status, time.monotonic() - req.t0)
        req.finished = True
        self._log(req)
        if req.body_done:
            self._after_response(req)
        elif req.resp_close:
            self.transport.close()

    def upstream_lost(self, conn: UpstreamConnection) -> None:
        req = self.active
        self.up = None
        conn.pool.forget(conn)
        conn.client = None
        if req is None:
            return
        if not req.resp_started:
            if (
                conn.reused
                and not conn.got_bytes
                and req.attempts < 3
                and req.method in _IDEMPOTENT
                and req.body_len == 0
                and not req.chunked
            ):
                # A pooled connection the upstream closed as we reused it (RFC 9112 §9.3.1): the
                # request is idempotent and had no body, so it is sent again on another connection.
                req.req_sent = False
                self._send_to(req, req.pool)
                return
            conn.pool.on_failure("reset")
            self._local_error(req, 502, "upstream closed the connection", close=not req.body_done)
            return
        conn.pool.on_failure("reset")
        self._abort(req)

    def upstream_failed(self, conn: UpstreamConnection, status: int, message: str) -> None:
        req = self.active
        self.up = None
        conn.broken = True
        conn.abort()
        conn.pool.on_failure("timeout" if status == 504 else "protocol_error")
        if req is None:
            return
        if not req.resp_started:
            self._local_error(req, status, message, close=True)
        else:
            self._abort(req)

    def upstream_timeout(self, conn: UpstreamConnection) -> None:
        self.upstream_failed(conn, 504, "upstream read timed out")

    def pause_for_upstream(self) -> None:
        self._pause(_P_UPSTREAM)

    def resume_for_upstream(self) -> None:
        self._resume(_P_UPSTREAM)

    # ---- completion ---------------------------------------------------------------------------

    def _after_response(self, req: Request) -> None:
        """The exchange is over in both directions: next request, or close."""
        self.active = None
        if req.resp_close or self.closing or self.transport.is_closing():
            self.transport.close()
            return
        deferred = self.deferred
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self._resume(_P_QUEUE)
            self._start(nxt)
        elif deferred is not None:
            self.deferred = None
            self.reject(deferred.status, deferred.message)

    def _local_error(
        self, req: Request, status: int, message: str | None = None, *, close: bool = False, extra: bytes = b""
    ) -> None:
        """Answers a request locally. The request body, if any, is not read: the connection closes
        unless the body is already complete, so the next request can never start mid-body."""
        close = close or self.closing or not req.keep_alive or not req.body_done
        self.flush()
        req.status = status
        req.resp_started = True
        req.resp_close = close
        req.finished = True
        self.up = None
        self.transport.write(
            self.rt.replies.error(
                status,
                req.rid,
                message=message,
                close=close,
                extra_headers=extra + req.resp_extra if req.resp_extra else extra,
                head_only=req.method == b"HEAD",
            )
        )
        self._log(req)
        if close:
            self.active = None
            self.transport.close()
        elif req.body_done:
            self._after_response(req)

    def reject(self, status: int, message: str | None = None) -> None:
        """Refuses what the parser is reading and closes: once framing is in doubt, nothing more
        on this connection can be trusted."""
        active = self.active
        if active is not None and not active.finished and self.req is active:
            # The body of the request being proxied is bad (framing, size): the upstream must
            # never see it complete, so its connection is dropped before answering.
            up = self.up
            if up is not None:
                self.up = None
                up.abort()
            if active.resp_started:
                self._abort(active)
            else:
                self._local_error(active, status, message, close=True)
            return
        if active is not None and not active.finished:
            if self.deferred is None:
                self.deferred = Reject(status, message)
            self._pause(_P_QUEUE)
            return
        req = self.req or Request(self.rt.clock.now)
        self.req = None
        if not req.rid:
            req.rid = self.rt.new_request_id()
        if not req.method:
            req.method = b"-"
        self.active = req
        self._local_error(req, status, message, close=True)

    def _parse_error(self, exc: HttpParserError) -> None:
        req = self.req
        if req is not None and req.te is not None:
            status, message = _check_te(req.te)
            if status:
                self.reject(status, message)
                return
        self.reject(400, f"malformed request: {exc}")

    def _upgrade_ignored(self, data: bytes, offset: int) -> None:
        """A request asked to upgrade on a route that does not: it was served as plain HTTP, and
        parsing carries on with a fresh parser where llhttp stopped."""
        self.parser = HttpRequestParser(self)
        rest = data[offset:]
        if rest:
            self.data_received(rest)

    def _abort(self, req: Request) -> None:
        """The response was already under way: the only honest signal left is a reset."""
        req.finished = True
        self.out = []
        if req.status == 0:
            req.status = 502
        self._log(req)
        self.active = None
        self.transport.abort()

    def _absolute_form(self, req: Request) -> bool:
        url = req.url
        lower = url[:8].lower()
        if lower.startswith(b"http://"):
            rest = url[7:]
        elif lower.startswith(b"https://"):
            rest = url[8:]
        else:
            self._local_error(req, 400, "invalid request target", close=True)
            return False
        slash = rest.find(b"/")
        authority = rest if slash < 0 else rest[:slash]
        if req.host is None or authority.lower() != req.host.lower():
            self._local_error(req, 400, "absolute-form target disagrees with Host", close=True)
            return False
        req.url = rest[slash:] if slash >= 0 else b"/"
        return True

    def _connection_tokens(self, req: Request, value: bytes) -> None:
        req.conn_drop = _tokens(value, req.conn_drop)

    def _pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _log(self, req: Request) -> None:
        req.finished = True
        self.rt.log_request(self, req)

    # ---- timeouts and draining (called by the worker's sweeper) ---------------------------------

    def sweep(self, now: float) -> None:
        rt = self.rt
        active = self.active
        req = self.req
        if active is not None and not active.finished:
            if not active.body_done and now - self.last_active > rt.body_timeout and not self.paused:
                if not active.resp_started:
                    self._local_error(active, 408, close=True)
                else:
                    self._abort(active)
            return
        if req is not None and not req.head_done:
            if now - req.start > rt.header_timeout:
                self.reject(408)
            return
        if now - self.last_active > rt.idle_timeout or (
            rt.draining and (self.served or now - rt.drain_started > DRAIN_FIRST_REQUEST)
        ):
            self.transport.close()

    def drain(self) -> None:
        """Stop after the current exchange. An idle keep-alive connection closes now; one that
        was accepted but has not sent its first request yet (it may have been queued before the
        worker stopped accepting) gets DRAIN_FIRST_REQUEST seconds to send it."""
        self.closing = True
        if self.active is None and self.req is None and self.served:
            self.transport.close()


_HOST_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%:[]"
_DIGITS = b"0123456789"


def _valid_host(host: bytes) -> bool:
    """RFC 9110 §7.2 / RFC 3986 §3.2.2: uri-host [":" port]; no userinfo, spaces or controls."""
    if not host or host.translate(None, _HOST_CHARS):
        return False
    if host[:1] == b"[":
        end = host.find(b"]")
        if end < 0:
            return False
        rest = host[end + 1 :]
        name = host[1:end]
        if not name or name.translate(None, b"0123456789abcdefABCDEF:."):
            return False
    else:
        colon = host.find(b":")
        if colon < 0:
            return host.find(b"[") < 0 and host.find(b"]") < 0
        rest = host[colon:]
        if host.find(b"[") >= 0 or host.find(b"]") >= 0:
            return False
    if not rest:
        return True
    return rest[:1] == b":" and len(rest) <= 6 and not rest[1:].translate(None, _DIGITS)


def _tokens(value: bytes, into: set[bytes] | None) -> set[bytes] | None:
    for token in value.split(b","):
        token = token.strip().lower()
        if token and token != b"close" and token != b"keep-alive":
            if into is None:
                into = set()
            into.add(token)
    return into


def _check_te(values: list[bytes]) -> tuple[int, str]:
    """DESIGN §8: `chunked` must be last and only once (else 400); any other coding is 501."""
    codings = [c.strip().lower() for v in values for c in v.split(b",")]
    if codings.count(b"chunked") > 1 or (b"chunked" in codings and codings[-1] != b"chunked"):
        return 400, "chunked must be the last transfer coding, once"
    if any(c != b"chunked" for c in codings):
        return 501, "unsupported transfer coding"
    return 0, ""
