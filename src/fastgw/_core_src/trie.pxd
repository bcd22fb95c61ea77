# Routing trie (DESIGN §3 step 2, §8 "Route matching").
#
# Call order for Cython users:
#   config time:   t = RouteTrie(); t.add(target, path=... | prefix=..., methods=..., host=...)
#                  for every route, then optionally t.freeze(); add() validates and may raise.
#   request time:  m = t.match(host, method, path) with the raw Host header bytes, the method
#                  bytes and the path already passed through normalize_path(); never raises on
#                  request data. The returned RouteMatch is shared (404, 405, routes without
#                  params): read it, never keep per-request state on it.
#
# Layout: one _HostRoutes per host key (exact name, `*.suffix`, or none). Within it, literal paths
# are one dict lookup; `{param}` / `{name*}` patterns live in a segment trie walked depth-first
# over the path buffer (literal child, then param child, then catch-all); prefixes live in a second
# literal trie walked once, longest match tried first. Several routes on one pattern share an
# _Endpoint that dispatches on the method.

cimport cython
from cpython.object cimport PyObject

cdef enum:
    # Bound on pattern segments, so the per-match span arrays and the recursion fit on the C stack.
    _MAX_SEGMENTS = 64
    # Matches of routes with up to this many params record spans and decode on first `.params`.
    _LAZY_PARAMS = 8


cdef struct _Miss:
    # Endpoints whose pattern matched the path but not the method, for the 405 answer. `first` and
    # `collect` are borrowed: the endpoint is owned by the trie, the set by the caller's frame.
    # `collect` is NULL while searching, and a set to fill when merging a multi-pattern Allow.
    PyObject* first
    PyObject* collect
    Py_ssize_t count


@cython.final
cdef class RouteMatch:
    cdef readonly int status
    cdef readonly object target
    cdef dict _params               # decoded params, or None (no params, or not decoded yet)
    cdef bytes _path                # the path `_spans` index into, until `.params` decodes it
    cdef tuple _names
    cdef Py_ssize_t _nspans
    cdef Py_ssize_t _spans[2 * _LAZY_PARAMS]
    cdef readonly bytes allow
    cdef readonly Py_ssize_t prefix_len

    @staticmethod
    cdef RouteMatch new(int status, object target, dict params, bytes allow, Py_ssize_t prefix_len)


@cython.final
cdef class _Route:
    cdef object target
    cdef RouteMatch match           # prebuilt 200 answer; None for routes with params
    cdef tuple names                # param names (str) in pattern order
    cdef Py_ssize_t nparams
    cdef unsigned char depths[_MAX_SEGMENTS]  # segment index of each param, in `names` order

    cdef RouteMatch _answer(self, bytes path, Py_ssize_t* starts, Py_ssize_t* ends)


@cython.final
cdef class _Endpoint:
    cdef dict by_method             # method bytes -> _Route
    cdef _Route any_method          # the route taking every method, or None
    cdef frozenset methods          # keys of by_method, for Allow unions
    cdef RouteMatch m405            # prebuilt answer when only this endpoint matched the path

    cdef _Route _select(self, bytes method, _Miss* miss)


@cython.final
cdef class _Node:
    cdef list keys                  # literal child segments (bytes), sorted for binary search
    cdef list kids                  # child _Node of each key
    cdef _Node param                # child for a `{name}` segment, or None
    cdef _Endpoint catchall         # `{name*}` ending here, or None
    cdef _Endpoint end              # pattern (or prefix) ending exactly here, or None

    cdef _Node _child(self, const char* seg, Py_ssize_t n)


@cython.final
cdef class _HostRoutes:
    cdef dict exact                 # full path bytes -> _Endpoint
    cdef _Node params               # root of the `{param}` trie
    cdef _Node prefixes             # root of the prefix trie
    cdef bint has_params
    cdef bint has_prefixes
    cdef dict multi405              # Allow bytes -> RouteMatch, for 405s merging several patterns

    cdef RouteMatch _find(self, bytes method, bytes path, _Miss* miss)
    cdef RouteMatch _match(self, bytes method, bytes path)


@cython.final
cdef class RouteTrie:
    cdef dict _exact_hosts          # host bytes -> _HostRoutes
    cdef list _wild_suffixes        # b".example.com" for `*.example.com`, longest first
    cdef list _wild_routes          # _HostRoutes of each suffix
    cdef _HostRoutes _any_host
    cdef bint _has_hosts
    cdef bint _frozen

    cpdef RouteMatch match(self, bytes host, bytes method, bytes path)
    cdef RouteMatch _match_hosts(self, bytes host, bytes method, bytes path)
    cdef _HostRoutes _table(self, tuple hkey, bint create)
