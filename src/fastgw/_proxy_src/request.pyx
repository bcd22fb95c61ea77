# Per-request state and the response shapes of the pipeline (see request.pxd).


@cython.final
cdef class Reply:
    """A response the gateway makes itself. `Reply(status, headers, body)` is sent as given;
    `Reply.error(status, message)` is a gateway error whose body follows the configured error
    format (JSON by default, or the per-status body of `errors.bodies`)."""

    def __init__(self, int status, headers=(), bytes body=b""):
        if not 200 <= status <= 599:
            raise ValueError(f"a reply's status must be 200-599, got {status}")
        self.status = status
        self.headers = tuple((bytes(n), bytes(v)) for n, v in headers)
        self.body = body
        self.is_error = False
        self.message = None

    @staticmethod
    cdef Reply make_error(int status, str message, bytes extra_lines):
        cdef Reply reply = Reply.__new__(Reply)
        reply.status = status
        reply.message = message
        reply.is_error = True
        reply.body = b""
        reply.headers = _parse_lines(extra_lines) if extra_lines else ()
        return reply

    @staticmethod
    def switching(headers, handler):
        """`101 Switching Protocols` with `headers`, after which `handler` owns the client
        connection: `handler.connection_made(transport, req)`, then `data_received(data)` for
        every read, `connection_lost(exc)` at the end, and, when it has them, `pause_writing()`,
        `resume_writing()`, `sweep(now)` (every tick) and `close_going_away()` (when a drain's
        grace period ends). The request is logged with status 101 when the handler takes over."""
        cdef Reply reply = Reply.__new__(Reply)
        reply.status = 101
        reply.headers = tuple((bytes(n), bytes(v)) for n, v in headers)
        reply.body = b""
        reply.handler = handler
        return reply

    @staticmethod
    def error(int status, message=None, headers=()):
        """A gateway error reply: the JSON error contract (or the configured body) with `status`
        and `message` (None: the status's standard message), plus `headers`."""
        cdef Reply reply = Reply.make_error(status, message, None)
        reply.headers = tuple((bytes(n), bytes(v)) for n, v in headers)
        return reply

    def __repr__(self):
        return f"Reply({self.status}, error={self.is_error})"


cdef tuple _parse_lines(bytes lines):
    """`name: value\\r\\n...` back into pairs (for the few callers that hold rendered lines)."""
    cdef list out = []
    cdef bytes line
    for line in lines.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append((name, value.strip()))
    return tuple(out)


@cython.final
cdef class ResponseHead:
    """The response head as response filters see it: `status` and `headers`, a flat list
    [name, value, ...] of bytes, editable. Hop-by-hop and framing headers are already gone and are
    set by the gateway when the head is rendered."""

    def get(self, bytes lname):
        """The first value of header `lname` (lower case), or None."""
        cdef list h = self.headers
        cdef Py_ssize_t i, n = PyBytes_GET_SIZE(lname)
        cdef bytes name
        for i in range(0, len(h), 2):
            name = <bytes>h[i]
            if PyBytes_GET_SIZE(name) == n and ieq(PyBytes_AS_STRING(name), PyBytes_AS_STRING(lname), n):
                return h[i + 1]
        return None

    def remove(self, bytes lname):
        """Removes every header `lname` (lower case)."""
        cdef list h = self.headers
        cdef list keep = []
        cdef Py_ssize_t i, n = PyBytes_GET_SIZE(lname)
        cdef bytes name
        for i in range(0, len(h), 2):
            name = <bytes>h[i]
            if not (PyBytes_GET_SIZE(name) == n and ieq(PyBytes_AS_STRING(name), PyBytes_AS_STRING(lname), n)):
                keep.append(name)
                keep.append(h[i + 1])
        self.headers = keep

    def set(self, bytes name, bytes value):
        """Replaces every header `name` with one `name: value`."""
        self.remove(name.lower())
        self.headers.append(name)
        self.headers.append(value)

    def add(self, bytes name, bytes value):
        self.headers.append(name)
        self.headers.append(value)

    def stream_through(self, filter, bint transforms=True):
        """Called by a response filter from its `on_response`: the body of this response goes
        through the filter's `on_body(req, data) -> bytes` and `on_end(req) -> bytes`, in response
        filter order. `transforms=False` promises the filter returns the data unchanged (it only
        observes, as a cache store does), so the response keeps its Content-Length. Ignored on
        local replies and bodyless responses."""
        cdef object current = self.current
        if current is None:
            raise RuntimeError("stream_through() is for a response filter's on_response")
        if filter is not current and filter is not (<Filter>current).target:
            raise ValueError("stream_through() takes the filter whose on_response is running")
        if self.is_local:
            return
        if self.body_filters is None:
            self.body_filters = []
        self.body_filters.append(current)
        if transforms:
            self.transforms = True


