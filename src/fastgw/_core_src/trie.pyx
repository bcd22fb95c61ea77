# Routing trie (DESIGN §3 step 2, §8 "Route matching"); the contract and call order are in
# trie.pxd. Everything under "config time" runs once per route at load and may be slow and
# allocate; everything under "request time" runs per request and allocates only for routes with
# params (their dict and RouteMatch) and for the rare 405 that merges several patterns.

import re
from bisect import bisect_left as _bisect_left
from collections.abc import Iterable

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memcmp

cdef extern from "Python.h":
    # Borrowed-pointer accessors, so the binary search over child keys does no refcounting.
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE"(PyObject*)
    const char* _bytes_data "PyBytes_AS_STRING"(PyObject*)
    PyObject* _list_item "PyList_GET_ITEM"(PyObject*, Py_ssize_t)


# ---------------------------------------------------------------------------------------------
# Results

@cython.freelist(32)
cdef class RouteMatch:
    """Immutable so that one prebuilt instance per route (and one 404) can be handed to every
    request; only the trie builds them, which is what makes that sharing safe."""

    def __init__(self, *args, **kwargs):
        raise TypeError("RouteMatch is built only by RouteTrie.match()")

    @staticmethod
    cdef RouteMatch new(int status, object target, dict params, bytes allow, Py_ssize_t prefix_len):
        cdef RouteMatch m = RouteMatch.__new__(RouteMatch)
        m.status = status
        m.target = target
        m._params = params
        m.allow = allow
        m.prefix_len = prefix_len
        return m

    @property
    def params(self):
        """{name: value} of the route's params (values still percent-encoded, as in the path), or
        None for a route without params. Decoded on first use: the gateway's own request path
        never needs them, so a param route costs no dict or strings per request."""
        cdef Py_ssize_t k
        cdef dict params
        if self._path is not None:
            params = {}
            for k in range(self._nspans):
                params[self._names[k]] = PyUnicode_DecodeLatin1(
                    PyBytes_AS_STRING(self._path) + self._spans[2 * k], self._spans[2 * k + 1], NULL
                )
            self._params = params
            self._path = None
        return self._params

    def __repr__(self) -> str:
        return (f"RouteMatch(status={self.status}, target={self.target!r}, params={self.params!r}, "
                f"allow={self.allow!r}, prefix_len={self.prefix_len})")


cdef RouteMatch _NOT_FOUND = RouteMatch.new(404, None, None, None, 0)


# ---------------------------------------------------------------------------------------------
# Request time

cdef class _Route:
    """One add() call: its target, its prebuilt answer, and where its params sit in the path."""

    cdef RouteMatch _answer(self, bytes path, Py_ssize_t* starts, Py_ssize_t* ends):
        if self.match is not None:
            return self.match
        cdef const char* buf = PyBytes_AS_STRING(path)
        cdef Py_ssize_t k, d
        cdef RouteMatch m
        if self.nparams <= _LAZY_PARAMS:
            m = RouteMatch.new(200, self.target, None, None, 0)
            m._path = path
            m._names = self.names
            m._nspans = self.nparams
            for k in range(self.nparams):
                d = self.depths[k]
                m._spans[2 * k] = starts[d]
                m._spans[2 * k + 1] = ends[d] - starts[d]
            return m
        cdef dict params = {}
        for k in range(self.nparams):
            d = self.depths[k]
            params[self.names[k]] = PyUnicode_DecodeLatin1(buf + starts[d], ends[d] - starts[d], NULL)
        return RouteMatch.new(200, self.target, params, None, 0)


cdef class _Endpoint:
    """All routes sharing one pattern; add() guarantees their methods are disjoint, so the method
    picks at most one of them."""

    def __cinit__(self):
        self.by_method = {}
        self.methods = frozenset()

    cdef _Route _select(self, bytes method, _Miss* miss):
        if self.any_method is not None:
            return self.any_method
        cdef PyObject* r = PyDict_GetItem(self.by_method, method)
        if r != NULL:
            return <_Route>r
        if miss.collect != NULL:
            (<set>miss.collect).update(self.methods)
        else:
            if miss.count == 0:
                miss.first = <PyObject*>self
            miss.count += 1
        return None


