# The HTTP/1.1 proxy exchange in Cython (see proto.pxd for the call order).
#
# Why compiled: callgrind showed the pure-Python protocol spending ~40% of its user-space
# instructions in the bytecode loop and its frames (bench/RESULTS.md). Here per-request state is C
# fields, header names are classified by length + case-folded compare without creating lower-case
# copies, and both heads are rendered into per-connection C buffers that become one bytes object.
# The logic is the same as the tested Python version it replaced, line for line where possible.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memchr, memcpy

from collections import deque as _deque
from http import HTTPStatus as _HTTPStatus

from httptools import (
    HttpParserCallbackError as _ParserCallbackError,
    HttpParserError as _ParserError,
    HttpParserUpgrade as _ParserUpgrade,
    HttpRequestParser as _RequestParser,
    HttpResponseParser as _ResponseParser,
)

# ---- small C helpers -------------------------------------------------------------------------

cdef inline double _now() noexcept nogil:
    return <double>fg_now_ns() * 1e-9


cpdef double monotonic():
    """The clock the protocol's timeouts use (CLOCK_MONOTONIC, seconds), for the sweeper."""
    return _now()


cdef int _buf_grow(OutBuf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap * 2 if b.cap else 1024
    while cap < need:
        cap *= 2
    cdef char* data = <char*>PyMem_Realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    return 0


cdef inline int _add(OutBuf* b, const char* s, Py_ssize_t n) except -1:
    if b.len + n > b.cap:
        _buf_grow(b, b.len + n)
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline int _addb(OutBuf* b, bytes s) except -1:
    return _add(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))


cdef inline int _add_int(OutBuf* b, Py_ssize_t v, int base) except -1:
    cdef char tmp[24]
    cdef int i = 24
    cdef const char* digits = b"0123456789abcdef"
    if v == 0:
        return _add(b, b"0", 1)
    while v > 0:
        i -= 1
        tmp[i] = digits[v % base]
        v //= base
    return _add(b, tmp + i, 24 - i)


cdef inline bytes _take(OutBuf* b):
    cdef bytes out = PyBytes_FromStringAndSize(b.data, b.len)
    b.len = 0
    return out


cdef inline void _buf_free(OutBuf* b) noexcept:
    if b.data != NULL:
        PyMem_Free(b.data)
        b.data = NULL
    b.len = 0
    b.cap = 0


# Header names the exchange must recognise, by id; everything else is H_OTHER and passes through.
cdef enum:
    H_OTHER = 0
    H_HOST
    H_TRANSFER_ENCODING
    H_CONTENT_LENGTH
    H_CONNECTION
    H_EXPECT
    H_XFF
    H_XRID
    H_USER_AGENT
    H_REFERER
    H_KEEP_ALIVE
    H_PROXY_CONNECTION
    H_TE
    H_TRAILER
    H_UPGRADE
    H_PROXY_AUTHORIZATION
    H_PROXY_AUTHENTICATE
    H_XF_PROTO
    H_XF_HOST
    H_XF_PORT
    H_X_REAL_IP
    H_FORWARDED
    H_X_ORIGINAL_URL
    H_X_REWRITE_URL


cdef inline bint _ieq(const char* p, const char* lit, Py_ssize_t n) noexcept nogil:
    # `lit` is lower-case letters, digits and '-': OR-ing 0x20 folds ASCII letters and leaves
    # '-' and digits alone; any other byte cannot make a match it should not.
    cdef Py_ssize_t i
    for i in range(n):
        if (p[i] | 0x20) != lit[i]:
            return False
    return True


cdef int _header_id(bytes name) noexcept:
    cdef const char* p = PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    if n == 2:
        if _ieq(p, b"te", 2): return H_TE
    elif n == 4:
        if _ieq(p, b"host", 4): return H_HOST
    elif n == 6:
        if _ieq(p, b"expect", 6): return H_EXPECT
    elif n == 7:
        if _ieq(p, b"referer", 7): return H_REFERER
        if _ieq(p, b"trailer", 7): return H_TRAILER
        if _ieq(p, b"upgrade", 7): return H_UPGRADE
    elif n == 9:
        if _ieq(p, b"forwarded", 9): return H_FORWARDED
        if _ieq(p, b"x-real-ip", 9): return H_X_REAL_IP
    elif n == 10:
        if _ieq(p, b"user-agent", 10): return H_USER_AGENT
        if _ieq(p, b"connection", 10): return H_CONNECTION
        if _ieq(p, b"keep-alive", 10): return H_KEEP_ALIVE
    elif n == 12:
        if _ieq(p, b"x-request-id", 12): return H_XRID
    elif n == 13:
        if _ieq(p, b"x-rewrite-url", 13): return H_X_REWRITE_URL
    elif n == 14:
        if _ieq(p, b"content-length", 14): return H_CONTENT_LENGTH
        if _ieq(p, b"x-original-url", 14): return H_X_ORIGINAL_URL
    elif n == 15:
        if _ieq(p, b"x-forwarded-for", 15): return H_XFF
    elif n == 16:
        if _ieq(p, b"x-forwarded-host", 16): return H_XF_HOST
        if _ieq(p, b"x-forwarded-port", 16): return H_XF_PORT
        if _ieq(p, b"proxy-connection", 16): return H_PROXY_CONNECTION
    elif n == 17:
        if _ieq(p, b"transfer-encoding", 17): return H_TRANSFER_ENCODING
        if _ieq(p, b"x-forwarded-proto", 17): return H_XF_PROTO
    elif n == 18:
        if _ieq(p, b"proxy-authenticate", 18): return H_PROXY_AUTHENTICATE
    elif n == 19:
        if _ieq(p, b"proxy-authorization", 19): return H_PROXY_AUTHORIZATION
    return H_OTHER


