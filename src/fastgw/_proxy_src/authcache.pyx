# The verified-token cache's hit path for JWT routes (see authcache.pxd).

from libc.string cimport memcmp
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec


cdef inline double _tc_wall() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


@cython.final
cdef class TokenCacheFilter(Filter):
    """`TokenCacheFilter(cache, authenticate, check=None)`: the AUTH-phase filter of a JWT route
    whose token comes from `Authorization: Bearer`. A request with exactly one such header whose
    token is in `cache` and not expired (wall clock against the entry's first item) is accepted
    here; any other goes to `authenticate(req)`, whose answer is handled as a Python filter's
    (None, a Reply, or an awaitable). `check` is the route's `require`, run after a hit."""

    def __init__(self, dict cache not None, object slow not None, object check=None):
        self.request_phase = RQ_AUTH
        self._cache = cache
        self._slow = slow
        self._check = check
        self.target = getattr(slow, "__self__", None)

    cdef int on_request(self, Request req) except -1:
        cdef list pairs = req.hpairs
        cdef Py_ssize_t i, n = len(pairs), found = 0
        cdef bytes name, value = None, token, lines
        cdef object entry
        for i in range(0, n, 2):
            name = <bytes>pairs[i]
            if PyBytes_GET_SIZE(name) == 13 and ieq(PyBytes_AS_STRING(name), b"authorization", 13):
                found += 1
                value = <bytes>pairs[i + 1]
        if found == 1 and PyBytes_GET_SIZE(value) > 7 and memcmp(PyBytes_AS_STRING(value), b"Bearer ", 7) == 0:
            token = PyBytes_FromStringAndSize(PyBytes_AS_STRING(value) + 7, PyBytes_GET_SIZE(value) - 7)
            entry = self._cache.get(token)
            if entry is not None and <double>(<tuple>entry)[0] > _tc_wall():
                req.claims = (<tuple>entry)[1]
                req.identity = (<tuple>entry)[2]
                lines = <bytes>(<tuple>entry)[3]
                if PyBytes_GET_SIZE(lines):
                    req.up_extra = req.up_extra + lines
                self.hits += 1
                if self._check is None:
                    return CONTINUE
                return python_answer(req, self._check(req), "require check")
        return python_answer(req, self._slow(req), "authenticate")


@cython.final
cdef class ApiKeyFilter(Filter):
    """`ApiKeyFilter(header, digest, equal, keys, missing, invalid, ambiguous, check=None)`: the
    AUTH-phase filter of a route whose one auth is an API key read from `header` (see
    fastgw.auth.apikey for the rules it applies: the same as the Python authenticator's)."""

    def __init__(self, bytes header not None, object digest not None, object equal not None, dict keys not None,
                 Reply missing not None, Reply invalid not None, Reply ambiguous not None, object check=None):
        self.request_phase = RQ_AUTH
        self._header = header.lower()
        self._digest = digest
        self._equal = equal
        self._keys = keys
        self._missing = missing
        self._invalid = invalid
        self._ambiguous = ambiguous
        self._check = check

    cdef int on_request(self, Request req) except -1:
        cdef list pairs = req.hpairs
        cdef Py_ssize_t i, n = len(pairs), found = 0, hn = PyBytes_GET_SIZE(self._header)
        cdef const char* want = PyBytes_AS_STRING(self._header)
        cdef bytes name, key = None
        cdef object entry, digest
        for i in range(0, n, 2):
            name = <bytes>pairs[i]
            if PyBytes_GET_SIZE(name) == hn and ieq(PyBytes_AS_STRING(name), want, hn):
                found += 1
                key = <bytes>pairs[i + 1]
        if found != 1:
            req.reply = self._ambiguous if found else self._missing
            return RESPONDED
        key = key.strip()
        if PyBytes_GET_SIZE(key) > 7 and ieq(PyBytes_AS_STRING(key), b"bearer ", 7):
            key = key[7:].strip()
        if not PyBytes_GET_SIZE(key):
            req.reply = self._missing
            return RESPONDED
        digest = self._digest(key).digest()
        entry = self._keys.get(digest)
        if entry is None or not self._equal((<tuple>entry)[0], digest):
            req.reply = self._invalid
            return RESPONDED
        req.identity = (<tuple>entry)[1]
        req.up_extra = req.up_extra + <bytes>(<tuple>entry)[2]
        if self._check is None:
            return CONTINUE
        return python_answer(req, self._check(req), "require check")
