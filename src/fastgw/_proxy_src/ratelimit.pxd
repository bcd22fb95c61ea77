# Rate limiting, request side: the gateway's filter for a route with one local-scope limit (the
# common case), compiled so that a limited request costs one call from the exchange: its key, one
# BucketTable.consume, and the RateLimit-* lines rendered in C. Several limits on a route and
# cluster scope go through the Python filter (fastgw.ratelimit.filter), which owns this object's
# counters too.
#
# Call order: built once per worker and limit (fastgw.ratelimit.filter.LocalLimit); per request
# on_request(req) from ClientCore.run_filters, like any filter of Plan.request_filters.

cimport cython


@cython.final
cdef class LocalLimitFilter(Filter):
    cdef BucketTable _table
    cdef Limit _limit
    cdef bytes _limit_id
    cdef bytes _limit_line        # b"ratelimit-limit: <burst>\r\n"
    cdef RequestKey _key
    cdef tuple _route_keys        # table keys by route index, for the `route` key
    cdef bint _enforce
    cdef public long long allowed
    cdef public long long refused
    cdef public long long shadow_refused
