# The HTTP/1.1 exchange, client side (see exchange.pxd for the call order).
#
# Why compiled: callgrind showed the pure-Python protocol spending ~40% of its user-space
# instructions in the bytecode loop and its frames (bench/RESULTS.md). Here per-request state is C
# fields and three small state enums (request.pxd), header names are classified without creating
# lower-case copies (headers.pyx), and both heads are rendered into per-connection C buffers that
# become one bytes object.

from collections import deque as _deque
from http import HTTPStatus as _HTTPStatus

from httptools import (
    HttpParserCallbackError as _ParserCallbackError,
    HttpParserError as _ParserError,
    HttpParserUpgrade as _ParserUpgrade,
    HttpRequestParser as _RequestParser,
    HttpResponseParser as _ResponseParser,
)

from fastgw._core import PathError as _PathError

cdef dict _STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in _HTTPStatus}


cpdef bytes status_line(int status):
    """`HTTP/1.1 NNN Reason\r\n`, rendered once per known status."""
    cdef bytes line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % status
    return line


cdef bytes _RID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
cdef bytes _HOST_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%:[]"
cdef bytes _DIGITS = b"0123456789"
cdef frozenset _IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
cdef bytes _CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes _CRLF = b"\r\n"
cdef bytes _LAST_CHUNK = b"0\r\n\r\n"
cdef bytes _UPGRADE_LINES = b"connection: upgrade\r\nupgrade: websocket\r\n"

DRAIN_FIRST_REQUEST = 1.0
"""Seconds a connection accepted just before a drain gets to send its first request."""


# ---- failures: one place maps where an exchange failed to what the client gets ---------------

cdef int failure_status(int failure) noexcept:
    """Pingora's fail_to_proxy: the status for an upstream-side failure (DESIGN §5)."""
    if failure == F_NO_TARGET or failure == F_NO_CONNECTION:
        return 503
    if failure == F_CONNECT_TIMEOUT or failure == F_READ_TIMEOUT or failure == F_TOTAL_TIMEOUT:
        return 504
    return 502


cdef str failure_kind(int failure):
    """The outcome name retries and outlier detection know (`retries.on`, DESIGN §8)."""
    if failure == F_CONNECT_REFUSED or failure == F_CONNECT_TIMEOUT:
        return "connect_error"
    if failure == F_RESET:
        return "reset"
    if failure == F_READ_TIMEOUT or failure == F_TOTAL_TIMEOUT:
        return "timeout"
    return "protocol_error"


# ---- request validation helpers ------------------------------------------------------------

cdef inline bint _is_hex(char c) noexcept:
    return (b"0" <= c <= b"9") or (b"a" <= c <= b"f") or (b"A" <= c <= b"F")


cdef bint _valid_reg_name(bytes name):
    """A host name as DNS and every backend framework read one: dot-separated labels, none empty
    (one trailing dot allowed), `%` only as a complete escape. RFC 3986's reg-name admits `..`
    and empty labels, which no backend resolves the same way, so they are refused."""
    cdef const char* p = PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name), i = 0, label = 0
    if n == 0:
        return False
    if p[n - 1] == b".":
        n -= 1
        if n == 0:
            return False
    while i < n:
        if p[i] == b".":
            if label == 0:
                return False
            label = 0
        elif p[i] == b"%":
            if i + 2 >= n or not (_is_hex(p[i + 1]) and _is_hex(p[i + 2])):
                return False
            i += 2
            label += 3
        else:
            label += 1
        i += 1
    return label > 0


cpdef bint valid_host(bytes host):
    """RFC 9110 §7.2 / RFC 3986 §3.2.2: uri-host [":" port], where the host is a reg-name of
    non-empty labels or an IP-literal; no userinfo, spaces or controls."""
    cdef bytes rest, name
    cdef Py_ssize_t end, colon
    if not host or host.translate(None, _HOST_CHARS):
        return False
    if host[:1] == b"[":
        end = host.find(b"]")
        if end < 0:
            return False
        rest = host[end + 1:]
        name = host[1:end]
        if not name or name.translate(None, b"0123456789abcdefABCDEF:."):
            return False
    else:
        if host.find(b"[") >= 0 or host.find(b"]") >= 0:
            return False
        colon = host.find(b":")
        if colon < 0:
            return _valid_reg_name(host)
        if not _valid_reg_name(host[:colon]):
            return False
        rest = host[colon:]
    if not rest:
        return True
    return rest[:1] == b":" and len(rest) <= 6 and not rest[1:].translate(None, _DIGITS)


