# Request keys: which bytes of a request name it for a rate limit, a hash balancer or a sticky
# split. One implementation for all of them (fastgw.pipeline.keys builds them from config).
#
# Call order: built once per config; `of(req)` per request returns the key bytes or None when the
# request has no such value (no header, no cookie, no claim); each user decides what None means.

cimport cython

cdef enum KeyKind:
    KEY_IP = 0              # the client address, through trusted proxies
    KEY_ROUTE = 1           # one key per route (the plan's route_key)
    KEY_PATH = 2            # the normalized path
    KEY_HEADER = 3
    KEY_COOKIE = 4
    KEY_QUERY = 5
    KEY_CLAIM = 6           # a claim of the verified token (req.claims)
    KEY_CONSUMER = 7        # the authenticated consumer (req.identity)


@cython.final
cdef class RequestKey:
    cdef readonly int kind
    cdef readonly bytes name            # header/cookie/query name (lower-case header), claim name
    cdef str claim
    cpdef bytes of(self, Request req)
