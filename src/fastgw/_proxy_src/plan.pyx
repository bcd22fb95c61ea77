# Route plans (see plan.pxd).

import re as _re

_PARAM_SPLIT = _re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\*?\}")


cdef class Plan:
    """Everything a request needs about its route, in wire form, built once per worker
    generation (fastgw.routing.compile_routes)."""

    def __init__(self, int index, str upstream=""):
        self.index = index
        self.upstream = upstream
        self.strip_len = -1
        self.route_key = b""
        self.request_drop = ()
        self.request_set = b""
        self.response_drop = ()
        self.response_set = b""
        self.request_filters = ()
        self.response_filters = ()

    def __repr__(self):
        return f"Plan(route {self.index}, upstream {self.upstream!r})"


@cython.final
cdef class Rewrite:
    """The path the upstream sees: the route's prefix replaced (`prefix`), or a template filled
    from the route's `{param}` captures (`template`)."""

    def __init__(self, str prefix=None, str template=None):
        if (prefix is None) == (template is None):
            raise ValueError("a rewrite is a prefix or a template")
        self.prefix_to = prefix.rstrip("/").encode() if prefix is not None else None
        if template is not None:
            parts = []
            for i, piece in enumerate(_PARAM_SPLIT.split(template)):
                parts.append(piece.encode() if i % 2 == 0 else piece)
            self.parts = tuple(parts)

    cdef bytes apply(self, Request req, bytes path):
        cdef Py_ssize_t cut
        cdef bytes rest
        if self.prefix_to is not None:
            cut = (<RouteMatch>req.params).prefix_len if req.params is not None else 0
            rest = path[cut:]
            if not self.prefix_to:
                return rest or b"/"
            return self.prefix_to + rest
        params = (<RouteMatch>req.params).params if req.params is not None else None
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part)
            else:
                out.append(params[part].encode("latin-1"))
        return b"".join(out)


@cython.final
cdef class Split:
    """A route's weighted split between upstreams (canaries, A/B). Without a sticky key the
    picks follow smooth weighted round robin, so any span of sum(weights) requests gets exactly
    the weights; with one, a request's key hashes to an upstream (stable across workers, hosts
    and restarts) and a request without the key falls back to the round robin."""

    def __init__(self, groups, names, weights, RequestKey sticky=None):
        self.groups = tuple(groups)
        self.names = tuple(names)
        self.weights = tuple(int(w) for w in weights)
        self.total = sum(self.weights)
        if not self.groups or len(self.groups) != len(self.weights) or self.total <= 0:
            raise ValueError("a split needs upstreams with positive weights")
        self.current = [0] * len(self.groups)
        self.sticky = sticky

    cdef int pick(self, Request req) except -1:
        cdef bytes key
        cdef uint64_t h
        cdef int i, point, best = 0, n = len(self.weights)
        cdef list current
        if self.sticky is not None:
            key = self.sticky.of(req)
            if key is not None:
                h = fg_hash(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), 0x5f67775f73706c74)
                point = <int>(h % <uint64_t>self.total)
                for i in range(n):
                    point -= <int>self.weights[i]
                    if point < 0:
                        return i
        current = self.current
        for i in range(n):
            current[i] = <int>current[i] + <int>self.weights[i]
            if <int>current[i] > <int>current[best]:
                best = i
        current[best] = <int>current[best] - self.total
        return best

    def choose(self, Request req):
        """The index of the upstream `req` goes to (for tests)."""
        return self.pick(req)


@cython.final
cdef class Condition:
    """One request condition of a route: a header or query parameter that must be present, equal
    a value, or start with one. Header names are compared case-insensitively, values exactly."""

    def __init__(self, str kind, str name, str op, str value=None):
        self.kind = {"header": 0, "query": 1}[kind]
        self.op = {"exact": 0, "present": 1, "prefix": 2}[op]
        self.name = name.lower().encode("latin-1") if self.kind == 0 else name.encode("latin-1")
        self.value = value.encode("latin-1") if value is not None else None

    cdef bint test(self, Request req):
        cdef bytes got
        if self.kind == 0:
            got = req.header(self.name)
        else:
            got = _query_value(req.query, self.name)
        if got is None:
            return False
        if self.op == 1:
            return True
        if self.op == 0:
            return got == self.value
        return got.startswith(self.value)


cdef bytes _query_value(bytes query, bytes name):
    """NAME's first value in the query, b"" for a bare `?name`, None when absent."""
    if not query:
        return None
    cdef bytes part, k, v
    for part in query[1:].split(b"&"):
        k, sep, v = part.partition(b"=")
        if k == name:
            return v
    return None


@cython.final
cdef class RouteChoice:
    """Routes that share a pattern (host, path or prefix, methods) and differ by request
    conditions. `plans` are tried in order (the loader orders them: most conditions first, then
    file order); the first whose conditions all hold wins, else `fallback`, the pattern's route
    without conditions, else no route (404)."""

    def __init__(self, plans, conditions, Plan fallback=None):
        self.plans = tuple(plans)
        self.conditions = tuple(tuple(c) for c in conditions)
        self.fallback = fallback

    cdef Plan select(self, Request req):
        cdef Py_ssize_t i
        cdef Condition cond
        cdef bint ok
        for i in range(len(self.plans)):
            ok = True
            for cond in <tuple>self.conditions[i]:
                if not cond.test(req):
                    ok = False
                    break
            if ok:
                return <Plan>self.plans[i]
        return self.fallback

    def choose(self, Request req):
        """The plan `req` goes to, or None (for tests)."""
        return self.select(req)