cdef bint _versionless_line(bytes data, bytes url):
    """Whether `data` ends with a request line `METHOD url` and no HTTP version."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if n == 0 or data[n - 1] != 10:
        return False
    cdef Py_ssize_t start = data.rfind(b"\n", 0, n - 1) + 1
    cdef bytes line = data[start:n - 1].rstrip(b"\r")
    return line.endswith(b" " + url) and b" HTTP/" not in line


cdef bint _v11_line(bytes data):
    """Whether `data` starts with a request line ending in ` HTTP/1.1`: llhttp accepts nothing
    but the version there, so the request is HTTP/1.1 or refused, and the parser need not be asked
    (its get_http_version formats a str per request)."""
    cdef const char* p = PyBytes_AS_STRING(data)
    cdef const char* nl = <const char*>memchr(p, 10, PyBytes_GET_SIZE(data))
    return nl != NULL and nl - p >= 10 and memcmp(nl - 10, b" HTTP/1.1\r", 10) == 0


cdef bint _asks_websocket(Request req):
    """`Upgrade: websocket` (one of the listed protocols) with `upgrade` among the Connection
    tokens (RFC 6455 §4.1). Any other upgrade (h2c, ...) is never forwarded."""
    if req.conn_drop is None or b"upgrade" not in req.conn_drop:
        return False
    for token in req.upgrade.split(b","):
        if token.strip().lower() == b"websocket":
            return True
    return False


class Reject(Exception):
    """Raised inside parser callbacks to refuse a request; carries the status to answer."""

    def __init__(self, status, message=None):
        self.status = status
        self.message = message


class Halt(Exception):
    """Raised inside parser callbacks once the connection is closing after a local answer: it
    stops llhttp, so no byte after that answer is parsed as a request (or forwarded)."""


@cython.final
cdef class RequestIds:
    """X-Request-ID values unique per host without a syscall or uuid per request: a random
    per-worker prefix and a hex counter."""

    def __init__(self, bytes prefix):
        self.prefix = prefix
        self.counter = 0

    cpdef bytes next(self):
        cdef OutBuf* b = &self.buf
        self.counter += 1
        b.len = 0
        buf_addb(b, self.prefix)
        buf_add_int(b, self.counter, 16)
        return buf_take(b)

    def __dealloc__(self):
        buf_free(&self.buf)


# ---- the client side -------------------------------------------------------------------------

@cython.final
cdef class ListenerContext:
    """See exchange.pxd: built by the worker for each of its listeners; `ClientProtocol(ctx)`
    (a functools.partial of it is the listener's protocol factory) starts each connection."""

    def __init__(self, rt, listener):
        self.rt = rt
        self.replies = rt.replies
        self.trie = rt.trie
        self.alog = rt.access.core
        self.metrics = rt.metrics.recorder
        self.ids = rt.ids
        self.connections = rt.connections
        self.trusted = IpSet(rt.config.trusted_proxies)
        self.max_head = rt.max_head
        self.max_headers = rt.max_headers
        self.max_url = rt.max_url
        self.max_body = rt.max_body
        self.fwd_lines = listener.forwarded_lines
        self.scheme = listener.scheme
        self.underscores = listener.underscores_in_headers


cdef class ClientCore:
    """One downstream connection; see exchange.pxd for the call order."""

    def __init__(self, ListenerContext ctx not None):
        self.ctx = ctx
        self.rt = ctx.rt
        self.parser = _RequestParser(self)
        self.replies = ctx.replies
        self.trie = ctx.trie
        self.alog = ctx.alog
        self.metrics = ctx.metrics
        self.ids = ctx.ids
        self.max_head = ctx.max_head
        self.max_headers = ctx.max_headers
        self.max_url = ctx.max_url
        self.max_body = ctx.max_body
        self.fwd_lines = ctx.fwd_lines
        self.underscores = ctx.underscores
        self.peer = b""
        self.last_active = _now()

    def __dealloc__(self):
        buf_free(&self.out)
        buf_free(&self.head)

    # asyncio callbacks

    def connection_made(self, transport):
        cdef ListenerContext ctx = self.ctx
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (<str>peer[0]).encode() if peer else b""
        self.trusted = ctx.trusted.contains(self.peer)
        ctx.connections.add(self)
        if self.rt.draining:
            self.closing = True

    def data_received(self, bytes data):
        if self.tunnel is not None:
            self.tunnel.client_data(data)
            return
        if self.handler is not None:
            self.handler.data_received(data)
            return
        if self.halted:
            if self.linger_end:
                self.last_active = _now()
                self.linger_left -= PyBytes_GET_SIZE(data)
                if self.linger_left < 0:
                    self.linger_end = 0
                    self.transport.close()
            return
        self.last_active = _now()
        cdef Request req = self.req
        if req is None:
            # Between requests, so `data` starts the next one.
            self.v11 = _v11_line(data)
        elif req.rx == RX_HEAD:
            req.raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except _ParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Halt):
                return
            if isinstance(cause, Reject):
                self.reject(cause.status, cause.message)
            else:
                self.rt.internal_error(cause)
                self.reject(500)
            return
        except _ParserUpgrade as exc:
            rest = data[exc.args[0]:]
            req = self.active
            if req is not None and req.ws and req.phase != PH_LOGGED:
                # A WebSocket upgrade was forwarded: what the client sent after it waits for the
                # upstream's answer (frames after a 101, the next request otherwise).
                self.early = rest if self.early is None else self.early + rest
                self.pause(P_UPGRADE)
                return
            # A request asked to upgrade where the route does not (or for another protocol, as
            # h2c): it was served as plain HTTP, and parsing carries on with a fresh parser.
            self.parser = _RequestParser(self)
            if rest:
                self.data_received(rest)
            return
        except _ParserError as exc:
            req = self.req
            if req is not None and req.te is not None:
                status, message = check_te(req.te)
                if status:
                    self.reject(status, message)
                    return
            self.reject(400, f"malformed request: {exc}")
            return
        req = self.req
        if req is not None and req.rx == RX_HEAD:
            if req.raw_head > self.max_head:
                self.reject(431)
            elif req.nheaders == 0 and req.url and _versionless_line(data, req.url):
                # A request line without a version (HTTP/0.9): llhttp waits for more, but the
                # client waits for an answer, which is given now rather than at the header timeout.
                self.reject(400, "request line without an HTTP version")

    def eof_received(self):
        """The client shut down its sending side. A request received in full (and those
        pipelined behind it) is still answered, then the connection closes; anything cut short
        ends here (returning False lets the transport close)."""
        if self.tunnel is not None or self.handler is not None:
            return False
        cdef Request req = self.req
        if (req is not None and req.rx != RX_DONE) or self.halted:
            return False
        if self.active is None and not self.queue:
            return False
        self.closing = True
        return True

    def connection_lost(self, exc):
        self.closing = True
        # The parser holds bound methods of this object: dropping it breaks the cycle, so the
        # connection is freed by its last reference rather than by the cycle collector.
        self.parser = None
        self.ctx.connections.discard(self)
        if self.tunnel is not None:
            self.tunnel.close("client closed")
            return
        if self.handler is not None:
            handler = self.handler
            self.handler = None
            handler.connection_lost(exc)
            return
        cdef UpstreamCore up = self.up
        cdef Request active = self.active
        if up is not None:
            self.up = None
            up.abort()
        if active is not None and active.phase != PH_LOGGED:
            if active.resp == RESP_NONE:
                active.status = 499
            if active.in_flight:
                active.in_flight = False
                (<TargetPool>active.pool).on_cancel()
            self.log(active)
        self.active = None
        self.queue = None

    def pause_writing(self):
        if self.handler is not None:
            if hasattr(self.handler, "pause_writing"):
                self.handler.pause_writing()
            return
        cdef UpstreamCore up = self.up
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self):
        if self.handler is not None:
            if hasattr(self.handler, "resume_writing"):
                self.handler.resume_writing()
            return
        cdef UpstreamCore up = self.up
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    # httptools callbacks

    def on_message_begin(self):
        if self.halted:
            raise Halt()
        cdef Request req = Request.__new__(Request)
        req.t0 = _now()
        req.start = req.t0
        req.peer = self.peer
        req.trusted_peer = self.trusted
        self.req = req

    def on_url(self, bytes url):
        cdef Request req = self.req
        req.url = req.url + url if req.url else url
        if PyBytes_GET_SIZE(req.url) > self.max_url:
            raise Reject(414)

    def on_header(self, bytes name, bytes value):
        cdef Request req = self.req
        req.nheaders += 1
        req.head_size += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
        if req.nheaders > self.max_headers or req.head_size > self.max_head:
            raise Reject(431)
        cdef int hid = header_id(name)
        if hid == H_OTHER:
            if memchr(PyBytes_AS_STRING(name), b"_", PyBytes_GET_SIZE(name)) != NULL \
                    and (not self.underscores or header_id(name.replace(b"_", b"-")) != H_OTHER):
                # CGI, WSGI and PHP read `_` as `-`: such a name could pose as a framing or
                # gateway-owned header. Dropped (nginx: underscores_in_headers off), and even
                # when a listener allows them, never one that folds into a name we own.
                return
            req.hpairs.append(name)
            req.hpairs.append(value)
            return
        req.hpairs.append(name)
        req.hpairs.append(value)
        if hid == H_HOST:
            req.host = value
            req.host_count += 1
        elif hid == H_TRANSFER_ENCODING:
            if req.te is None:
                req.te = []
            req.te.append(value)
        elif hid == H_CONTENT_LENGTH:
            req.cl = int(value)
        elif hid == H_CONNECTION:
            req.conn_drop = connection_tokens(value, req.conn_drop)
        elif hid == H_EXPECT:
            req.expect = value
        elif hid == H_XFF:
            if req.xff is None:
                req.xff = []
            req.xff.append(value)
        elif hid == H_XRID:
            req.rid_in = value if req.rid_in is None else b"!"
        elif hid == H_USER_AGENT:
            req.ua = value
        elif hid == H_REFERER:
            req.referer = value
        elif hid == H_UPGRADE:
            req.upgrade = value

    def on_headers_complete(self):
        cdef Request req = self.req
        parser = self.parser
        if self.v11:
            self.v11 = False
            req.ver = 11
        else:
            version = parser.get_http_version()
            if version == "0.9":
                raise Reject(400, "request line without an HTTP version")
            req.ver = 11 if version == "1.1" else (10 if version == "1.0" else 0)
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        # No body follows: the request is complete now, so a local answer need not close.
        req.rx = RX_DONE if req.te is None and req.cl <= 0 else RX_BODY
        if self.active is None and self.deferred is None:
            self.start(req)
            if self.halted:
                raise Halt()
        else:
            if self.queue is None:
                self.queue = _deque()
            self.queue.append(req)
            self.pause(P_QUEUE)

    def on_body(self, bytes body):
        cdef Request req = self.req
        req.body_len += PyBytes_GET_SIZE(body)
        if req.body_len > self.max_body:
            raise Reject(413)
        if req.rx == RX_DISCARD:
            return
        cdef UpstreamCore up = self.up
        if up is not None and req is self.active and req.up == UP_SENDING:
            up.last_active = _now()
            req.body_streamed = True
            if req.chunked:
                buf_add_int(&self.head, PyBytes_GET_SIZE(body), 16)
                buf_add(&self.head, b"\r\n", 2)
                up.transport.writelines((buf_take(&self.head), body, _CRLF))
            else:
                up.transport.write(body)
            return
        if req.phase == PH_LOGGED:
            return
        if req.body is None:
            req.body = []
        req.body.append(body)
        if req.body_len > BODY_BUFFER:
            self.pause(P_BUFFER)

    def on_message_complete(self):
        cdef Request req = self.req
        req.rx = RX_DONE
        self.req = None
        cdef UpstreamCore up
        if req is self.active:
            up = self.up
            if up is not None and req.up == UP_SENDING:
                if req.chunked:
                    up.transport.write(_LAST_CHUNK)
                req.up = UP_SENT
            if req.phase == PH_LOGGED:
                self.after_response(req)

    # phases

    cdef start(self, Request req):
        self.active = req
        self.served += 1
        req.ex = self
        cdef bytes rid = req.rid_in
        if rid is None or not rid or PyBytes_GET_SIZE(rid) > 128 or rid.translate(None, _RID_CHARS):
            rid = self.ids.next()
        req.rid = rid
        if req.ver == 0:
            return self.refuse(req, 400, "unsupported HTTP version", True)
        if req.host_count > 1:
            return self.refuse(req, 400, "duplicate Host header", True)
        if req.host_count == 0 and req.ver == 11:
            return self.refuse(req, 400, "missing Host header", True)
        if req.host is not None and req.host != self.ctx.valid_host:
            if not valid_host(req.host):
                return self.refuse(req, 400, "invalid Host header", True)
            self.ctx.valid_host = req.host
        if req.te is not None:
            if req.ver == 10:
                # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
                return self.refuse(req, 400, "Transfer-Encoding in an HTTP/1.0 request", True)
            status, message = check_te(req.te)
            if status:
                return self.refuse(req, status, message, True)
            req.chunked = True
        if req.expect is not None and req.expect.lower() != b"100-continue":
            return self.refuse(req, 417, None, True)
        cdef bytes url = req.url
        if PyBytes_AS_STRING(url)[0] != b"/":
            if not self.absolute_form(req):
                return
            url = req.url
        cdef const char* u = PyBytes_AS_STRING(url)
        cdef const char* q = <const char*>memchr(u, b"?", PyBytes_GET_SIZE(url))
        cdef bytes raw_path
        if q != NULL:
            raw_path = url[:q - u]
            req.query = url[q - u:]
        else:
            raw_path = url
        if b"#" in req.query:
            return self.refuse(req, 400, "fragment in request target", True)
        cdef bytes path
        try:
            path = normalize_path(raw_path)
        except _PathError as exc:
            return self.refuse(req, 400, f"invalid path: {exc}", True)
        req.path = path
        cdef RouteMatch m = self.trie.match(req.host if req.host is not None else b"", req.method, path)
        if m.status != 200:
            if m.status == 405:
                return self.refuse(req, 405, None, False, b"allow: " + m.allow + b"\r\n")
            return self.refuse(req, 404)
        cdef object target = m.target
        cdef Plan plan
        if type(target) is RouteChoice:
            plan = (<RouteChoice>target).select(req)
            if plan is None:
                return self.refuse(req, 404)
        else:
            plan = <Plan>target
        req.plan = plan
        req.params = m
        if req.upgrade is not None and plan.websocket and req.method == b"GET" and req.ver == 11 \
                and _asks_websocket(req):
            req.ws = True
        if req.cl > self.max_body:
            return self.refuse(req, 413, None, True)
        req.phase = PH_FILTERS
        if plan.request_filters:
            self.run_filters(req)
        else:
            self.terminal(req)

    cdef run_filters(self, Request req):
        """The route's request filters from `req.filter_pos`, in phase order, until one answers
        or suspends; then the terminal phase."""
        cdef tuple filters = (<Plan>req.plan).request_filters
        cdef Py_ssize_t i = req.filter_pos, n = len(filters)
        cdef int result
        while i < n:
            req.filter_pos = i + 1
            try:
                result = (<Filter>filters[i]).on_request(req)
            except Exception as exc:
                self.rt.internal_error(exc)
                return self.refuse(req, 500)
            if result == RESPONDED:
                return self.send_reply(req, req.reply, False)
            if result == SUSPENDED:
                return
            i += 1
        self.terminal(req)

    cdef suspend_on(self, Request req, object awaitable):
        self.rt.spawn(self._await_filter(req, awaitable))

    async def _await_filter(self, Request req, awaitable):
        try:
            result = await awaitable
        except Exception as exc:
            if req is self.active and req.phase != PH_LOGGED:
                self.rt.internal_error(exc)
                self.refuse(req, 500)
            return
        self.filter_done(req, result)

    cdef filter_done(self, Request req, object result):
        """A suspended filter (or responder) is done: go on, or answer with its Reply. Ignored
        when the request is over meanwhile (the client went away, a timeout answered it)."""
        if req is not self.active or req.phase == PH_LOGGED or self.transport is None \
                or self.transport.is_closing():
            return
        if type(result) is Reply:
            self.send_reply(req, <Reply>result, False)
        elif result is None and req.phase == PH_FILTERS:
            self.run_filters(req)
        else:
            self.rt.internal_error(TypeError(f"a filter resumed with {type(result).__name__}"))
            self.refuse(req, 500)

    cdef terminal(self, Request req):
        cdef Plan plan = <Plan>req.plan
        cdef Filter responder = plan.responder
        cdef int result
        req.phase = PH_TERMINAL
        if responder is None:
            return self.proxy(req)
        try:
            result = responder.on_request(req)
        except Exception as exc:
            self.rt.internal_error(exc)
            return self.refuse(req, 500)
        if result == RESPONDED:
            self.send_reply(req, req.reply, False)
        elif result == CONTINUE:
            self.rt.internal_error(RuntimeError(f"responder {responder.name} gave no answer"))
            self.refuse(req, 500)

    cdef proxy(self, Request req):
        cdef Plan plan = <Plan>req.plan
        cdef Split split = plan.split
        cdef bytes path = req.path
        if split is not None:
            req.group = split.groups[split.pick(req)]
        else:
            req.group = plan.group
        if plan.rewrite is not None:
            path = plan.rewrite.apply(req, path)
        elif plan.strip_len >= 0:
            path = path[plan.strip_len:] or b"/"
        req.head = self.upstream_request_head(req, plan, path)
        cdef TargetGroup group = <TargetGroup>req.group
        group.budget.on_request()
        pool = group.balancer.pick(self, req, None)
        if pool is None:
            return self.refuse(req, failure_status(F_NO_TARGET), "no healthy upstream target")
        self.send_to(req, pool)

    cdef bytes upstream_request_head(self, Request req, Plan plan, bytes path):
        cdef OutBuf* b = &self.head
        cdef list pairs = req.hpairs
        cdef Py_ssize_t i, n = len(pairs)
        cdef bytes name, value
        cdef int hid
        cdef tuple drop = plan.request_drop
        cdef tuple up_drop = req.up_drop
        cdef set conn_drop = req.conn_drop
        cdef bytes host_header = plan.host_header
        b.len = 0
        buf_addb(b, req.method)
        buf_add(b, b" ", 1)
        buf_addb(b, path)
        buf_addb(b, req.query)
        buf_add(b, b" HTTP/1.1\r\n", 11)
        for i in range(0, n, 2):
            name = <bytes>pairs[i]
            hid = header_id(name)
            if hid != H_OTHER:
                if header_flags[hid] & HF_REQUEST_DROP:
                    continue
                if hid == H_HOST:
                    # Host is never dropped by a Connection token, only replaced by host_header.
                    if host_header is not None:
                        continue
                    buf_add_line(b, name, <bytes>pairs[i + 1])
                    continue
            if drop and name_in(name, drop):
                continue
            if up_drop is not None and name_in(name, up_drop):
                continue
            if conn_drop is not None and name.lower() in conn_drop:
                continue
            buf_add_line(b, name, <bytes>pairs[i + 1])
        if host_header is not None:
            buf_add(b, b"host: ", 6)
            buf_addb(b, host_header)
            buf_add(b, b"\r\n", 2)
        elif req.host is None:
            buf_addb(b, req.group.default_host_line)
        buf_add(b, b"x-forwarded-for: ", 17)
        if req.xff is not None and self.trusted:
            for value in req.xff:
                buf_addb(b, value)
                buf_add(b, b", ", 2)
        buf_addb(b, self.peer)
        buf_add(b, b"\r\n", 2)
        buf_addb(b, self.fwd_lines)
        if req.host is not None:
            buf_add(b, b"x-forwarded-host: ", 18)
            buf_addb(b, req.host)
            buf_add(b, b"\r\n", 2)
        buf_add(b, b"x-request-id: ", 14)
        buf_addb(b, req.rid)
        buf_add(b, b"\r\n", 2)
        buf_addb(b, plan.request_set)
        buf_addb(b, req.up_extra)
        if req.ws:
            buf_addb(b, _UPGRADE_LINES)
        if req.chunked:
            buf_add(b, b"transfer-encoding: chunked\r\n\r\n", 30)
        elif req.cl >= 0:
            buf_add(b, b"content-length: ", 16)
            buf_add_int(b, req.cl, 10)
            buf_add(b, b"\r\n\r\n", 4)
        else:
            buf_add(b, b"\r\n", 2)
        return buf_take(b)

    cdef send_to(self, Request req, object target):
        cdef TargetPool pool = <TargetPool>target
        req.pool = pool
        req.upstream = pool.label
        req.attempts += 1
        req.in_flight = True
        req.attempt_t0 = _now()
        pool.begin()
        conn = pool.take()
        if conn is not None:
            self.attach(req, <UpstreamCore>conn)
            return
        if req.rx != RX_DONE:
            self.pause(P_BUFFER)
        cdef int admitted = pool.admit(req)
        if admitted == ADMIT_OPEN:
            self.rt.spawn(self._connect(req, pool))
        elif admitted == ADMIT_FULL:
            self.queue_refused(req, "too many requests waiting for an upstream connection")

    cdef bint waiter_ready(self, Request req, UpstreamCore conn) except -1:
        """`req` waited in its pool's queue and its turn came: `conn` is a connection given back
        (False when the request can no longer take it: the pool offers it to the next one), or
        None: a connect slot, to open a connection of its own."""
        req.attempt_t0 = _now()
        if conn is None:
            self.rt.spawn(self._connect(req, req.pool))
            return True
        if self.transport is None or self.transport.is_closing():
            return False
        self.attach(req, conn)
        return True

    cdef queue_refused(self, Request req, str message):
        """No upstream connection for `req` (its pool's queue was full, or it waited there
        `queue.timeout`): 503. Not the target's failure, and not retried: the gateway is what is
        short of connections."""
        if req.in_flight:
            req.in_flight = False
            (<TargetPool>req.pool).on_cancel()
        self.refuse(req, failure_status(F_NO_CONNECTION), message, req.rx != RX_DONE)

    async def _connect(self, Request req, TargetPool pool):
        try:
            conn = await pool.connect()
        except TimeoutError:
            self.connect_failed(req, pool, F_CONNECT_TIMEOUT, "timed out connecting to the upstream")
            return
        except OSError as exc:
            self.connect_failed(req, pool, F_CONNECT_REFUSED, f"cannot connect to the upstream: {exc.strerror or exc}")
            return
        if req is not self.active or req.phase != PH_TERMINAL or self.transport is None \
                or self.transport.is_closing():
            pool.give(conn)
            return
        self.attach(req, <UpstreamCore>conn)

    cdef connect_failed(self, Request req, TargetPool pool, int failure, str message):
        self.attempt_failed(req, failure, message)
        pool.connect_failed(failure, message)

    cdef attempt_failed(self, Request req, int failure, str message):
        """An attempt failed before any response byte reached the client: another attempt if the
        policy allows one, else the failure's status."""
        cdef str kind = failure_kind(failure)
        if req.in_flight:
            req.in_flight = False
            (<TargetPool>req.pool).on_failure(kind)
        if req is not self.active or req.phase == PH_LOGGED:
            return
        other = self.retry_target(req, kind)
        if other is not None:
            req.up = UP_NONE
            self.send_to(req, other)
            return
        self.rt.upstream_error(req.upstream, kind, message, req.rid)
        self.refuse(req, failure_status(failure), message, req.rx != RX_DONE)

    cdef object retry_target(self, Request req, object outcome):
        """DESIGN §8: the target of the next attempt, or None. To a different target where one
        exists; once any part of the request was sent, only idempotent requests; a body already
        streamed cannot be replayed; never back to a target that just refused a connection."""
        cdef TargetGroup group = <TargetGroup>req.group
        retry = group.retry
        if retry is None or req.body_streamed:
            return None
        if not retry.allows(outcome, req.attempts, req.method in _IDEMPOTENT, req.up != UP_NONE):
            return None
        other = group.balancer.pick(self, req, req.pool)
        if other is None or (other is req.pool and outcome == "connect_error"):
            # Connecting again to the target that just refused or timed out only delays the
            # answer (by a whole connect timeout when the target is unreachable).
            return None
        return other

    cdef attach(self, Request req, UpstreamCore conn):
        self.up = conn
        conn.bind(self)
        transport = conn.transport
        cdef list body = req.body
        cdef list parts
        if req.expect is not None and req.rx != RX_DONE and body is None and req.ver == 11:
            self.transport.write(_CONTINUE)
            req.continued = True
        if body is None:
            transport.write(req.head)
        elif req.chunked:
            parts = [req.head]
            for chunk in body:
                parts.append(b"%x\r\n" % len(chunk))
                parts.append(chunk)
                parts.append(_CRLF)
            transport.writelines(parts)
        else:
            transport.writelines([req.head] + body)
        if req.rx == RX_DONE:
            if req.chunked:
                transport.write(_LAST_CHUNK)
            req.up = UP_SENT
        else:
            req.body = None
            req.body_streamed = body is not None
            req.up = UP_SENDING
        self.resume(P_BUFFER)

    # upstream events

    cdef upstream_head(self, UpstreamCore conn, int status, list hpairs):
        cdef Request req = self.active
        if req is None:
            return
        if status < 200:
            if status == 101:
                if req.ws and req.resp == RESP_NONE:
                    self.start_tunnel(req, conn, hpairs)
                else:
                    self.upstream_failed(conn, F_PROTOCOL, "upstream switched protocols unrequested")
                return
            # 1xx go to HTTP/1.1 clients (RFC 9110 §15.2), a 100 the client did not ask for
            # included; a 100 the gateway already sent itself is not sent twice.
            if req.ver == 11 and not (status == 100 and req.continued):
                buf_addb(&self.out, self.informational_head(req, status, hpairs))
            return
        req.upstream_time = _now() - req.attempt_t0
        cdef TargetGroup group = <TargetGroup>req.group
        if group.retry_statuses is not None and status in group.retry_statuses and req.rx == RX_DONE \
                and not req.body_streamed:
            other = self.retry_target(req, status)
            if other is not None:
                # The response is discarded unread, so its connection cannot be reused.
                self.up = None
                conn.broken = True
                conn.abort()
                req.in_flight = False
                (<TargetPool>req.pool).on_success(status, _now() - req.attempt_t0)
                req.up = UP_NONE
                self.send_to(req, other)
                return
        req.status = status
        req.resp = RESP_HEAD
        buf_addb(&self.out, self.response_head(req, status, hpairs))
        if req.method == b"HEAD":
            # llhttp cannot be told the response answers a HEAD, so it would wait for the body the
            # headers announce: the response ends here and the connection is not reused.
            conn.broken = True
            conn.done = True
        elif req.up_framing == FR_CLOSE:
            conn.until_close = True

    cdef start_tunnel(self, Request req, UpstreamCore conn, list hpairs):
        """The upstream accepted a WebSocket upgrade: its 101 goes to the client, and from here
        on both connections are one tunnel (what the client sent early goes first)."""
        cdef Plan plan = <Plan>req.plan
        self.flush()
        self.transport.write(self.upgrade_head(req, hpairs))
        req.status = 101
        req.resp = RESP_HEAD
        req.upstream_time = _now() - req.attempt_t0
        self.end_attempt(req, 101, None)
        cdef double idle = plan.ws_idle_timeout if plan.ws_idle_timeout > 0 else (<TargetPool>req.pool).read_timeout
        cdef Tunnel tunnel = Tunnel.open(self, conn, req, idle)
        self.parser = None
        cdef bytes early = self.early
        self.early = None
        self.resume(P_UPGRADE)
        if early:
            tunnel.client_data(early)

    cdef bytes upgrade_head(self, Request req, list hpairs):
        """The 101 as the client gets it: the upstream's headers (Sec-WebSocket-Accept and the
        negotiated protocol and extensions) without hop-by-hop and hidden ones, then the
        Connection and Upgrade pair the client asked for."""
        cdef OutBuf* b = &self.head
        cdef Py_ssize_t i
        cdef bytes name
        cdef int hid
        cdef tuple drop = (<Plan>req.plan).response_drop
        b.len = 0
        buf_addb(b, status_line(101))
        for i in range(0, len(hpairs), 2):
            name = <bytes>hpairs[i]
            hid = header_id(name)
            if hid != H_OTHER and header_flags[hid] & HF_RESPONSE_DROP:
                continue
            if drop and name_in(name, drop):
                continue
            buf_add_line(b, name, <bytes>hpairs[i + 1])
        buf_add(b, b"x-request-id: ", 14)
        buf_addb(b, req.rid)
        buf_add(b, b"\r\n", 2)
        buf_addb(b, _UPGRADE_LINES)
        buf_add(b, b"\r\n", 2)
        return buf_take(b)

    def close_tunnel(self):
        """The end of a drain's grace period: an open tunnel (or a connection a handler took
        over) closes with a 1001 close frame."""
        if self.tunnel is not None:
            self.tunnel.close_going_away()
        elif self.handler is not None and hasattr(self.handler, "close_going_away"):
            self.handler.close_going_away()

    cdef bytes informational_head(self, Request req, int status, list hpairs):
        cdef OutBuf* b = &self.head
        cdef Py_ssize_t i
        cdef bytes name
        cdef int hid
        b.len = 0
        buf_addb(b, status_line(status))
        for i in range(0, len(hpairs), 2):
            name = <bytes>hpairs[i]
            hid = header_id(name)
            if hid != H_OTHER and header_flags[hid] & HF_RESPONSE_DROP:
                continue
            buf_add_line(b, name, <bytes>hpairs[i + 1])
        buf_add(b, b"\r\n", 2)
        return buf_take(b)

    cdef bytes response_head(self, Request req, int status, list hpairs):
        """The client's response head from the upstream's: hop-by-hop, framing and hidden headers
        dropped, the route's and the filters' headers added, framing decided here."""
        cdef Plan plan = <Plan>req.plan
        cdef tuple drop = plan.response_drop
        cdef set conn_drop = None
        cdef bytes upstream_cl = None
        cdef bint chunked_up = False
        cdef Py_ssize_t i, n = len(hpairs)
        cdef bytes name
        cdef int hid
        for i in range(0, n, 2):
            hid = header_id(<bytes>hpairs[i])
            if hid == H_CONNECTION:
                conn_drop = connection_tokens(<bytes>hpairs[i + 1], conn_drop)
            elif hid == H_CONTENT_LENGTH:
                upstream_cl = <bytes>hpairs[i + 1]
            elif hid == H_TRANSFER_ENCODING:
                chunked_up = True
        if status == 204 or status == 304:
            req.up_framing = FR_NONE
        elif chunked_up:
            req.up_framing = FR_CHUNKED
        elif upstream_cl is not None:
            req.up_framing = FR_LENGTH
        else:
            req.up_framing = FR_CLOSE
        if plan.response_filters:
            return self.render_head(req, self.filtered_head(req, status, hpairs, False), upstream_cl, chunked_up)
        cdef OutBuf* b = &self.head
        b.len = 0
        buf_addb(b, status_line(status))
        for i in range(0, n, 2):
            name = <bytes>hpairs[i]
            hid = header_id(name)
            if hid != H_OTHER and header_flags[hid] & HF_RESPONSE_DROP:
                continue
            if drop and name_in(name, drop):
                continue
            if conn_drop is not None and name.lower() in conn_drop:
                continue
            buf_add_line(b, name, <bytes>hpairs[i + 1])
        buf_addb(b, plan.response_set)
        buf_addb(b, req.resp_extra)
        buf_add(b, b"x-request-id: ", 14)
        buf_addb(b, req.rid)
        buf_add(b, b"\r\n", 2)
        self.frame(req, b, status, upstream_cl, chunked_up, False)
        return buf_take(b)

    cdef ResponseHead filtered_head(self, Request req, int status, list hpairs, bint is_local):
        """The head as response filters see it (the same drops as the plain path, the route's
        set headers added), after every response filter ran on it."""
        cdef Plan plan = <Plan>req.plan
        cdef tuple drop = plan.response_drop
        cdef set conn_drop = None
        cdef ResponseHead head = ResponseHead.__new__(ResponseHead)
        cdef list out = []
        cdef Py_ssize_t i, n = len(hpairs)
        cdef bytes name
        cdef int hid
        cdef Filter f
        cdef bytes length = None
        cdef bint chunked = False
        if not is_local:
            for i in range(0, n, 2):
                hid = header_id(<bytes>hpairs[i])
                if hid == H_CONNECTION:
                    conn_drop = connection_tokens(<bytes>hpairs[i + 1], conn_drop)
                elif hid == H_CONTENT_LENGTH:
                    length = <bytes>hpairs[i + 1]
                elif hid == H_TRANSFER_ENCODING:
                    chunked = True
            if length is not None and not chunked and length.isdigit():
                head.length = int(length)       # what compression's min_size is checked against
        for i in range(0, n, 2):
            name = <bytes>hpairs[i]
            if not is_local:
                hid = header_id(name)
                if hid != H_OTHER and header_flags[hid] & HF_RESPONSE_DROP:
                    continue
                if drop and name_in(name, drop):
                    continue
                if conn_drop is not None and name.lower() in conn_drop:
                    continue
            out.append(name)
            out.append(hpairs[i + 1])
        if plan.response_set:
            for name, value in _parse_lines(plan.response_set):
                out.append(name)
                out.append(value)
        head.status = status
        head.headers = out
        head.is_local = is_local
        req.head_out = head
        for f in plan.response_filters:
            head.current = f
            f.on_response(req, head)
        head.current = None
        return head

    cdef bytes render_head(self, Request req, ResponseHead head, bytes upstream_cl, bint chunked_up):
        cdef OutBuf* b = &self.head
        cdef list h = head.headers
        cdef Py_ssize_t i
        cdef bytes name
        cdef int hid
        b.len = 0
        req.status = head.status
        buf_addb(b, status_line(head.status))
        for i in range(0, len(h), 2):
            name = <bytes>h[i]
            hid = header_id(name)
            if hid != H_OTHER and header_flags[hid] & HF_RESPONSE_DROP:
                continue        # framing and hop-by-hop stay the gateway's, whatever a filter set
            buf_add_line(b, name, <bytes>h[i + 1])
        buf_addb(b, req.resp_extra)
        buf_add(b, b"x-request-id: ", 14)
        buf_addb(b, req.rid)
        buf_add(b, b"\r\n", 2)
        self.frame(req, b, head.status, upstream_cl, chunked_up, head.transforms)
        return buf_take(b)

    cdef int frame(self, Request req, OutBuf* b, int status, bytes length, bint chunked_up,
                   bint transformed) except -1:
        """Ends a response head with its framing: Content-Length when the length is known and the
        body passes unchanged, else chunked for HTTP/1.1 clients, else close-delimited; then the
        connection line. Sets `req.framing` and `req.close_after`."""
        cdef bint nobody = status == 204 or status == 304 or req.method == b"HEAD"
        cdef bint close = self.closing or not req.keep_alive or (req.rx != RX_DONE and not self.discardable(req))
        if nobody:
            req.framing = FR_NONE
            if length is not None and status != 204 and not transformed:
                buf_add(b, b"content-length: ", 16)
                buf_addb(b, length)
                buf_add(b, b"\r\n", 2)
        elif length is not None and not chunked_up and not transformed:
            req.framing = FR_LENGTH
            buf_add(b, b"content-length: ", 16)
            buf_addb(b, length)
            buf_add(b, b"\r\n", 2)
        elif req.ver == 11:
            req.framing = FR_CHUNKED
            buf_add(b, b"transfer-encoding: chunked\r\n", 28)
        else:
            req.framing = FR_CLOSE
            close = True
        if close:
            buf_add(b, b"connection: close\r\n\r\n", 21)
        elif req.ver == 10:
            buf_add(b, b"connection: keep-alive\r\n\r\n", 26)
        else:
            buf_add(b, b"\r\n", 2)
        req.close_after = close
        return 0

    cdef upstream_body(self, bytes body):
        cdef Request req = self.active
        if req is None or req.framing == FR_NONE:
            return
        cdef ResponseHead head = req.head_out
        cdef Filter f
        if head is not None and head.body_filters is not None:
            try:
                for f in head.body_filters:
                    body = f.on_body(req, body)
                    if not body:
                        return
            except Exception as exc:
                self.rt.internal_error(exc)
                self.abort(req)
                return
        self.write_body(req, body)

    cdef write_body(self, Request req, bytes body):
        cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
        req.sent += n
        cdef OutBuf* out = &self.out
        if req.framing == FR_CHUNKED:
            buf_add_int(out, n, 16)
            buf_add(out, b"\r\n", 2)
        if n <= INLINE_BODY:
            buf_addb(out, body)
        else:
            self.flush()
            self.transport.write(body)
        if req.framing == FR_CHUNKED:
            buf_add(out, b"\r\n", 2)

    cdef bint upstream_message_complete(self, UpstreamCore conn):
        """True when the final response is complete (False after an informational one)."""
        cdef Request req = self.active
        if req is None:
            return True
        if req.resp == RESP_NONE:
            return False
        cdef ResponseHead head = req.head_out
        cdef list filters
        cdef Py_ssize_t i, j
        cdef bytes tail
        if head is not None and head.body_filters is not None and req.framing != FR_NONE:
            # Each filter's last bytes still pass through the filters after it.
            filters = head.body_filters
            try:
                for i in range(len(filters)):
                    tail = (<Filter>filters[i]).on_end(req)
                    for j in range(i + 1, len(filters)):
                        if not tail:
                            break
                        tail = (<Filter>filters[j]).on_body(req, tail)
                    if tail:
                        self.write_body(req, tail)
            except Exception as exc:
                self.rt.internal_error(exc)
                self.abort(req)
                return True
        if req.framing == FR_CHUNKED:
            buf_add(&self.out, b"0\r\n\r\n", 5)
        req.resp = RESP_DONE
        return True

    cdef flush(self):
        if self.out.len and self.transport is not None:
            self.transport.write(buf_take(&self.out))
        self.out.len = 0

    cdef upstream_complete(self, UpstreamCore conn):
        """Called once the read that completed the response is fully parsed."""
        self.flush()
        cdef Request req = self.active
        self.up = None
        if req is None or req.phase == PH_LOGGED:
            conn.release(False)
            return
        conn.release(req.up == UP_SENT)
        self.end_attempt(req, req.status, None)
        self.log(req)
        if req.rx == RX_DONE:
            self.after_response(req)
        elif req.close_after:
            # The upstream answered before the request body was all sent: the rest of it is not
            # forwarded (that connection was just closed, RFC 9112 §9.6), and the client's
            # connection ends with a lingering close so that the response reaches it.
            self.linger(req)
        else:
            # The same with a rest small enough to read and drop (see discardable): the client's
            # connection stays usable once it is read.
            req.rx = RX_DISCARD
            self.resume(P_UPSTREAM | P_BUFFER)

    cdef end_attempt(self, Request req, int status, str kind):
        if req.in_flight:
            req.in_flight = False
            if kind is None:
                (<TargetPool>req.pool).on_success(status, _now() - req.attempt_t0)
            else:
                (<TargetPool>req.pool).on_failure(kind)

    cdef upstream_lost(self, UpstreamCore conn):
        cdef Request req = self.active
        self.up = None
        conn.pool.forget(conn)
        conn.client = None
        if req is None:
            return
        if req.resp == RESP_NONE:
            if (conn.reused and not conn.got_bytes and req.attempts < 3 and req.method in _IDEMPOTENT
                    and req.body_len == 0 and not req.chunked):
                # A pooled connection the upstream closed as we reused it (RFC 9112 §9.3.1): the
                # request is idempotent and had no body, so it goes again on another connection.
                # Not the target's fault, so neither a failure nor a retry from the budget.
                if req.in_flight:
                    req.in_flight = False
                    (<TargetPool>req.pool).on_cancel()
                req.attempts -= 1
                req.up = UP_NONE
                self.send_to(req, req.pool)
                return
            self.attempt_failed(req, F_RESET, "upstream closed the connection")
            return
        self.end_attempt(req, 0, "reset")
        self.rt.upstream_error(req.upstream, "reset", "upstream closed the connection mid-response", req.rid)
        self.abort(req)

    cdef upstream_failed(self, UpstreamCore conn, int failure, str message):
        cdef Request req = self.active
        self.up = None
        conn.broken = True
        conn.abort()
        if req is None:
            return
        cdef str kind = failure_kind(failure)
        if req.resp == RESP_NONE:
            if failure == F_READ_TIMEOUT:
                self.attempt_failed(req, failure, message)
            else:
                self.end_attempt(req, 0, kind)
                self.rt.upstream_error(req.upstream, kind, message, req.rid)
                self.refuse(req, failure_status(failure), message, True)
        else:
            self.end_attempt(req, 0, kind)
            self.rt.upstream_error(req.upstream, kind, message, req.rid)
            self.abort(req)

    # completion

    cdef after_response(self, Request req):
        """The exchange is over in both directions: next request, or close."""
        cdef bytes early
        self.active = None
        if req.ws:
            # An upgrade the upstream refused: the connection goes on as HTTP, from where the
            # parser stopped at the upgrade request.
            self.parser = _RequestParser(self)
            early = self.early
            self.early = None
            self.resume(P_UPGRADE)
            if early and not (req.close_after or self.closing):
                self.data_received(early)
                return
        if req.close_after or self.closing or self.transport.is_closing():
            self.close(False)
            return
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self.resume(P_QUEUE)
            self.start(<Request>nxt)
        elif self.deferred is not None:
            deferred = self.deferred
            self.deferred = None
            self.reject(deferred.status, deferred.message)

    cdef refuse(self, Request req, int status, str message=None, bint close=False, bytes extra=b""):
        """A gateway error for `req` (DESIGN §5): the JSON error contract, or the configured
        body for that status."""
        self.send_reply(req, Reply.make_error(status, message, extra), close)

    cdef send_reply(self, Request req, Reply reply, bint force_close):
        """Answers `req` locally. An unread body is read and dropped when the rest is small and
        announced by Content-Length (the connection stays usable), else the connection closes, so
        the next request can never start mid-body. `100 Continue` is never sent for it."""
        if reply.handler is not None:
            return self.take_over(req, reply)
        cdef bint close = force_close or self.closing or not req.keep_alive
        cdef bint unread = req.rx == RX_BODY
        cdef UpstreamCore up = self.up
        if up is not None:
            self.up = None
            up.abort()
        if unread:
            if not close and req.up == UP_NONE and self.discardable(req):
                req.rx = RX_DISCARD
                req.body = None
                self.resume(P_UPSTREAM | P_BUFFER)
                unread = False
            else:
                close = True
        self.flush()
        cdef int status = reply.status
        cdef bytes body, ctype = None
        cdef tuple headers = reply.headers
        if reply.is_error:
            ctype, body = self.replies.render(status, req.rid, reply.message)
        else:
            body = reply.body
        cdef Plan plan = <Plan>req.plan
        cdef ResponseHead head = None
        cdef list pairs
        if plan is not None and plan.response_filters:
            pairs = []
            if ctype is not None:
                pairs.append(b"content-type")
                pairs.append(ctype)
            for name, value in headers:
                pairs.append(name)
                pairs.append(value)
            try:
                head = self.filtered_head(req, status, pairs, True)
            except Exception as exc:
                self.rt.internal_error(exc)
                head = None
            if head is not None and head.body is not None:
                body = head.body        # a filter answered with other content (the cache, on error)
        cdef bint nobody = status == 204 or status == 304
        cdef bint head_only = req.method == b"HEAD"
        cdef OutBuf* b = &self.head
        cdef Py_ssize_t i
        b.len = 0
        if head is not None:
            status = head.status
            buf_addb(b, status_line(status))
            for i in range(0, len(head.headers), 2):
                name = <bytes>head.headers[i]
                hid = header_id(name)
                if hid != H_OTHER and header_flags[hid] & HF_RESPONSE_DROP:
                    continue
                buf_add_line(b, name, <bytes>head.headers[i + 1])
        else:
            buf_addb(b, status_line(status))
            if ctype is not None:
                buf_add(b, b"content-type: ", 14)
                buf_addb(b, ctype)
                buf_add(b, b"\r\n", 2)
            for name, value in headers:
                buf_add_line(b, name, value)
        if not nobody:
            buf_add(b, b"content-length: ", 16)
            buf_add_int(b, PyBytes_GET_SIZE(body), 10)
            buf_add(b, b"\r\n", 2)
        buf_add(b, b"x-request-id: ", 14)
        buf_addb(b, req.rid)
        buf_add(b, b"\r\n", 2)
        buf_addb(b, self.rt.date_line)
        buf_addb(b, req.resp_extra)
        if close:
            buf_add(b, b"connection: close\r\n\r\n", 21)
        elif req.ver == 10:
            buf_add(b, b"connection: keep-alive\r\n\r\n", 26)
        else:
            buf_add(b, b"\r\n", 2)
        req.status = status
        req.resp = RESP_DONE
        req.close_after = close
        if nobody or head_only:
            self.transport.write(buf_take(b))
        elif PyBytes_GET_SIZE(body) > REPLY_INLINE_BODY:
            # as is, after the head (one writev): a cache hit's body is copied once, out of the cache
            self.transport.writelines((buf_take(b), body))
            req.sent = PyBytes_GET_SIZE(body)
        else:
            buf_addb(b, body)
            self.transport.write(buf_take(b))
            req.sent = PyBytes_GET_SIZE(body)
        self.log(req)
        if unread:
            self.linger(req)
        elif close:
            self.active = None
            self.close(False)
        elif req.rx == RX_DONE:
            self.after_response(req)

    cdef take_over(self, Request req, Reply reply):
        """A local 101: the head goes out, and the connection is the handler's from here on."""
        cdef OutBuf* b = &self.head
        handler = reply.handler
        self.flush()
        b.len = 0
        buf_addb(b, status_line(101))
        for name, value in reply.headers:
            buf_add_line(b, name, value)
        buf_add(b, b"x-request-id: ", 14)
        buf_addb(b, req.rid)
        buf_add(b, b"\r\n\r\n", 4)
        self.transport.write(buf_take(b))
        req.status = 101
        req.resp = RESP_DONE
        self.handler = handler
        self.parser = None
        self.log(req)
        self.active = None
        cdef bytes early = self.early
        self.early = None
        self.resume(P_UPGRADE)
        handler.connection_made(self.transport, req)
        if early:
            handler.data_received(early)

    def reject(self, int status, message=None):
        """Refuses what the parser is reading and closes: once framing is in doubt, nothing more
        on this connection can be trusted."""
        cdef Request active = self.active
        cdef UpstreamCore up
        if active is not None and self.req is active:
            if active.phase == PH_LOGGED:
                # Already answered; the body being dropped turned out malformed.
                self.active = None
                self.close(False)
                return
            # The body of the request being proxied is bad (framing, size): the upstream must
            # never see it complete, so its connection is dropped before answering.
            up = self.up
            if up is not None:
                self.up = None
                up.abort()
            if active.in_flight:
                active.in_flight = False
                (<TargetPool>active.pool).on_cancel()
            if active.resp != RESP_NONE:
                self.abort(active)
            else:
                self.refuse(active, status, message, True)
            return
        if active is not None and active.phase != PH_LOGGED:
            if self.deferred is None:
                self.deferred = Reject(status, message)
            self.pause(P_QUEUE)
            return
        cdef Request req = self.req
        if req is None:
            req = Request.__new__(Request)
            req.t0 = _now()
            req.peer = self.peer
        self.req = None
        if not req.rid:
            req.rid = self.ids.next()
        if not req.method:
            req.method = b"-"
        self.active = req
        req.ex = self
        self.refuse(req, status, message, True)

    cdef abort(self, Request req):
        """The response was already under way: the only honest signal left is a reset."""
        self.out.len = 0
        if req.status == 0:
            req.status = 502
        self.log(req)
        self.active = None
        self.close(True)

    cdef expire(self, Request req, str message):
        """The request's total timeout passed before a response started: no further attempt."""
        cdef UpstreamCore up = self.up
        if up is not None:
            self.up = None
            up.broken = True
            up.abort()
        self.end_attempt(req, 0, "timeout")
        self.rt.upstream_error(req.upstream, "timeout", message, req.rid)
        self.refuse(req, failure_status(F_TOTAL_TIMEOUT), message, True)

    cdef bint absolute_form(self, Request req):
        cdef bytes url = req.url
        cdef bytes lower = url[:8].lower()
        cdef bytes rest
        if lower.startswith(b"http://"):
            rest = url[7:]
        elif lower.startswith(b"https://"):
            rest = url[8:]
        else:
            self.refuse(req, 400, "invalid request target", True)
            return False
        cdef Py_ssize_t slash = rest.find(b"/")
        cdef bytes authority = rest if slash < 0 else rest[:slash]
        if req.host is None or authority.lower() != req.host.lower():
            self.refuse(req, 400, "absolute-form target disagrees with Host", True)
            return False
        req.url = rest[slash:] if slash >= 0 else b"/"
        return True

    cdef pause(self, int reason):
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    cdef resume(self, int reason):
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    cdef log(self, Request req):
        """The one record of a request (DESIGN §3 step 6), whatever happened to it."""
        if req.phase == PH_LOGGED:
            return
        req.phase = PH_LOGGED
        if req.queued_at:
            (<TargetPool>req.pool).unqueue(req)
        self.metrics.record(req)
        self.alog.record(self.peer, req)
        req.ex = None

    cdef close(self, bint abort):
        """Closes (or resets) the client connection; from here on nothing more it sent is parsed,
        even what is left of the read being parsed now (`Halt`)."""
        self.halted = True
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    cdef bint discardable(self, Request req):
        """Whether the unread rest of `req`'s body is small enough to read and drop after its
        response, keeping the connection: announced by Content-Length, at most
        REFUSED_BODY_DRAIN, and not held back by a client waiting for `100 Continue`."""
        return not req.chunked and req.expect is None and req.cl - req.body_len <= REFUSED_BODY_DRAIN

    cdef linger(self, Request req):
        """nginx's lingering close, for a connection answered while the client is still sending
        `req`'s body: closing a socket with unread bytes makes the kernel reset it, and the reset
        can destroy the response before the client reads it (or fail the client's send before it
        looks for one). So the response is flushed and the sending side shut down, then what the
        client sends is read and dropped until it closes, it is silent for `lingering_timeout`,
        `lingering_time` passes, or more than the rest of the body (its Content-Length, else
        `max_body`) plus REFUSED_BODY_DRAIN came; then the connection closes. Nothing of it is
        parsed (`halted`)."""
        transport = self.transport
        self.halted = True
        self.active = None
        if transport.is_closing():
            return
        cdef double now = _now()
        self.last_active = now
        self.linger_end = now + self.rt.lingering_time
        self.linger_left = (self.max_body if req.chunked or req.cl < 0 else req.cl - req.body_len) \
            + REFUSED_BODY_DRAIN
        if transport.can_write_eof():
            transport.write_eof()
        if self.paused:
            self.paused = 0
            transport.resume_reading()

    cdef bytes resolve_client(self, Request req):
        """The nearest X-Forwarded-For address that is not a trusted proxy (right to left); the
        leftmost when every one is trusted."""
        cdef list addrs = []
        cdef bytes value, part
        for value in req.xff:
            for part in value.split(b","):
                part = part.strip()
                if part:
                    addrs.append(part)
        if not addrs:
            return req.peer
        cdef IpSet trusted = self.ctx.trusted
        for part in reversed(addrs):
            if not trusted.contains(part):
                return part
        return addrs[0]

    # timeouts and draining (called by the worker's sweeper)

    def sweep(self, double now):
        if self.tunnel is not None:
            self.tunnel.check_idle(now)
            return
        if self.handler is not None:
            if hasattr(self.handler, "sweep"):
                self.handler.sweep(now)
            return
        rt = self.rt
        if self.linger_end:
            if now > self.linger_end or now - self.last_active > rt.lingering_timeout:
                self.linger_end = 0
                self.transport.close()
            return
        cdef Request active = self.active
        cdef Request req = self.req
        cdef UpstreamCore up
        if active is not None and active.phase != PH_LOGGED:
            if active.rx == RX_BODY and now - self.last_active > rt.body_timeout and not self.paused:
                if active.resp == RESP_NONE:
                    self.refuse(active, 408, None, True)
                    # A client silent for body_timeout is not waited for: no lingering close.
                    self.close(False)
                else:
                    self.abort(active)
                return
            if active.resp == RESP_NONE and active.phase == PH_TERMINAL and active.group is not None:
                retry = active.group.retry
                total = retry.total_timeout
                if total is not None and now - active.t0 > total:
                    self.expire(active, "the request's total upstream timeout passed")
                    return
                per_try = retry.per_try_timeout
                up = self.up
                if per_try is not None and up is not None and active.in_flight \
                        and now - active.attempt_t0 > per_try:
                    self.upstream_failed(up, F_READ_TIMEOUT, "upstream attempt timed out")
            return
        if active is not None and active.rx == RX_DISCARD:
            if now - self.last_active > rt.body_timeout:
                self.close(False)
            return
        if req is not None and req.rx == RX_HEAD:
            if now - req.start > rt.header_timeout:
                self.reject(408)
            return
        # A connection that has not sent its first request gets DRAIN_FIRST_REQUEST from when it
        # could first send one: the drain's start, or a TLS handshake that finished after it
        # (last_active, set when the handshake completes).
        if now - self.last_active > rt.idle_timeout or (
            rt.draining and (self.served or now - max(rt.drain_started, self.last_active) > DRAIN_FIRST_REQUEST)
        ):
            self.close(False)

    def drain(self):
        """Stop after the current exchange. An idle keep-alive connection closes now; one that
        was accepted but has not sent its first request yet (it may have been queued before the
        worker stopped accepting) gets DRAIN_FIRST_REQUEST seconds to send it."""
        self.closing = True
        if self.tunnel is None and self.handler is None and self.active is None and self.req is None \
                and self.served:
            self.close(False)
