# W3C Trace Context propagation, compiled (see tracing.pxd for what a request goes through).

from os import urandom as _urandom

cdef const char* _TR_HEX = b"0123456789abcdef"
cdef tuple _DROP_PARENT = (b"traceparent",)
cdef tuple _DROP_BOTH = (b"traceparent", b"tracestate")


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept:
    return (x << k) | (x >> (64 - k))


@cython.final
cdef class TraceIds:
    """xoshiro256** (Blackman and Vigna): fast, statistically strong 64-bit draws. Not for
    secrets; trace and span ids need only be unlikely to collide."""

    def __init__(self, bytes seed=None):
        if seed is None:
            seed = _urandom(32)
        if len(seed) != 32:
            raise ValueError("the seed is 32 bytes")
        cdef int i
        for i in range(4):
            self.s[i] = int.from_bytes(seed[i * 8:(i + 1) * 8], "little")
        if self.s[0] == 0 and self.s[1] == 0 and self.s[2] == 0 and self.s[3] == 0:
            self.s[0] = 1

    cdef uint64_t next(self) noexcept:
        cdef uint64_t* s = self.s
        cdef uint64_t result = _rotl(s[1] * 5, 7) * 9
        cdef uint64_t t = s[1] << 17
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def draw(self):
        return self.next()


cdef inline void _hex64(char* out, uint64_t v) noexcept:
    cdef int i
    for i in range(16):
        out[15 - i] = _TR_HEX[v & 15]
        v >>= 4


cdef inline int _hexval(char c) noexcept:
    """A lower-case hex digit's value, or -1 (W3C: ids are lower-case hex)."""
    if b"0" <= c <= b"9":
        return c - 48
    if b"a" <= c <= b"f":
        return c - 87
    return -1


cdef bint _hex_nonzero(const char* p, Py_ssize_t n, bint* ok) noexcept:
    """Whether p[0:n] is lower-case hex (into ok) and not all zeros (returned)."""
    cdef Py_ssize_t i
    cdef bint nonzero = False
    cdef int d
    for i in range(n):
        d = _hexval(p[i])
        if d < 0:
            ok[0] = False
            return False
        if d:
            nonzero = True
    ok[0] = True
    return nonzero


cdef int _parse_traceparent(bytes value) noexcept:
    """The trace-flags of a valid traceparent (0-255), or -1. Version 00 must be exactly 55
    characters; a later version (not ff) is read as 00 if its first 55 characters are, followed by
    the end or a `-` (W3C §3.2.4)."""
    cdef const char* p = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef bint ok
    if n < 55:
        return -1
    cdef int v0 = _hexval(p[0]), v1 = _hexval(p[1])
    if v0 < 0 or v1 < 0 or (v0 == 15 and v1 == 15):
        return -1
    if v0 == 0 and v1 == 0:
        if n != 55:
            return -1
    elif n > 55 and p[55] != b"-":
        return -1
    if p[2] != b"-" or p[35] != b"-" or p[52] != b"-":
        return -1
    if not _hex_nonzero(p + 3, 32, &ok) or not ok:
        return -1
    if not _hex_nonzero(p + 36, 16, &ok) or not ok:
        return -1
    cdef int f0 = _hexval(p[53]), f1 = _hexval(p[54])
    if f0 < 0 or f1 < 0:
        return -1
    return f0 * 16 + f1


def parse_traceparent(bytes value not None):
    """(trace_id, parent_id, flags) of a valid traceparent value, else None (for tests)."""
    cdef int flags = _parse_traceparent(value)
    if flags < 0:
        return None
    return value[3:35], value[36:52], flags