cdef class _Node:
    """A segment position shared by the patterns that agree on every earlier segment."""

    def __cinit__(self):
        self.keys = []
        self.kids = []

    cdef _Node _child(self, const char* seg, Py_ssize_t n):
        cdef Py_ssize_t lo = 0, hi = len(self.keys), mid, klen
        cdef PyObject* key
        cdef int c
        while lo < hi:
            mid = (lo + hi) >> 1
            key = _list_item(<PyObject*>self.keys, mid)
            klen = _bytes_size(key)
            c = memcmp(_bytes_data(key), seg, klen if klen < n else n)
            if c == 0:
                c = (klen > n) - (klen < n)
            if c == 0:
                return <_Node>_list_item(<PyObject*>self.kids, mid)
            if c < 0:
                lo = mid + 1
            else:
                hi = mid
        return None


cdef _Route _walk(_Node node, const char* buf, Py_ssize_t n, Py_ssize_t pos, Py_ssize_t depth,
                  Py_ssize_t* starts, Py_ssize_t* ends, bytes method, _Miss* miss):
    """Depth-first in precedence order (literal, then `{param}`, then `{name*}`), so the first
    route found is the winner and a method mismatch simply backtracks to the next candidate."""
    cdef _Route r
    cdef _Node child
    if pos == n:
        return node.end._select(method, miss) if node.end is not None else None
    cdef Py_ssize_t start = pos + 1
    cdef Py_ssize_t end = _segment_end(buf, start, n)
    child = node._child(buf + start, end - start)
    if child is not None:
        r = _walk(child, buf, n, end, depth + 1, starts, ends, method, miss)
        if r is not None:
            return r
    if node.param is not None and end > start:
        starts[depth] = start
        ends[depth] = end
        r = _walk(node.param, buf, n, end, depth + 1, starts, ends, method, miss)
        if r is not None:
            return r
    if node.catchall is not None:
        starts[depth] = start
        ends[depth] = n
        return node.catchall._select(method, miss)
    return None


cdef _Route _walk_prefixes(_Node node, const char* buf, Py_ssize_t n, bytes method, _Miss* miss):
    """One walk down the literal trie collects every prefix of the path; trying them deepest first
    is "longest prefix wins" without comparing lengths."""
    cdef PyObject* found[_MAX_SEGMENTS + 1]
    cdef Py_ssize_t k = 0, pos = 0, end
    cdef _Route r
    while node is not None:
        if node.end is not None:
            found[k] = <PyObject*>node.end
            k += 1
        if pos == n:
            break
        end = _segment_end(buf, pos + 1, n)
        node = node._child(buf + pos + 1, end - pos - 1)
        pos = end
    while k > 0:
        k -= 1
        r = (<_Endpoint>found[k])._select(method, miss)
        if r is not None:
            return r
    return None


cdef class _HostRoutes:
    """The routes of one host key, searched in the order DESIGN §8 gives: exact, params, prefix."""

    def __cinit__(self):
        self.exact = {}
        self.params = _Node()
        self.prefixes = _Node()
        self.multi405 = {}

    cdef RouteMatch _find(self, bytes method, bytes path, _Miss* miss):
        cdef const char* buf = PyBytes_AS_STRING(path)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(path)
        cdef Py_ssize_t starts[_MAX_SEGMENTS]
        cdef Py_ssize_t ends[_MAX_SEGMENTS]
        cdef _Route r
        cdef PyObject* ep = PyDict_GetItem(self.exact, path)
        if ep != NULL:
            r = (<_Endpoint>ep)._select(method, miss)
            if r is not None:
                return r.match
        if self.has_params:
            r = _walk(self.params, buf, n, 0, 0, starts, ends, method, miss)
            if r is not None:
                return r._answer(path, starts, ends)
        if self.has_prefixes:
            r = _walk_prefixes(self.prefixes, buf, n, method, miss)
            if r is not None:
                return r.match
        return None

    cdef RouteMatch _match(self, bytes method, bytes path):
        cdef _Miss miss
        miss.first = NULL
        miss.count = 0
        miss.collect = NULL
        cdef RouteMatch m = self._find(method, path, &miss)
        if m is not None:
            return m
        if miss.count == 0:
            return _NOT_FOUND
        if miss.count == 1:
            return (<_Endpoint>miss.first).m405
        cdef set allow = set()
        miss.collect = <PyObject*>allow
        self._find(method, path, &miss)
        cdef bytes allow_bytes = b", ".join(sorted(allow))
        m = self.multi405.get(allow_bytes)
        if m is None:
            m = RouteMatch.new(405, None, None, allow_bytes, 0)
            self.multi405[allow_bytes] = m
        return m


