# Route plans: what a request needs about its route, compiled once per worker generation
# (fastgw.routing) into wire form, so the request path never reads configuration.
#
# The trie's target is a Plan, or a RouteChoice when several routes share a pattern and tell
# requests apart by headers or query parameters; `RouteChoice.select(req)` picks the Plan.
# A Plan sends to one upstream group, or to a Split (weighted upstreams), or answers through its
# responder; `Rewrite.apply` gives the path the upstream sees.

cimport cython


@cython.final
cdef class Rewrite:
    cdef bytes prefix_to             # prefix mode: the replacement for the route's prefix
    cdef tuple parts                 # template mode: literal bytes and param names (str), alternating
    cdef bytes apply(self, Request req, bytes path)


@cython.final
cdef class Split:
    cdef readonly tuple groups
    cdef readonly tuple names
    cdef tuple weights
    cdef list current                # smooth weighted round robin scores
    cdef int total
    cdef RequestKey sticky
    cdef int pick(self, Request req) except -1


cdef class Plan:
    cdef public int index
    cdef public str upstream                 # upstream name ("" when a responder answers)
    cdef public object group                 # the worker's UpstreamGroup, or None
    cdef public Split split                  # weighted upstreams, or None
    cdef public bytes route_key              # the route's rate-limit key (what it matches)
    cdef public Py_ssize_t strip_len         # bytes of prefix to strip, -1: no stripping
    cdef public Rewrite rewrite
    cdef public tuple request_drop           # lower-case names never forwarded on this route
    cdef public bytes request_set            # rendered `name: value\r\n` lines
    cdef public tuple response_drop          # lower-case names never relayed (hidden backend headers)
    cdef public bytes response_set
    cdef public bytes host_header            # None: forward the client's Host
    cdef public tuple request_filters        # Filter, in request phase order
    cdef public tuple response_filters       # Filter, in response phase order
    cdef public Filter responder             # terminal local responder, or None
    cdef public bint websocket               # WebSocket upgrades are forwarded (then tunneled)
    cdef public double ws_idle_timeout       # seconds a tunnel may stay silent


@cython.final
cdef class Condition:
    cdef int kind                    # 0 header, 1 query
    cdef int op                      # 0 exact, 1 present, 2 prefix
    cdef bytes name
    cdef bytes value
    cdef bint test(self, Request req)


@cython.final
cdef class RouteChoice:
    cdef tuple plans
    cdef tuple conditions            # per plan: tuple of Condition, all must hold
    cdef Plan fallback               # the route without conditions, or None (404)
    cdef Plan select(self, Request req)
