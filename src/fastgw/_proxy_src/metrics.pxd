# Request metrics (DESIGN §3 step 6: exactly one metric update per request), recorded in C.
#
# Each worker has one row of int64 counters in shared memory set up by the master before forking
# (fastgw.metrics.shared); only that worker writes it, so plain adds suffice, and the master sums
# the rows of every slot when it is scraped (a scrape reads memory, never asks a worker). A worker
# that replaces a dead one goes on adding to the same row, so nothing counted is lost.
#
# Call order: `MetricsRecorder.record(req)` once per request, from ClientCore.log(), after which
# the request is over; `WallClock.tick(wall, monotonic)` every sweeper tick (0.1 s).
#
# Row layout (the Python side reads it through METRICS_LAYOUT, never with numbers of its own):
#   per route, and one more block for requests that matched no route, MX_ROUTE_STRIDE values:
#     [MX_REQ + method_class * MX_CLASSES + status_class]   requests
#     [MX_DUR + bucket], [MX_DUR_SUM]                        total time: bucket counts, sum in µs
#     [MX_UP + bucket], [MX_UP_SUM]                          upstream time (send -> response head)
#     [MX_BYTES]                                             response body bytes sent
#     [MX_RETRIES]                                           attempts beyond the first
#   then one value per upstream: retries (`retries_at`), then what fastgw.metrics lays out after.
# Buckets are not cumulative here (one add per request); the master makes them cumulative, and
# computes each histogram's count as the sum of its buckets, so `+Inf` always equals `_count`.

from libc.stdint cimport int64_t

cimport cython

cdef enum:
    MX_METHODS = 8          # GET HEAD POST PUT DELETE PATCH OPTIONS, other
    MX_CLASSES = 6          # other, 1xx, 2xx, 3xx, 4xx, 5xx
    MX_BUCKETS = 16         # 15 latency bounds and +Inf
    MX_REQ = 0
    MX_DUR = 48             # MX_METHODS * MX_CLASSES
    MX_DUR_SUM = 64
    MX_UP = 65
    MX_UP_SUM = 81
    MX_BYTES = 82
    MX_RETRIES = 83
    MX_ROUTE_STRIDE = 84


@cython.final
cdef class WallClock:
    """Wall-clock time without a system call: the monotonic time the exchange already reads,
    plus the offset between the two clocks taken at each sweeper tick."""
    cdef double offset           # wall - monotonic, seconds, as of the last tick
    cdef double last             # the latest time handed out: small steps back are held

    cdef double wall(self, double mono) noexcept


@cython.final
cdef class MetricsRecorder:
    cdef int64_t* row            # this worker's row; NULL: request metrics are off
    cdef object _view            # the buffer `row` points into, kept exported
    cdef Py_ssize_t nroutes      # configured routes; block `nroutes` is for unrouted requests
    cdef Py_ssize_t retries_at   # offset of the per-upstream retries
    cdef dict group_index        # UpstreamGroup -> its index among the upstreams
    cdef readonly WallClock clock
    cdef list spans              # finished sampled spans for the exporter; None: no export
    cdef Py_ssize_t max_spans
    cdef public long long spans_dropped

    cdef int record(self, Request req) except -1
    cdef int finish_span(self, Request req, object span, double now) except -1


@cython.final
cdef class StatBlock:
    """A declared stat group's counters in this worker's row (fastgw.metrics.registry): compiled
    filters add with `add` (no bounds check: offsets come from StatGroup.at), Python code with
    `inc`."""
    cdef int64_t* p
    cdef object _view
    cdef readonly Py_ssize_t size

    cdef inline void add(self, Py_ssize_t i, int64_t n) noexcept