cdef inline bint _is_upper(char c) noexcept nogil:
    return b'A' <= c <= b'Z'


cdef bytes _host_key(bytes host):
    """The Host header as received, reduced to the form route hosts are stored in. Returns `host`
    itself in the common case (lower-case, no port) so the lookup allocates nothing."""
    cdef const char* buf = PyBytes_AS_STRING(host)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(host)
    cdef Py_ssize_t end = n, i
    cdef bint upper = False
    if n > 0 and buf[0] == b'[':
        for i in range(n):
            if buf[i] == b']':
                end = i + 1
                break
    else:
        for i in range(n):
            if buf[i] == b':':
                end = i
                break
    if end > 0 and buf[end - 1] == b'.':
        end -= 1
    for i in range(end):
        if _is_upper(buf[i]):
            upper = True
            break
    if not upper:
        return host if end == n else PyBytes_FromStringAndSize(buf, end)
    cdef bytes key = PyBytes_FromStringAndSize(NULL, end)
    cdef char* out = <char*>PyBytes_AS_STRING(key)
    for i in range(end):
        out[i] = buf[i] + 32 if _is_upper(buf[i]) else buf[i]
    return key


cdef class RouteTrie:
    """The compiled route table of one config generation: built once with add(), then matched
    per request without allocating for routes without params."""

    def __cinit__(self):
        self._exact_hosts = {}
        self._wild_suffixes = []
        self._wild_routes = []
        self._any_host = _HostRoutes()

    cpdef RouteMatch match(self, bytes host, bytes method, bytes path):
        """`path` must already be normalized (normalize_path); `host` is the Host header as
        received. Never raises on request data: 404 and 405 are answers, not errors."""
        if host is None or method is None or path is None:
            raise TypeError("match() arguments must be bytes, not None")
        if PyBytes_GET_SIZE(path) == 0 or PyBytes_AS_STRING(path)[0] != b'/':
            return _NOT_FOUND
        if not self._has_hosts:
            return self._any_host._match(method, path)
        return self._match_hosts(host, method, path)

    cdef RouteMatch _match_hosts(self, bytes host, bytes method, bytes path):
        cdef bytes key = _host_key(host)
        cdef const char* kbuf = PyBytes_AS_STRING(key)
        cdef Py_ssize_t klen = PyBytes_GET_SIZE(key), i, slen
        cdef RouteMatch m, first405 = None
        cdef PyObject* suffix
        cdef PyObject* t = PyDict_GetItem(self._exact_hosts, key)
        if t != NULL:
            m = (<_HostRoutes>t)._match(method, path)
            if m.status == 200:
                return m
            if m.status == 405:
                first405 = m
        for i in range(len(self._wild_suffixes)):
            suffix = _list_item(<PyObject*>self._wild_suffixes, i)
            slen = _bytes_size(suffix)
            if klen > slen and memcmp(kbuf + klen - slen, _bytes_data(suffix), slen) == 0:
                m = (<_HostRoutes>_list_item(<PyObject*>self._wild_routes, i))._match(method, path)
                if m.status == 200:
                    return m
                if m.status == 405 and first405 is None:
                    first405 = m
        m = self._any_host._match(method, path)
        if m.status == 200 or first405 is None:
            return m
        return first405

    # -----------------------------------------------------------------------------------------
    # Config time

    def add(self, target: object, *, path: str | None = None, prefix: str | None = None,
            methods: Iterable[str] | None = None, host: str | None = None) -> None:
        """Validates everything before touching the table, so a rejected route (bad pattern,
        duplicate) leaves the trie exactly as it was and config loading can report and go on."""
        if self._frozen:
            raise RuntimeError("RouteTrie is frozen: routes are added only while loading config")
        if (path is None) == (prefix is None):
            raise ValueError("a route needs exactly one of path or prefix")
        cdef frozenset meths = _parse_methods(methods)
        cdef tuple hkey = _parse_host(host)
        cdef _HostRoutes table = self._table(hkey, False)
        cdef _Route route = _Route()
        route.target = target
        cdef list segs
        cdef bytes raw
        cdef str what
        if path is not None:
            raw, segs = _parse_path(path)
            what = f"path {path!r}"
            _set_params(route, segs)
            if route.nparams == 0:
                route.match = RouteMatch.new(200, target, None, None, 0)
        else:
            raw, segs = _parse_prefix(prefix)
            what = f"prefix {prefix!r}"
            route.match = RouteMatch.new(200, target, None, None, 0 if raw == b"/" else len(raw))
        if host is not None:
            what += f" on host {host!r}"
        _check_overlap(_locate(table, raw, segs, prefix is not None, False) if table is not None
                       else None, meths, what)
        table = self._table(hkey, True)
        _endpoint_add(_locate(table, raw, segs, prefix is not None, True), route, meths)

    def freeze(self) -> None:
        """Marks the end of config loading: a trie shared by a running generation must not change
        under in-flight requests, so later add() calls are refused."""
        self._frozen = True

    cdef _HostRoutes _table(self, tuple hkey, bint create):
        cdef bint wild = hkey[0]
        cdef bytes key = hkey[1]
        cdef _HostRoutes t
        cdef Py_ssize_t i
        if key is None:
            return self._any_host
        if not wild:
            t = self._exact_hosts.get(key)
            if t is None and create:
                t = self._exact_hosts[key] = _HostRoutes()
                self._has_hosts = True
            return t
        if key in self._wild_suffixes:
            return self._wild_routes[self._wild_suffixes.index(key)]
        if not create:
            return None
        i = 0
        while i < len(self._wild_suffixes) and len(self._wild_suffixes[i]) >= len(key):
            i += 1
        t = _HostRoutes()
        self._wild_suffixes.insert(i, key)
        self._wild_routes.insert(i, t)
        self._has_hosts = True
        return t


