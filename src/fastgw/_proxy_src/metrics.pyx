# Request metrics and the wall clock of log records and spans (see metrics.pxd for the layout
# and the call order).
#
# Why compiled, and why here: the update runs once per request, so it must cost a few hundred
# instructions at most (issue 13 allows 3% of a request's CPU). It touches only C integers in the
# worker's own shared-memory row: no Python object is made, no lock taken, nothing sent.

from time import time as _time_time

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.string cimport memcmp

cdef int64_t _BOUNDS_US[15]
_BOUNDS_US[:] = [250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
                 1000000, 2500000, 5000000, 10000000]

LATENCY_BOUNDS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                  1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the latency histograms' buckets, +Inf left out."""
METHOD_CLASSES = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
METRICS_LAYOUT = {
    "methods": MX_METHODS, "classes": MX_CLASSES, "buckets": MX_BUCKETS, "requests": MX_REQ,
    "duration": MX_DUR, "duration_sum": MX_DUR_SUM, "upstream": MX_UP, "upstream_sum": MX_UP_SUM,
    "bytes": MX_BYTES, "retries": MX_RETRIES, "route_stride": MX_ROUTE_STRIDE,
}
"""Offsets of a route's block in a metrics row, for the Python side (fastgw.metrics)."""


cdef inline int _method_class(bytes method) noexcept:
    if method is None:
        return 7
    cdef const char* p = PyBytes_AS_STRING(method)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(method)
    if n == 3:
        if p[0] == b"G" and p[1] == b"E" and p[2] == b"T":
            return 0
        if p[0] == b"P" and p[1] == b"U" and p[2] == b"T":
            return 3
    elif n == 4:
        if p[0] == b"H" and p[1] == b"E" and p[2] == b"A" and p[3] == b"D":
            return 1
        if p[0] == b"P" and p[1] == b"O" and p[2] == b"S" and p[3] == b"T":
            return 2
    elif n == 6:
        if memcmp(p, b"DELETE", 6) == 0:
            return 4
    elif n == 5:
        if memcmp(p, b"PATCH", 5) == 0:
            return 5
    elif n == 7:
        if memcmp(p, b"OPTIONS", 7) == 0:
            return 6
    return 7


cdef inline int _bucket(int64_t us) noexcept:
    cdef int i = 0
    while i < 15 and us > _BOUNDS_US[i]:
        i += 1
    return i


@cython.final
cdef class WallClock:

    def __init__(self):
        self.tick(_time_time(), _now())

    def tick(self, double wall, double mono):
        """Re-anchors on the system clock (every sweeper tick)."""
        self.offset = wall - mono

    cdef double wall(self, double mono) noexcept:
        cdef double t = mono + self.offset
        # The anchor moves a little at each tick (the two clocks drift apart): a record is never
        # stamped before the one logged just ahead of it. A real step back of the system clock
        # (over a second) is followed.
        if t < self.last and self.last - t < 1.0:
            return self.last
        self.last = t
        return t

    def now(self):
        """The wall-clock time (seconds) as records and spans are stamped now."""
        return self.wall(_now())



@cython.final
cdef class MetricsRecorder:
    """Writes each request's counts into this worker's row; see metrics.pxd."""

    def __init__(self, WallClock clock not None, row=None, Py_ssize_t nroutes=0, Py_ssize_t retries_at=0,
                 dict group_index=None):
        """`row`: a writable int64 buffer (the worker's row), or None to record no metrics."""
        cdef int64_t[::1] view
        self.clock = clock
        self.nroutes = nroutes
        self.retries_at = retries_at
        self.group_index = group_index if group_index is not None else {}
        if row is not None:
            view = row
            if view.shape[0] < (nroutes + 1) * MX_ROUTE_STRIDE:
                raise ValueError("the metrics row is smaller than the route blocks")
            self._view = view
            self.row = &view[0]

    def set_span_queue(self, list spans, Py_ssize_t max_spans):
        """Where sampled spans go when their request ends (the exporter's queue), and its bound:
        beyond it a span is dropped and counted in `spans_dropped`."""
        self.spans = spans
        self.max_spans = max_spans

    def record_request(self, Request req not None):
        """`record` for tests and embedders (the exchange calls the cdef method)."""
        self.record(req)

    cdef int record(self, Request req) except -1:
        cdef int64_t* row = self.row
        cdef object v = req._vars
        cdef PyObject* span = NULL
        if v is not None:
            span = PyDict_GetItem(v, "trace")
        if row == NULL and span == NULL:
            return 0
        cdef double now = _now()
        if span != NULL:
            self.finish_span(req, <object>span, now)
        if row == NULL:
            return 0
        cdef object plan = req.plan
        cdef Py_ssize_t r = self.nroutes if plan is None else (<Plan>plan).index
        if r < 0 or r > self.nroutes:
            r = self.nroutes            # a plan not of this configuration: never write past the row
        cdef int64_t* b = row + r * MX_ROUTE_STRIDE
        cdef int status = req.status
        cdef int cls = status // 100 if 100 <= status < 600 else 0
        b[MX_REQ + _method_class(req.method) * MX_CLASSES + cls] += 1
        cdef int64_t us = <int64_t>((now - req.t0) * 1e6)
        if us < 0:
            us = 0
        b[MX_DUR + _bucket(us)] += 1
        b[MX_DUR_SUM] += us
        if req.upstream_time > 0.0:
            us = <int64_t>(req.upstream_time * 1e6)
            b[MX_UP + _bucket(us)] += 1
            b[MX_UP_SUM] += us
        b[MX_BYTES] += req.sent
        cdef object index
        if req.attempts > 1:
            b[MX_RETRIES] += req.attempts - 1
            index = self.group_index.get(req.group)
            if index is not None:
                row[self.retries_at + <Py_ssize_t>index] += req.attempts - 1
        return 0

    cdef int finish_span(self, Request req, object obj, double now) except -1:
        if type(obj) is not TraceSpan:
            return 0
        cdef TraceSpan span = <TraceSpan>obj
        span.end = self.clock.wall(now)
        span.status = req.status
        span.upstream = req.upstream
        span.sent = req.sent
        span.rid = req.rid
        span.route = (<Plan>req.plan).index if req.plan is not None else -1
        if not span.sampled or self.spans is None:
            return 0
        if len(self.spans) < self.max_spans:
            self.spans.append(span)
        else:
            self.spans_dropped += 1
        return 0


@cython.final
cdef class StatBlock:

    def __init__(self, view):
        cdef int64_t[::1] v = view
        self._view = v
        self.size = v.shape[0]
        self.p = &v[0] if self.size else NULL

    cdef inline void add(self, Py_ssize_t i, int64_t n) noexcept:
        self.p[i] += n

    def inc(self, Py_ssize_t i, long long n=1):
        """Adds `n` to counter `i` of the block."""
        if not 0 <= i < self.size:
            raise IndexError(f"counter {i} is outside the block (size {self.size})")
        self.p[i] += n

    def __getitem__(self, Py_ssize_t i):
        if not 0 <= i < self.size:
            raise IndexError(i)
        return self.p[i]