@cython.final
@cython.freelist(64)
cdef class Request:
    """One request's state, shared by the client and upstream sides of its exchange and by every
    filter of its route."""

    def __cinit__(self):
        self.cl = -1
        self.keep_alive = True
        self.url = b""
        self.query = b""
        self.resp_extra = b""
        self.up_extra = b""
        self.rid = b""
        self.peer = b""
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
    def build(headers=(), *, bytes method=b"GET", bytes path=b"/", bytes host=None, bytes peer=b"127.0.0.1",
              bytes query=b""):
        """A request as filters and balancers see it, built without a connection: for tests and
        for code embedding those components. `headers` are (name, value) byte pairs."""
        cdef Request req = Request.__new__(Request)
        req.method = method
        req.path = path
        req.url = path + query
        req.query = query
        req.host = host
        req.peer = peer
        req.ver = 11
        for name, value in headers:
            req.hpairs.append(bytes(name))
            req.hpairs.append(bytes(value))
            if bytes(name).lower() == b"x-forwarded-for":
                if req.xff is None:
                    req.xff = []
                req.xff.append(bytes(value))
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
            if PyBytes_GET_SIZE(name) == n and ieq(PyBytes_AS_STRING(name), want, n):
                return <bytes>pairs[i + 1]
        return None

    def header_values(self, bytes lname):
        """Every value of header `lname` (lower case), in order."""
        cdef list pairs = self.hpairs
        cdef Py_ssize_t i, n = PyBytes_GET_SIZE(lname)
        cdef bytes name
        out = []
        for i in range(0, len(pairs), 2):
            name = <bytes>pairs[i]
            if PyBytes_GET_SIZE(name) == n and ieq(PyBytes_AS_STRING(name), PyBytes_AS_STRING(lname), n):
                out.append(pairs[i + 1])
        return out

    cdef bytes client_ip(self):
        """The client's address: the peer, or, when the peer is a trusted proxy, the nearest
        address in X-Forwarded-For that is not one (nginx's realip with recursion). Computed once."""
        cdef bytes client = self.client
        if client is not None:
            return client
        client = self.peer
        if self.trusted_peer and self.xff is not None and self.ex is not None:
            client = (<ClientCore>self.ex).resolve_client(self)
        self.client = client
        return client

    @property
    def client_address(self):
        """The client's address as bytes, resolved through `trusted_proxies`."""
        return self.client_ip()

    @property
    def version(self):
        return "1.1" if self.ver == 11 else ("1.0" if self.ver == 10 else "")

    @property
    def vars(self):
        """A dict for values one filter leaves for later ones; created on first use."""
        if self._vars is None:
            self._vars = {}
        return self._vars

    @property
    def route_params(self):
        """The route's `{param}` captures (still percent-encoded), or None."""
        return self.params.params if self.params is not None else None

    def set_upstream_header(self, bytes name, bytes value):
        """Sends `name: value` to the upstream, replacing whatever the client sent under that
        name. For values the gateway vouches for (a verified identity): clients cannot inject
        them."""
        self.remove_upstream_header(name)
        self.up_extra = self.up_extra + name + b": " + value + b"\r\n"

    def add_upstream_lines(self, bytes lines):
        """Appends rendered `name: value\r\n` lines to the upstream request as they are, for
        headers the plan already drops from every client request (the headers auth vouches for,
        `Config.auth_headers`), so that nothing needs removing: a hot path's one concatenation.
        The caller guarantees well-formed lines (no CR or LF inside a value)."""
        self.up_extra = self.up_extra + lines

    @property
    def upstream_lines(self):
        """The header lines filters added for the upstream (`set_upstream_header`, and what auth
        vouches for), rendered `name: value\r\n`: for responders that make their own upstream
        calls (the WebSocket bridge) and must send the same identity."""
        return self.up_extra

    def remove_upstream_header(self, bytes name):
        """The client's `name` headers are not sent upstream."""
        cdef bytes lname = name.lower()
        if self.up_drop is None:
            self.up_drop = (lname,)
        elif lname not in self.up_drop:
            self.up_drop = self.up_drop + (lname,)

    def add_response_header(self, bytes name, bytes value):
        """Adds `name: value` to whatever response this request gets, upstream or local."""
        self.resp_extra = self.resp_extra + name + b": " + value + b"\r\n"

    def resume(self, result=None):
        """Ends a suspension (a filter returned SUSPENDED): None goes on with the next phase, a
        Reply answers. Ignored once the request is over (the client went away meanwhile)."""
        if self.ex is not None:
            (<ClientCore>self.ex).filter_done(self, result)