# ---------------------------------------------------------------------------------------------
# Config time: pattern parsing and insertion

cdef object _PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")
cdef object _METHOD_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")
cdef object _HOST_RE = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
cdef object _IPV6_RE = re.compile(r"\[[0-9a-f:.]+\]")

cdef enum _SegKind:
    _LITERAL = 0
    _PARAM = 1
    _CATCHALL = 2


cdef frozenset _parse_methods(object methods):
    if methods is None:
        return None
    if isinstance(methods, (str, bytes)):
        raise TypeError(f"methods must be a list of method names, not {methods!r}")
    cdef set out = set()
    for m in methods:
        if not isinstance(m, str) or _METHOD_RE.fullmatch(m) is None:
            raise ValueError(f"invalid method {m!r}: expected an upper-case HTTP method such as 'GET'")
        out.add(m.encode("ascii"))
    if not out:
        raise ValueError("methods is empty: use None for a route taking any method")
    return frozenset(out)


cdef tuple _parse_host(object host):
    """Returns (is_wildcard, key): key is None for any host, b"name" for an exact host and
    b".suffix" for `*.suffix`, the forms _match_hosts compares against."""
    if host is None:
        return (False, None)
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    cdef str h = host.lower()
    if h.endswith("."):
        h = h[:len(h) - 1]
    if h.startswith("*.") and _HOST_RE.fullmatch(h[2:]) is not None:
        return (True, h[1:].encode("ascii"))
    if _HOST_RE.fullmatch(h) is not None or _IPV6_RE.fullmatch(h) is not None:
        return (False, h.encode("ascii"))
    raise ValueError(f"invalid host {host!r}: expected a name such as 'api.example.com' or "
                     f"'*.example.com', without port")


cdef bytes _pattern_bytes(object pattern, str kind):
    """Requests are normalized before routing, so a pattern not in normal form could never match:
    refusing it at load turns a silent dead route into a config error."""
    if not isinstance(pattern, str):
        raise TypeError(f"{kind} must be a str, not {type(pattern).__name__}")
    if not pattern.startswith("/"):
        raise ValueError(f"{kind} {pattern!r} must start with '/'")
    if not pattern.isascii():
        raise ValueError(f"{kind} {pattern!r} must be ASCII: percent-encode other characters")
    cdef bytes raw = pattern.encode("ascii")
    cdef bytes norm
    try:
        norm = normalize_path(raw)
    except PathError as e:
        raise ValueError(f"{kind} {pattern!r} is not a valid path: {e}") from None
    if norm != raw:
        raise ValueError(f"{kind} {pattern!r} is not in normal form: requests for it arrive as "
                         f"{norm.decode('ascii')!r}")
    return raw


