# W3C Trace Context (traceparent / tracestate), per request, compiled.
#
# A route of a gateway with a `tracing` section gets a TraceFilter (fastgw.tracing.build); other
# routes have none and pay nothing. Per request, on_request(req):
#   - reads the client's `traceparent` (exactly one, version 00 or a later one read as 00) and
#     keeps its trace id and flags, or starts a new trace (random id, sampled by `sample`);
#   - makes this hop's span id and sends `traceparent: 00-<trace>-<span>-<flags>` upstream in place
#     of the client's; `tracestate` passes unchanged with a valid parent and is dropped when the
#     trace restarts (W3C §3.3: a vendor that cannot read traceparent must not pass tracestate);
#   - leaves a TraceSpan in `req.vars["trace"]`, which the access log reads the trace id from and
#     MetricsRecorder.record ends (end time, status), queueing it for export when sampled.
# Ids come from a per-worker xoshiro256** generator seeded from os.urandom in the worker: no
# system call and no Python object per id beyond the bytes sent.

from libc.stdint cimport uint64_t

cimport cython


@cython.final
cdef class TraceIds:
    cdef uint64_t s[4]
    cdef uint64_t next(self) noexcept


@cython.final
cdef class TraceSpan:
    # The ids as hex text in C arrays: copied into the upstream header and the log record without
    # a Python object each (`trace_id`, `span_id`, `parent_id` make bytes for Python and export).
    cdef char trace[32]                  # 32 lower-case hex digits
    cdef char span[16]                   # 16 hex digits: this hop, the upstream's parent
    cdef char parent[16]                 # the client's span, when has_parent
    cdef bint has_parent                 # False: a new trace
    cdef readonly bytes tracestate       # the client's tracestate when the parent was kept, or None
    cdef readonly int flags              # trace-flags sent upstream
    cdef readonly bint sampled
    cdef readonly double start           # wall-clock seconds
    cdef readonly double end             # wall-clock seconds, 0 until the request ends
    cdef readonly int status
    cdef readonly int route              # route index, -1 for none
    cdef readonly bytes method
    cdef readonly bytes path
    cdef readonly bytes host
    cdef readonly bytes peer
    cdef readonly bytes rid
    cdef readonly str upstream
    cdef readonly Py_ssize_t sent


@cython.final
cdef class TraceFilter(Filter):
    cdef TraceIds ids
    cdef uint64_t sample_below           # a new trace is sampled when its draw is below this
    cdef bint sample_all
    cdef WallClock clock