@cython.final
cdef class TraceSpan:
    """One request's hop in a trace, as the access log and the span exporter see it."""

    @property
    def trace_id(self):
        """32 lower-case hex digits."""
        return PyBytes_FromStringAndSize(self.trace, 32)

    @property
    def span_id(self):
        """16 hex digits: this hop's span, the upstream's parent."""
        return PyBytes_FromStringAndSize(self.span, 16)

    @property
    def parent_id(self):
        """The client's span (16 hex digits), or None for a new trace."""
        return PyBytes_FromStringAndSize(self.parent, 16) if self.has_parent else None

    @property
    def traceparent(self):
        """The traceparent value sent upstream."""
        cdef char f[2]
        f[0] = _TR_HEX[(self.flags >> 4) & 15]
        f[1] = _TR_HEX[self.flags & 15]
        return b"00-" + self.trace_id + b"-" + self.span_id + b"-" + PyBytes_FromStringAndSize(f, 2)


@cython.final
cdef class TraceFilter(Filter):
    """The per-route tracing filter (see tracing.pxd)."""

    def __init__(self, WallClock clock not None, double sample=1.0, TraceIds ids=None):
        self.request_phase = RQ_ACCESS
        self.clock = clock
        self.ids = ids if ids is not None else TraceIds()
        self.sample_all = sample >= 1.0
        if sample <= 0.0:
            self.sample_below = 0
        elif not self.sample_all:
            self.sample_below = <uint64_t>(sample * 18446744073709551616.0)

    cdef int on_request(self, Request req) except -1:
        cdef list pairs = req.hpairs
        cdef Py_ssize_t i, n = len(pairs)
        cdef bytes name, parent = None
        cdef int parents = 0
        cdef bint has_state = False
        for i in range(0, n, 2):
            name = <bytes>pairs[i]
            if PyBytes_GET_SIZE(name) == 11 and ieq(PyBytes_AS_STRING(name), b"traceparent", 11):
                parent = <bytes>pairs[i + 1]
                parents += 1
            elif PyBytes_GET_SIZE(name) == 10 and ieq(PyBytes_AS_STRING(name), b"tracestate", 10):
                has_state = True
        cdef int flags = _parse_traceparent(parent) if parents == 1 else -1
        cdef TraceSpan span = TraceSpan.__new__(TraceSpan)
        cdef tuple drop
        cdef const char* p
        if flags >= 0:
            p = PyBytes_AS_STRING(parent)
            memcpy(span.trace, p + 3, 32)
            memcpy(span.parent, p + 36, 16)
            span.has_parent = True
            span.sampled = flags & 1
            span.flags = flags
            if has_state:
                span.tracestate = b",".join(req.header_values(b"tracestate"))
            drop = _DROP_PARENT
        else:
            _hex64(span.trace, self.ids.next())
            _hex64(span.trace + 16, self.ids.next())
            span.sampled = self.sample_all or (self.sample_below and self.ids.next() < self.sample_below)
            span.flags = 1 if span.sampled else 0
            drop = _DROP_BOTH if has_state else _DROP_PARENT
        _hex64(span.span, self.ids.next())
        span.start = self.clock.wall(req.t0)
        span.method = req.method
        span.path = req.path
        span.host = req.host
        span.peer = req.peer
        span.route = -1
        # What Request.set_upstream_header does, without two Python calls: the line is added
        # (rendered straight into the new up_extra: one allocation) and the client's headers of
        # that name are not forwarded.
        cdef bytes before = req.up_extra
        cdef Py_ssize_t n0 = PyBytes_GET_SIZE(before)
        cdef bytes extra = PyBytes_FromStringAndSize(NULL, n0 + 70)
        cdef char* line = PyBytes_AS_STRING(extra)
        memcpy(line, PyBytes_AS_STRING(before), n0)
        line += n0
        memcpy(line, b"traceparent: 00-", 16)
        memcpy(line + 16, span.trace, 32)
        line[48] = b"-"
        memcpy(line + 49, span.span, 16)
        line[65] = b"-"
        line[66] = _TR_HEX[(span.flags >> 4) & 15]
        line[67] = _TR_HEX[span.flags & 15]
        line[68] = b"\r"
        line[69] = b"\n"
        req.up_extra = extra
        if req.up_drop is None:
            req.up_drop = drop
        else:
            for name in drop:
                if name not in req.up_drop:
                    req.up_drop = req.up_drop + (name,)
        if req._vars is None:
            req._vars = {"trace": span}
        else:
            req._vars["trace"] = span
        return CONTINUE