cdef tuple _parse_path(object path):
    """Returns (path bytes, [(kind, literal bytes or param name), ...]) for each segment."""
    cdef bytes raw = _pattern_bytes(path, "path")
    cdef list parts = path[1:].split("/")
    cdef list segs = []
    cdef set names = set()
    if len(parts) > _MAX_SEGMENTS:
        raise ValueError(f"path {path!r} has more than {_MAX_SEGMENTS} segments")
    for i, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            segs.append((_LITERAL, part.encode("ascii")))
            continue
        m = _PARAM_RE.fullmatch(part)
        if m is None:
            raise ValueError(f"path {path!r}: segment {part!r} must be wholly literal or wholly "
                             f"a parameter such as {{name}} or {{name*}}")
        name, star = m.group(1), m.group(2)
        if name in names:
            raise ValueError(f"path {path!r}: parameter {name!r} appears twice")
        if star and i != len(parts) - 1:
            raise ValueError(f"path {path!r}: catch-all {{{name}*}} must be the last segment")
        names.add(name)
        segs.append((_CATCHALL if star else _PARAM, name))
    return raw, segs


cdef tuple _parse_prefix(object prefix):
    """A prefix matches whole segments, so its trailing slash carries no meaning and is dropped
    (which is also what makes `prefix_len` the length to strip)."""
    cdef bytes raw = _pattern_bytes(prefix, "prefix")
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix {prefix!r} must be literal: use path with {{name*}} for params")
    if len(raw) > 1 and raw.endswith(b"/"):
        raw = raw[:len(raw) - 1]
    cdef list segs = [(_LITERAL, s) for s in raw[1:].split(b"/")] if raw != b"/" else []
    if len(segs) > _MAX_SEGMENTS:
        raise ValueError(f"prefix {prefix!r} has more than {_MAX_SEGMENTS} segments")
    return raw, segs


cdef _set_params(_Route route, list segs):
    cdef list names = []
    for depth, (kind, value) in enumerate(segs):
        if kind != _LITERAL:
            route.depths[len(names)] = depth
            names.append(value)
    route.names = tuple(names)
    route.nparams = len(names)


cdef _Endpoint _locate(_HostRoutes table, bytes raw, list segs, bint is_prefix, bint create):
    """The endpoint a pattern belongs to, created on demand; param names are not part of the
    trie's shape, so `/u/{id}` and `/u/{uid}` share an endpoint (and must differ in methods)."""
    cdef _Endpoint ep
    cdef _Node node
    if not is_prefix and all(kind == _LITERAL for kind, _ in segs):
        ep = table.exact.get(raw)
        if ep is None and create:
            ep = table.exact[raw] = _Endpoint()
        return ep
    node = table.prefixes if is_prefix else table.params
    last = segs[len(segs) - 1][0] if segs else _LITERAL
    for kind, value in (segs if last != _CATCHALL else segs[:len(segs) - 1]):
        node = _descend(node, kind, value, create)
        if node is None:
            return None
    if last == _CATCHALL:
        if node.catchall is None and create:
            node.catchall = _Endpoint()
        ep = node.catchall
    else:
        if node.end is None and create:
            node.end = _Endpoint()
        ep = node.end
    if create:
        if is_prefix:
            table.has_prefixes = True
        else:
            table.has_params = True
    return ep


cdef _Node _descend(_Node node, int kind, object value, bint create):
    cdef _Node child
    if kind == _PARAM:
        if node.param is None and create:
            node.param = _Node()
        return node.param
    child = node._child(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    if child is None and create:
        child = _Node()
        # Binary search, as _child's: a linear scan made a table of n sibling paths cost n²/2
        # comparisons to build (100,000 routes took 26 s to compile, longer than a worker may
        # take to start).
        i = _bisect_left(node.keys, value)
        node.keys.insert(i, value)
        node.kids.insert(i, child)
    return child


cdef _check_overlap(_Endpoint ep, frozenset meths, str what):
    if ep is None:
        return
    if ep.any_method is not None:
        raise ValueError(f"duplicate route: {what} already has a route for every method")
    if meths is None:
        if ep.methods:
            raise ValueError(f"duplicate route: {what} already has routes for "
                             f"{_method_list(ep.methods)}; a route for every method would overlap")
        return
    cdef frozenset both = meths & ep.methods
    if both:
        raise ValueError(f"duplicate route: {what} already has a route for {_method_list(both)}")


cdef str _method_list(frozenset methods):
    return ", ".join(sorted(m.decode("ascii") for m in methods))


cdef _endpoint_add(_Endpoint ep, _Route route, frozenset meths):
    if meths is None:
        ep.any_method = route
        return
    for m in meths:
        ep.by_method[m] = route
    ep.methods = ep.methods | meths
    ep.m405 = RouteMatch.new(405, None, None, b", ".join(sorted(ep.methods)), 0)
