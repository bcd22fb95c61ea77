# The compiled local-scope rate-limit filter (see ratelimit.pxd for why and when it is used).

from libc.string cimport memcpy

cdef enum:
    _RL_LINES_MAX = 192           # retry-after + limit + remaining + reset lines, int64 values


cdef inline long long _rl_ceil_s(long long ns) noexcept:
    return (ns + 999999999) // 1000000000 if ns > 0 else 0


cdef inline Py_ssize_t _rl_put(char* out, const char* text, Py_ssize_t n) noexcept:
    memcpy(out, text, n)
    return n


cdef inline Py_ssize_t _rl_put_int(char* out, long long v) noexcept:
    """Decimal digits of `v` (>= 0; clamped) at `out`: snprintf costs ten times as much."""
    cdef char digits[20]
    cdef Py_ssize_t n = 0, i
    if v <= 0:
        out[0] = b"0"
        return 1
    while v:
        digits[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    for i in range(n):
        out[i] = digits[n - 1 - i]
    return n


cdef bytes _rl_lines(bytes limit_line, long long retry_s, long long remaining, long long reset_s):
    """`retry-after` (when retry_s > 0), then the RateLimit-* lines, in one allocation."""
    cdef char buf[_RL_LINES_MAX]
    cdef Py_ssize_t n = 0
    if retry_s > 0:
        n += _rl_put(buf + n, b"retry-after: ", 13)
        n += _rl_put_int(buf + n, retry_s)
        n += _rl_put(buf + n, b"\r\n", 2)
    n += _rl_put(buf + n, PyBytes_AS_STRING(limit_line), PyBytes_GET_SIZE(limit_line))
    n += _rl_put(buf + n, b"ratelimit-remaining: ", 21)
    n += _rl_put_int(buf + n, remaining)
    n += _rl_put(buf + n, b"\r\nratelimit-reset: ", 19)
    n += _rl_put_int(buf + n, reset_s)
    n += _rl_put(buf + n, b"\r\n", 2)
    return PyBytes_FromStringAndSize(buf, n)


cdef class LocalLimitFilter(Filter):
    """The request filter of a route whose only limit is local-scope: the key (a RequestKey, or
    the route's own key), one decision in the shared table, and the response lines; 429 with
    Retry-After when it refuses (unless shadow mode). A request without its key's value (no such
    header, claim or consumer) is charged to its client address in a namespace of its own (NUL
    before the address), so that omitting a header is never a way around a limit."""

    def __init__(self, BucketTable table not None, Limit limit not None, bytes limit_id not None,
                 bytes limit_line not None, RequestKey key not None, tuple route_keys not None, bint enforce):
        if PyBytes_GET_SIZE(limit_line) > 64:
            raise ValueError("limit_line is longer than 64 bytes")
        self.request_phase = RQ_RATE_LIMIT
        self._table = table
        self._limit = limit
        self._limit_id = limit_id
        self._limit_line = limit_line
        self._route_keys = route_keys
        self._enforce = enforce
        self._key = key

    cdef int on_request(self, Request req) except -1:
        cdef BucketTable table = self._table
        cdef uint64_t key
        cdef bytes value
        if self._key.kind == KEY_ROUTE:
            key = self._route_keys[(<Plan>req.plan).index]
        else:
            value = self._key.of(req)
            if value is None:
                value = b"\0" + req.client_ip()
            key = table.key_hash(self._limit_id, value)
        if table.consume(key, self._limit, 1):
            self.allowed += 1
        elif self._enforce:
            self.refused += 1
            req.reply = Reply.make_error(429, None, _rl_lines(self._limit_line, _rl_ceil_s(table.retry_after_ns), 0,
                                                              _rl_ceil_s(table.reset_after_ns)))
            return RESPONDED
        else:
            self.shadow_refused += 1
        req.resp_extra = req.resp_extra + _rl_lines(self._limit_line, 0, table.remaining,
                                                    _rl_ceil_s(table.reset_after_ns))
        return CONTINUE
