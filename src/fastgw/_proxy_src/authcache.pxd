# Authentication, request side: the hit path of a JWT route's verified-token cache (issue 10),
# compiled so that a token the worker verified before costs one call from the exchange: find the
# one `Authorization: Bearer` header, one dict lookup, one clock read, and the claims, identity
# and forwarded header lines set on the request. Everything else (a miss, verification, another
# token location, refusals, waiting for keys) is the Python authenticator's
# (fastgw.auth.jwt.JwtAuthenticator), which owns the cache dict this filter reads.
#
# Call order: built once per worker and route (fastgw.auth.build); per request on_request(req)
# from ClientCore.run_filters, like any filter of Plan.request_filters.

cimport cython


@cython.final
cdef class TokenCacheFilter(Filter):
    cdef dict _cache              # token -> (valid until, claims, identity, forwarded lines)
    cdef object _slow             # the authenticator's authenticate(req): None, a Reply or an awaitable
    cdef object _check            # the route's `require` check(req) -> Reply | None, or None
    cdef public long long hits


@cython.final
cdef class ApiKeyFilter(Filter):
    # An API-key route whose key comes from a header, compiled the same way: the header (exactly
    # one), its SHA-256 (`digest`, CPython's hash object), one dict lookup by digest confirmed
    # with a constant-time comparison (`equal`, hmac.compare_digest), the consumer set.
    cdef bytes _header            # lower-case header name
    cdef object _digest           # key bytes -> hash object with .digest()
    cdef object _equal            # hmac.compare_digest
    cdef dict _keys               # digest -> (digest, consumer, rendered consumer header line)
    cdef Reply _missing
    cdef Reply _invalid
    cdef Reply _ambiguous
    cdef object _check            # the route's `require` check(req) -> Reply | None, or None