cdef inline bint _request_drops(int hid) noexcept:
    """Never forwarded as the client sent them: hop-by-hop (RFC 9110 §7.6.1), framing (the
    gateway re-frames), and the headers the gateway owns (DESIGN §8). Host is handled apart."""
    return hid != H_OTHER and hid != H_HOST and hid != H_USER_AGENT and hid != H_REFERER \
        and hid != H_PROXY_AUTHENTICATE


cdef inline bint _response_drops(int hid) noexcept:
    return hid == H_CONNECTION or hid == H_KEEP_ALIVE or hid == H_PROXY_CONNECTION or hid == H_TE \
        or hid == H_TRAILER or hid == H_TRANSFER_ENCODING or hid == H_UPGRADE \
        or hid == H_CONTENT_LENGTH or hid == H_PROXY_AUTHENTICATE or hid == H_XRID


cdef set _tokens(bytes value, set into):
    """Header names a Connection header lists (RFC 9110 §7.6.1), other than close/keep-alive."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef const char* p = PyBytes_AS_STRING(value)
    if (n == 10 and _ieq(p, b"keep-alive", 10)) or (n == 5 and _ieq(p, b"close", 5)):
        return into
    cdef bytes token
    for token in value.split(b","):
        token = token.strip().lower()
        if token and token != b"close" and token != b"keep-alive":
            if into is None:
                into = set()
            into.add(token)
    return into


cdef tuple _check_te(list values):
    """DESIGN §8: `chunked` must be last and only once (else 400); any other coding is 501."""
    cdef list codings = []
    cdef bytes value, part, coding
    for value in values:
        for part in value.split(b","):
            part = part.strip()
            if part:
                # RFC 9110 §5.6.1: empty list elements are ignored (llhttp frames `,chunked` as
                # chunked too, so both sides agree on where the body ends).
                codings.append(part.lower())
    if codings.count(b"chunked") > 1 or (b"chunked" in codings and codings[len(codings) - 1] != b"chunked"):
        return 400, "chunked must be the last transfer coding, once"
    for coding in codings:
        if coding != b"chunked":
            return 501, "unsupported transfer coding"
    return 0, ""


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

cdef enum:
    # Reasons to stop reading from the client (a bit each; reading resumes when none is left).
    P_QUEUE = 1
    P_UPSTREAM = 2
    P_BUFFER = 4
    BODY_BUFFER = 256 * 1024
    INLINE_BODY = 16 * 1024      # response body pieces up to this size are copied into the out buffer

DRAIN_FIRST_REQUEST = 1.0
"""Seconds a connection accepted just before a drain gets to send its first request."""


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


class Reject(Exception):
    """Raised inside parser callbacks to refuse a request; carries the status to answer."""

    def __init__(self, status, message=None):
        self.status = status
        self.message = message


class Halt(Exception):
    """Raised inside parser callbacks once the connection is closing after a local answer: it
    stops llhttp, so no byte after that answer is parsed as a request (or forwarded)."""


# ---- the compiled route plan ------------------------------------------------------------------

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
        _addb(b, self.prefix)
        _add_int(b, self.counter, 16)
        return _take(b)

    def __dealloc__(self):
        _buf_free(&self.buf)


cdef class Plan:
    """What a request needs about its route, in wire form, built once per worker generation."""

    def __init__(self, int index, str upstream, Py_ssize_t strip_len, object request_drop_extra,
                 bytes request_set, object response_drop_extra, bytes response_set, bytes host_header):
        self.index = index
        self.upstream = upstream
        self.strip_len = strip_len
        self.request_drop_extra = request_drop_extra or None
        self.request_set = request_set
        self.response_drop_extra = response_drop_extra or None
        self.response_set = response_set
        self.host_header = host_header
        self.default_host_line = b""
        self.group = None
        self.filters = ()


# ---- per-request state ------------------------------------------------------------------------

@cython.final
@cython.freelist(64)
cdef class Request:
    """One request's state, shared by the client and upstream sides of its exchange. Filters may
    read `method`, `path`, `host`, `headers`, `plan` and append to `resp_extra`."""

    def __cinit__(self):
        self.cl = -1
        self.keep_alive = True
        self.url = b""
        self.query = b""
        self.resp_extra = b""
        self.rid = b""
        self.upstream = ""
        self.hpairs = []

    @property
    def headers(self):
        """(lower-case name, name, value) triples as received; built on first use."""
        cdef list out = self._headers
        cdef Py_ssize_t i
        cdef list pairs = self.hpairs
        if out is None:
            out = []
            for i in range(0, len(pairs), 2):
                out.append(((<bytes>pairs[i]).lower(), pairs[i], pairs[i + 1]))
            self._headers = out
        return out

    @staticmethod
    def build(headers=(), *, bytes method=b"GET", bytes path=b"/", bytes host=None):
        """A request as filters and balancers see it, built without a connection: for tests and
        for code embedding those components. `headers` are (name, value) byte pairs."""
        cdef Request req = Request.__new__(Request)
        req.method = method
        req.path = path
        req.url = path
        req.host = host
        for name, value in headers:
            req.hpairs.append(bytes(name))
            req.hpairs.append(bytes(value))
        req.t0 = _now()
        return req

    cpdef bytes header(self, bytes lname):
        """The first value of header `lname` (given in lower case), or None; no list is built."""
        cdef list pairs = self.hpairs
        cdef Py_ssize_t i, n = PyBytes_GET_SIZE(lname)
        cdef const char* want = PyBytes_AS_STRING(lname)
        cdef bytes name
        for i in range(0, len(pairs), 2):
            name = <bytes>pairs[i]
            if PyBytes_GET_SIZE(name) == n and _ieq(PyBytes_AS_STRING(name), want, n):
                return <bytes>pairs[i + 1]
        return None

    @property
    def version(self):
        return "1.1" if self.ver == 11 else ("1.0" if self.ver == 10 else "")



# ---- upstream side ------------------------------------------------------------------------------

cdef class UpstreamCore:
    """One keep-alive connection to a target. It parses responses and hands every event to the
    client exchange it is bound to; it carries no per-request object of its own."""

    def __init__(self, pool):
        self.pool = pool
        self.parser = _ResponseParser(self)
        self.hpairs = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, bytes data):
        cdef ClientCore client = self.client
        if client is None or self.done:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.broken = True
            self.transport.abort()
            return
        self.got_bytes = True
        self.last_active = _now()
        try:
            self.parser.feed_data(data)
        except _ParserUpgrade:
            client.upstream_failed(self, 502, "upstream switched protocols unrequested", "protocol_error")
            return
        except _ParserError as exc:
            if self.client is not None:
                client.upstream_failed(self, 502, f"invalid upstream response: {exc}", "protocol_error")
            return
        if self.done and self.client is not None:
            client.upstream_complete(self)
        else:
            client.flush()

    def connection_lost(self, exc):
        self.closed = True
        cdef ClientCore client = self.client
        if client is not None and not self.done:
            if self.until_close and exc is None:
                client.upstream_message_complete(self)
                self.done = True
                client.upstream_complete(self)
                return
            client.upstream_lost(self)
        else:
            self.pool.forget(self)

    def pause_writing(self):
        if self.client is not None:
            self.client._pause(P_UPSTREAM)

    def resume_writing(self):
        if self.client is not None:
            self.client._resume(P_UPSTREAM)

    # httptools callbacks. Once the response is complete (`done`), whatever llhttp still parses
    # from the same read is bytes after the response: ignored, and the connection is not reused.

    def on_message_begin(self):
        if self.done:
            self.broken = True
        self.hpairs = []

    def on_header(self, bytes name, bytes value):
        self.hpairs.append(name)
        self.hpairs.append(value)

    def on_headers_complete(self):
        if self.client is not None and not self.done:
            self.client.upstream_head(self, self.parser.get_status_code(), self.hpairs)

    def on_body(self, bytes body):
        if self.client is not None and not self.done:
            self.client.upstream_body(body)

    def on_message_complete(self):
        if self.client is not None and not self.done and self.client.upstream_message_complete(self):
            self.keep_alive = self.parser.should_keep_alive()
            self.done = True

    cdef bind(self, ClientCore client):
        self.client = client
        self.done = False
        self.until_close = False
        self.got_bytes = False
        self.last_active = _now()

    cpdef release(self, bint reusable):
        """Ends the exchange: back to the pool when the response was complete and framed, closed
        otherwise (any doubt about where the next response starts means no reuse)."""
        self.client = None
        if reusable and not self.broken and not self.closed and self.keep_alive:
            self.pool.give(self)
        else:
            self.abort()

    cpdef abort(self):
        self.client = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)

    def timed_out(self):
        """Called by the sweeper when the upstream stayed silent past its read timeout."""
        if self.client is not None:
            self.client.upstream_failed(self, 504, "upstream read timed out", "timeout")

    @property
    def busy(self):
        return self.client is not None


# ---- client side --------------------------------------------------------------------------------

cdef class ClientCore:
    """One downstream connection; see proto.pxd for the call order."""

    def __init__(self, rt, listener):
        self.rt = rt
        self.listener = listener
        self.parser = _RequestParser(self)
        self.replies = rt.replies
        self.trie = rt.trie
        self.alog = rt.access.core
        self.ids = rt.ids
        self.max_head = rt.max_head
        self.max_headers = rt.max_headers
        self.max_url = rt.max_url
        self.max_body = rt.max_body
        self.fwd_lines = listener.forwarded_lines
        self.underscores = listener.underscores_in_headers
        self.peer = b""
        self.last_active = _now()

    def __dealloc__(self):
        _buf_free(&self.out)
        _buf_free(&self.head)

    # asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else ""
        self.peer = ip.encode()
        self.trusted = self.rt.is_trusted(ip)
        self.rt.connections.add(self)
        if self.rt.draining:
            self.closing = True

    def data_received(self, bytes data):
        if self.halted:
            return
        self.last_active = _now()
        cdef Request req = self.req
        if req is not None and not req.head_done:
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
            # A request asked to upgrade on a route that does not: it was served as plain HTTP,
            # and parsing carries on with a fresh parser where llhttp stopped.
            self.parser = _RequestParser(self)
            rest = data[exc.args[0]:]
            if rest:
                self.data_received(rest)
            return
        except _ParserError as exc:
            req = self.req
            if req is not None and req.te is not None:
                status, message = _check_te(req.te)
                if status:
                    self.reject(status, message)
                    return
            self.reject(400, f"malformed request: {exc}")
            return
        req = self.req
        if req is not None and not req.head_done:
            if req.raw_head > self.max_head:
                self.reject(431)
            elif req.nheaders == 0 and req.url and _versionless_line(data, req.url):
                # A request line without a version (HTTP/0.9): llhttp waits for more, but the
                # client waits for an answer, which is given now rather than at the header timeout.
                self.reject(400, "request line without an HTTP version")

    def connection_lost(self, exc):
        self.closing = True
        self.rt.connections.discard(self)
        cdef UpstreamCore up = self.up
        cdef Request active = self.active
        if up is not None:
            self.up = None
            up.abort()
        if active is not None and not active.finished:
            if not active.resp_started:
                active.status = 499
            if active.in_flight:
                active.in_flight = False
                active.pool.on_cancel()
            self._log(active)
        self.active = None
        self.queue = None

    def eof_received(self):
        """The client shut down its sending side. A request received in full (and those
        pipelined behind it) is still answered, then the connection closes; anything cut short
        ends here (returning False lets the transport close)."""
        cdef Request req = self.req
        if (req is not None and not req.body_done) or self.halted:
            return False
        if self.active is None and not self.queue:
            return False
        self.closing = True
        return True

    def pause_writing(self):
        cdef UpstreamCore up = self.up
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self):
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
        cdef int hid = _header_id(name)
        if hid == H_OTHER:
            if memchr(PyBytes_AS_STRING(name), b"_", PyBytes_GET_SIZE(name)) != NULL \
                    and (not self.underscores or _header_id(name.replace(b"_", b"-")) != H_OTHER):
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
            req.conn_drop = _tokens(value, req.conn_drop)
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

    def on_headers_complete(self):
        cdef Request req = self.req
        parser = self.parser
        req.head_done = True
        version = parser.get_http_version()
        if version == "0.9":
            raise Reject(400, "request line without an HTTP version")
        req.ver = 11 if version == "1.1" else (10 if version == "1.0" else 0)
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        if req.te is None and req.cl <= 0:
            # No body follows: the request is complete now, so a local answer need not close.
            req.body_done = True
        if self.active is None and self.deferred is None:
            self._start(req)
            if self.halted:
                raise Halt()
        else:
            if self.queue is None:
                self.queue = _deque()
            self.queue.append(req)
            self._pause(P_QUEUE)

    def on_body(self, bytes body):
        cdef Request req = self.req
        req.body_len += PyBytes_GET_SIZE(body)
        if req.body_len > self.max_body:
            raise Reject(413)
        cdef UpstreamCore up = self.up
        if up is not None and req is self.active and not req.req_sent and req.head is not None:
            up.last_active = _now()
            req.body_streamed = True
            if req.chunked:
                _add_int(&self.head, PyBytes_GET_SIZE(body), 16)
                _add(&self.head, b"\r\n", 2)
                up.transport.writelines((_take(&self.head), body, _CRLF))
            else:
                up.transport.write(body)
            return
        if req.finished:
            return
        if req.body is None:
            req.body = []
        req.body.append(body)
        if req.body_len > BODY_BUFFER:
            self._pause(P_BUFFER)

    def on_message_complete(self):
        cdef Request req = self.req
        req.body_done = True
        self.req = None
        cdef UpstreamCore up
        if req is self.active:
            up = self.up
            if up is not None and req.head is not None and not req.req_sent:
                if req.chunked:
                    up.transport.write(_LAST_CHUNK)
                req.req_sent = True
            if req.finished:
                self._after_response(req)

    # request start

    cdef _start(self, Request req):
        rt = self.rt
        self.active = req
        self.served += 1
        cdef bytes rid = req.rid_in
        if rid is None or not rid or PyBytes_GET_SIZE(rid) > 128 or rid.translate(None, _RID_CHARS):
            rid = self.ids.next()
        req.rid = rid
        if req.ver == 0:
            return self._local_error(req, 400, "unsupported HTTP version", True)
        if req.host_count > 1:
            return self._local_error(req, 400, "duplicate Host header", True)
        if req.host_count == 0 and req.ver == 11:
            return self._local_error(req, 400, "missing Host header", True)
        if req.host is not None and req.host != self.last_host:
            if not valid_host(req.host):
                return self._local_error(req, 400, "invalid Host header", True)
            self.last_host = req.host
        if req.te is not None:
            if req.ver == 10:
                # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
                return self._local_error(req, 400, "Transfer-Encoding in an HTTP/1.0 request", True)
            status, message = _check_te(req.te)
            if status:
                return self._local_error(req, status, message, True)
            req.chunked = True
        if req.expect is not None and req.expect.lower() != b"100-continue":
            return self._local_error(req, 417, None, True)
        cdef bytes url = req.url
        if url[:1] != b"/":
            if not self._absolute_form(req):
                return
            url = req.url
        cdef Py_ssize_t q = url.find(b"?")
        cdef bytes raw_path
        if q >= 0:
            raw_path = url[:q]
            req.query = url[q:]
        else:
            raw_path = url
        if b"#" in req.query:
            return self._local_error(req, 400, "fragment in request target", True)
        cdef bytes path
        try:
            path = normalize_path(raw_path)
        except PathError as exc:
            return self._local_error(req, 400, f"invalid path: {exc}", True)
        req.path = path
        cdef RouteMatch m = self.trie.match(req.host if req.host is not None else b"", req.method, path)
        if m.status != 200:
            if m.status == 405:
                return self._local_error(req, 405, None, False, b"allow: " + m.allow + b"\r\n")
            return self._local_error(req, 404)
        cdef Plan plan = <Plan>m.target
        req.plan = plan
        if req.cl > self.max_body:
            return self._local_error(req, 413, None, True)
        if plan.filters:
            for f in plan.filters:
                reply = f.on_request(self, req)
                if reply is not None:
                    status, message, headers = reply
                    return self._local_error(req, status, message, False, headers)
        if plan.strip_len >= 0:
            path = path[plan.strip_len:] or b"/"
        req.head = self._upstream_head(req, plan, path)
        group = plan.group
        group.on_request()
        pool = group.pick(self, req, None)
        if pool is None:
            return self._local_error(req, 503, "no healthy upstream target")
        self._send_to(req, pool)

    cdef bytes _upstream_head(self, Request req, Plan plan, bytes path):
        cdef OutBuf* b = &self.head
        cdef list pairs = req.hpairs
        cdef Py_ssize_t i, n = len(pairs)
        cdef bytes name, value
        cdef int hid
        cdef object extra = plan.request_drop_extra
        cdef set conn_drop = req.conn_drop
        cdef bytes host_header = plan.host_header
        b.len = 0
        _addb(b, req.method)
        _add(b, b" ", 1)
        _addb(b, path)
        _addb(b, req.query)
        _add(b, b" HTTP/1.1\r\n", 11)
        for i in range(0, n, 2):
            name = <bytes>pairs[i]
            hid = _header_id(name)
            if hid != H_OTHER and (_request_drops(hid) or (hid == H_HOST and host_header is not None)):
                continue
            if extra is not None or conn_drop is not None:
                lname = name.lower()
                if (extra is not None and lname in extra) or (conn_drop is not None and lname in conn_drop):
                    continue
            value = <bytes>pairs[i + 1]
            _addb(b, name)
            _add(b, b": ", 2)
            _addb(b, value)
            _add(b, b"\r\n", 2)
        if host_header is not None:
            _add(b, b"host: ", 6)
            _addb(b, host_header)
            _add(b, b"\r\n", 2)
        elif req.host is None:
            _addb(b, plan.default_host_line)
        _add(b, b"x-forwarded-for: ", 17)
        if req.xff is not None and self.trusted:
            for value in req.xff:
                _addb(b, value)
                _add(b, b", ", 2)
        _addb(b, self.peer)
        _add(b, b"\r\n", 2)
        _addb(b, self.fwd_lines)
        if req.host is not None:
            _add(b, b"x-forwarded-host: ", 18)
            _addb(b, req.host)
            _add(b, b"\r\n", 2)
        _add(b, b"x-request-id: ", 14)
        _addb(b, req.rid)
        _add(b, b"\r\n", 2)
        _addb(b, plan.request_set)
        if req.chunked:
            _add(b, b"transfer-encoding: chunked\r\n\r\n", 30)
        elif req.cl >= 0:
            _add(b, b"content-length: ", 16)
            _add_int(b, req.cl, 10)
            _add(b, b"\r\n\r\n", 4)
        else:
            _add(b, b"\r\n", 2)
        return _take(b)

    cdef _send_to(self, Request req, object pool):
        req.pool = pool
        req.upstream = pool.label
        req.attempts += 1
        req.in_flight = True
        req.attempt_t0 = _now()
        pool.begin()
        conn = pool.take()
        if conn is not None:
            self._attach(req, <UpstreamCore>conn)
        else:
            if not req.body_done:
                self._pause(P_BUFFER)
            self.rt.spawn(self._connect(req, pool))

    async def _connect(self, Request req, pool):
        try:
            conn = await pool.connect()
        except TimeoutError:
            self._failed_attempt(req, pool, "connect_error", 504, "timed out connecting to the upstream")
            return
        except OSError as exc:
            self._failed_attempt(req, pool, "connect_error", 502,
                                 f"cannot connect to the upstream: {exc.strerror or exc}")
            return
        if req is not self.active or self.transport is None or self.transport.is_closing():
            pool.give(conn)
            return
        self._attach(req, <UpstreamCore>conn)

    cdef _failed_attempt(self, Request req, object pool, object outcome, int status, str message):
        """An attempt failed before any response byte reached the client: retry if the policy
        allows it, else answer with the gateway error."""
        if req.in_flight:
            req.in_flight = False
            pool.on_failure(outcome if isinstance(outcome, str) else "status")
        if req is not self.active:
            return
        if self._retry(req, outcome):
            return
        self._local_error(req, status, message, not req.body_done)

    cdef bint _retry(self, Request req, object outcome):
        """DESIGN §8: to a different target where one exists; once any part of the request was
        sent, only idempotent requests; a body already streamed cannot be replayed."""
        group = (<Plan>req.plan).group
        retry = group.retry
        if retry is None or req.body_streamed:
            return False
        if not retry.allows(outcome, req.attempts, req.method in _IDEMPOTENT, req.req_sent):
            return False
        other = group.pick(self, req, req.pool)
        if other is None or (other is req.pool and outcome == "connect_error"):
            # Connecting again to the target that just refused or timed out only delays the
            # answer (by a whole connect timeout when the target is unreachable).
            return False
        req.req_sent = False
        self._send_to(req, other)
        return True

    cdef _attach(self, Request req, UpstreamCore conn):
        self.up = conn
        conn.bind(self)
        transport = conn.transport
        cdef list body = req.body
        cdef list parts
        if req.expect is not None and not req.body_done and body is None and req.ver == 11:
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
        if req.body_done:
            if req.chunked:
                transport.write(_LAST_CHUNK)
            req.req_sent = True
        else:
            req.body = None
            req.body_streamed = body is not None
        self._resume(P_BUFFER)

    # upstream events

    cdef upstream_head(self, UpstreamCore conn, int status, list hpairs):
        cdef Request req = self.active
        if req is None:
            return
        if status < 200:
            if status == 101:
                self.upstream_failed(conn, 502, "upstream switched protocols unrequested", "protocol_error")
                return
            # 1xx go to HTTP/1.1 clients (RFC 9110 §15.2), a 100 the client did not ask for
            # included; a 100 the gateway already sent itself is not sent twice.
            if req.ver == 11 and not (status == 100 and req.continued):
                _addb(&self.out, self._response_head(req, status, hpairs, True))
            return
        group = (<Plan>req.plan).group
        if group.retry_statuses is not None and status in group.retry_statuses and req.body_done \
                and not req.body_streamed and group.retry is not None \
                and group.retry.allows(status, req.attempts, req.method in _IDEMPOTENT, True):
            other = group.pick(self, req, req.pool)
            if other is not None:
                # The response is discarded unread, so its connection cannot be reused.
                self.up = None
                conn.broken = True
                conn.abort()
                req.in_flight = False
                req.pool.on_success(status, _now() - req.attempt_t0)
                req.req_sent = False
                self._send_to(req, other)
                return
        req.status = status
        req.resp_started = True
        _addb(&self.out, self._response_head(req, status, hpairs, False))
        if req.method == b"HEAD":
            # llhttp cannot be told the response answers a HEAD, so it would wait for the body the
            # headers announce: the response ends here and the connection is not reused.
            conn.broken = True
            conn.done = True
        elif not req.resp_nobody and not req.resp_chunked_up and not req.resp_cl_up:
            conn.until_close = True

    cdef bytes _response_head(self, Request req, int status, list hpairs, bint informational):
        cdef Plan plan = <Plan>req.plan
        cdef object extra = plan.response_drop_extra
        cdef set conn_drop = None
        cdef bytes upstream_cl = None
        cdef bint chunked_up = False
        cdef Py_ssize_t i, n = len(hpairs)
        cdef bytes name
        cdef int hid
        for i in range(0, n, 2):
            hid = _header_id(<bytes>hpairs[i])
            if hid == H_CONNECTION:
                conn_drop = _tokens(<bytes>hpairs[i + 1], conn_drop)
            elif hid == H_CONTENT_LENGTH:
                upstream_cl = <bytes>hpairs[i + 1]
            elif hid == H_TRANSFER_ENCODING:
                chunked_up = True
        req.resp_chunked_up = chunked_up
        req.resp_cl_up = upstream_cl is not None
        cdef OutBuf* b = &self.head
        b.len = 0
        _addb(b, status_line(status))
        for i in range(0, n, 2):
            name = <bytes>hpairs[i]
            hid = _header_id(name)
            if hid != H_OTHER and _response_drops(hid):
                continue
            if extra is not None or conn_drop is not None:
                lname = name.lower()
                if (extra is not None and lname in extra) or (conn_drop is not None and lname in conn_drop):
                    continue
            _addb(b, name)
            _add(b, b": ", 2)
            _addb(b, <bytes>hpairs[i + 1])
            _add(b, b"\r\n", 2)
        _addb(b, plan.response_set)
        _addb(b, req.resp_extra)
        _add(b, b"x-request-id: ", 14)
        _addb(b, req.rid)
        _add(b, b"\r\n", 2)
        if informational:
            _add(b, b"\r\n", 2)
            return _take(b)
        cdef bint nobody = status == 204 or status == 304 or req.method == b"HEAD"
        req.resp_nobody = nobody
        cdef bint close = self.closing or not req.keep_alive or not req.body_done
        if nobody:
            if upstream_cl is not None and status != 204:
                _add(b, b"content-length: ", 16)
                _addb(b, upstream_cl)
                _add(b, b"\r\n", 2)
        elif upstream_cl is not None and not chunked_up:
            _add(b, b"content-length: ", 16)
            _addb(b, upstream_cl)
            _add(b, b"\r\n", 2)
        elif req.ver == 11:
            _add(b, b"transfer-encoding: chunked\r\n", 28)
            req.resp_chunked = True
        else:
            close = True
        if close:
            _add(b, b"connection: close\r\n\r\n", 21)
        elif req.ver == 10:
            _add(b, b"connection: keep-alive\r\n\r\n", 26)
        else:
            _add(b, b"\r\n", 2)
        req.resp_close = close
        return _take(b)

    cdef upstream_body(self, bytes body):
        cdef Request req = self.active
        if req is None or req.resp_nobody:
            return
        cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
        req.sent += n
        cdef OutBuf* out = &self.out
        if req.resp_chunked:
            _add_int(out, n, 16)
            _add(out, b"\r\n", 2)
        if n <= INLINE_BODY:
            _addb(out, body)
        else:
            self.flush()
            self.transport.write(body)
        if req.resp_chunked:
            _add(out, b"\r\n", 2)

    cdef bint upstream_message_complete(self, UpstreamCore conn):
        """True when the final response is complete (False after an informational one)."""
        cdef Request req = self.active
        if req is None:
            return True
        if not req.resp_started:
            return False
        if req.resp_chunked:
            _add(&self.out, b"0\r\n\r\n", 5)
        return True

    cdef flush(self):
        if self.out.len and self.transport is not None:
            self.transport.write(_take(&self.out))
        self.out.len = 0

    cdef upstream_complete(self, UpstreamCore conn):
        """Called once the read that completed the response is fully parsed."""
        self.flush()
        cdef Request req = self.active
        self.up = None
        if req is None:
            conn.release(False)
            return
        conn.release(req.req_sent and req.body_done)
        self._end_attempt(req, req.status, None)
        req.finished = True
        self._log(req)
        if req.body_done:
            self._after_response(req)
        elif req.resp_close:
            self._close(False)

    cdef _end_attempt(self, Request req, int status, str kind):
        if req.in_flight:
            req.in_flight = False
            if kind is None:
                req.pool.on_success(status, _now() - req.attempt_t0)
            else:
                req.pool.on_failure(kind)

    cdef upstream_lost(self, UpstreamCore conn):
        cdef Request req = self.active
        self.up = None
        conn.pool.forget(conn)
        conn.client = None
        if req is None:
            return
        if not req.resp_started:
            if (conn.reused and not conn.got_bytes and req.attempts < 3 and req.method in _IDEMPOTENT
                    and req.body_len == 0 and not req.chunked):
                # A pooled connection the upstream closed as we reused it (RFC 9112 §9.3.1): the
                # request is idempotent and had no body, so it goes again on another connection.
                # Not the target's fault, so neither a failure nor a retry from the budget.
                if req.in_flight:
                    req.in_flight = False
                    req.pool.on_cancel()
                req.attempts -= 1
                req.req_sent = False
                self._send_to(req, req.pool)
                return
            self._failed_attempt(req, req.pool, "reset", 502, "upstream closed the connection")
            return
        self._end_attempt(req, 0, "reset")
        self._abort(req)

    cdef upstream_failed(self, UpstreamCore conn, int status, str message, str kind):
        cdef Request req = self.active
        self.up = None
        conn.broken = True
        conn.abort()
        if req is None:
            return
        if not req.resp_started:
            if kind == "timeout":
                self._failed_attempt(req, req.pool, "timeout", status, message)
            else:
                self._end_attempt(req, 0, kind)
                self._local_error(req, status, message, True)
        else:
            self._end_attempt(req, 0, kind)
            self._abort(req)

    # completion

    cdef _after_response(self, Request req):
        """The exchange is over in both directions: next request, or close."""
        self.active = None
        if req.resp_close or self.closing or self.transport.is_closing():
            self._close(False)
            return
        queue = self.queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self._resume(P_QUEUE)
            self._start(<Request>nxt)
        elif self.deferred is not None:
            deferred = self.deferred
            self.deferred = None
            self.reject(deferred.status, deferred.message)

    cdef _local_error(self, Request req, int status, str message=None, bint close=False, bytes extra=b""):
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
            self.replies.error(
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
            self._close(False)
        elif req.body_done:
            self._after_response(req)

    def reject(self, int status, message=None):
        """Refuses what the parser is reading and closes: once framing is in doubt, nothing more
        on this connection can be trusted."""
        cdef Request active = self.active
        cdef UpstreamCore up
        if active is not None and not active.finished and self.req is active:
            # The body of the request being proxied is bad (framing, size): the upstream must
            # never see it complete, so its connection is dropped before answering.
            up = self.up
            if up is not None:
                self.up = None
                up.abort()
            if active.in_flight:
                active.in_flight = False
                active.pool.on_cancel()
            if active.resp_started:
                self._abort(active)
            else:
                self._local_error(active, status, message, True)
            return
        if active is not None and not active.finished:
            if self.deferred is None:
                self.deferred = Reject(status, message)
            self._pause(P_QUEUE)
            return
        cdef Request req = self.req
        if req is None:
            req = Request.__new__(Request)
            req.t0 = _now()
        self.req = None
        if not req.rid:
            req.rid = self.ids.next()
        if not req.method:
            req.method = b"-"
        self.active = req
        self._local_error(req, status, message, True)

    cdef _abort(self, Request req):
        """The response was already under way: the only honest signal left is a reset."""
        req.finished = True
        self.out.len = 0
        if req.status == 0:
            req.status = 502
        self._log(req)
        self.active = None
        self._close(True)

    cdef _expire(self, Request req, str message):
        """The request's total timeout passed before a response started: no further attempt."""
        cdef UpstreamCore up = self.up
        if up is not None:
            self.up = None
            up.broken = True
            up.abort()
        self._end_attempt(req, 0, "timeout")
        self._local_error(req, 504, message, True)

    cdef bint _absolute_form(self, Request req):
        cdef bytes url = req.url
        cdef bytes lower = url[:8].lower()
        cdef bytes rest
        if lower.startswith(b"http://"):
            rest = url[7:]
        elif lower.startswith(b"https://"):
            rest = url[8:]
        else:
            self._local_error(req, 400, "invalid request target", True)
            return False
        cdef Py_ssize_t slash = rest.find(b"/")
        cdef bytes authority = rest if slash < 0 else rest[:slash]
        if req.host is None or authority.lower() != req.host.lower():
            self._local_error(req, 400, "absolute-form target disagrees with Host", True)
            return False
        req.url = rest[slash:] if slash >= 0 else b"/"
        return True

    cdef _pause(self, int reason):
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
        self.paused |= reason

    cdef _resume(self, int reason):
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    cdef _log(self, Request req):
        req.finished = True
        self.alog.record(self.peer, req)

    cdef _close(self, bint abort):
        """Closes (or resets) the client connection; from here on nothing more it sent is parsed,
        even what is left of the read being parsed now (`Halt`)."""
        self.halted = True
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    # timeouts and draining (called by the worker's sweeper)

    def sweep(self, double now):
        rt = self.rt
        cdef Request active = self.active
        cdef Request req = self.req
        cdef UpstreamCore up
        if active is not None and not active.finished:
            if not active.body_done and now - self.last_active > rt.body_timeout and not self.paused:
                if not active.resp_started:
                    self._local_error(active, 408, None, True)
                else:
                    self._abort(active)
                return
            if not active.resp_started and active.plan is not None:
                retry = (<Plan>active.plan).group.retry
                total = retry.total_timeout
                if total is not None and now - active.t0 > total:
                    self._expire(active, "the request's total upstream timeout passed")
                    return
                per_try = retry.per_try_timeout
                up = self.up
                if per_try is not None and up is not None and active.in_flight \
                        and now - active.attempt_t0 > per_try:
                    self.upstream_failed(up, 504, "upstream attempt timed out", "timeout")
            return
        if req is not None and not req.head_done:
            if now - req.start > rt.header_timeout:
                self.reject(408)
            return
        if now - self.last_active > rt.idle_timeout or (
            rt.draining and (self.served or now - rt.drain_started > DRAIN_FIRST_REQUEST)
        ):
            self._close(False)

    def drain(self):
        """Stop after the current exchange. An idle keep-alive connection closes now; one that
        was accepted but has not sent its first request yet (it may have been queued before the
        worker stopped accepting) gets DRAIN_FIRST_REQUEST seconds to send it."""
        self.closing = True
        if self.active is None and self.req is None and self.served:
            self._close(False)
