# The filter contract (DESIGN §3): what every gateway feature plugs into.
#
# A route's chain is built once at config load (fastgw.pipeline.build) and is immutable: its
# request filters ordered by request phase, its response filters by response phase. Per request:
#
#   request filters, in phase order:  ACCESS -> CORS -> AUTH -> RATE_LIMIT -> CACHE -> TRANSFORM
#       on_request(req) returns CONTINUE, RESPONDED (req.reply holds the answer) or SUSPENDED (the
#       filter waits for I/O and later calls req.resume(result); a filter that never waits never
#       costs a coroutine);
#   terminal: the plan's responder (a local answer: fixed response, redirect, aggregation), else
#       the upstream exchange (balancer, pool, retries);
#   response filters, in phase order:  TRANSFORM -> HIDE -> COMPRESS -> STORE
#       on_response(req, head) may edit the head and ask for the body (head.stream_through),
#       whose pieces then go through on_body(req, data) and on_end(req);
#   log: exactly one record, whatever happened.
#
# A route with no filters pays nothing: the exchange tests `plan.request_filters` and
# `plan.response_filters` for emptiness only.

cimport cython

cdef enum FilterResult:
    CONTINUE = 0
    RESPONDED = 1
    SUSPENDED = 2

cdef enum RequestPhase:
    RQ_NONE = 0
    RQ_ACCESS = 10
    RQ_CORS = 20
    RQ_AUTH = 30
    RQ_RATE_LIMIT = 40
    RQ_CACHE = 50
    RQ_TRANSFORM = 60
    RQ_RESPOND = 100        # terminal local responder

cdef enum ResponsePhase:
    RS_NONE = 0
    RS_TRANSFORM = 10
    RS_HIDE = 20
    RS_COMPRESS = 30
    RS_STORE = 40


cdef class Filter:
    cdef readonly int request_phase         # RQ_NONE: no request part
    cdef readonly int response_phase        # RS_NONE: no response part
    cdef readonly object target             # the Python filter object a PyFilter wraps, else self

    cdef int on_request(self, Request req) except -1
    cdef int on_response(self, Request req, ResponseHead head) except -1
    cdef bytes on_body(self, Request req, bytes data)
    cdef bytes on_end(self, Request req)


@cython.final
cdef class PyFilter(Filter):
    cdef object _on_request
    cdef str _returned_by           # "<class>.on_request", for python_answer's TypeError
    cdef object _on_response
    cdef object _on_body
    cdef object _on_end
