# The COMPRESS response filter, compiled: what it decides per response is fastgw.compress's
# module docstring (the rules are written once, there); the policy (media types, Accept-Encoding
# negotiation, levels) and the codecs stay in Python, since they run at most once per distinct
# header value (cached) and once per body piece. What runs per response here is the head: one
# pass over its headers in C, and the Python codec's bound methods called directly.

cdef object _COMPRESSOR = object()   # the response's (compress, finish) pair in req._vars


cdef bint _has_token(list values, bytes token):
    """Whether a comma-separated header (its values) lists `token` (lower case)."""
    cdef bytes value, item
    for value in values:
        for item in value.split(b","):
            if item.strip().lower() == token:
                return True
    return False


@cython.final
cdef class CompressFilter(Filter):
    """The COMPRESS response filter of a route with `compress:`."""

    def __init__(self, policy, streams):
        self.response_phase = RS_COMPRESS
        self.policy = policy
        self.type_cache = policy.types.cache
        self.type_match = policy.types.match
        self.choices = policy.choices
        self.choose = policy.choose
        self.streams = streams
        self.levels = policy.levels
        self.min_size = policy.min_size

    cdef int on_response(self, Request req, ResponseHead head) except -1:
        cdef int status = head.status
        if head.is_local or status < 200 or status == 204 or status == 206 or status == 304 \
                or req.method == b"HEAD":
            return 0
        cdef list h = head.headers
        cdef Py_ssize_t i, n = len(h)
        cdef bytes name, ctype = None, etag = None
        cdef list cache_control = None, vary = None
        for i in range(0, n, 2):
            name = (<bytes>h[i]).lower()
            if name == b"content-type":
                if ctype is None:
                    ctype = <bytes>h[i + 1]
            elif name == b"content-encoding" or name == b"content-range":
                return 0
            elif name == b"etag":
                if etag is None:
                    etag = <bytes>h[i + 1]
            elif name == b"cache-control":
                if cache_control is None:
                    cache_control = []
                cache_control.append(h[i + 1])
            elif name == b"vary":
                if vary is None:
                    vary = []
                vary.append(h[i + 1])
        if ctype is None:
            return 0
        matched = self.type_cache.get(ctype)
        if matched is None:
            matched = self.type_match(ctype)
        if not matched:
            return 0
        length = head.length
        if length is not None and <Py_ssize_t>length < self.min_size:
            return 0
        if cache_control is not None and _has_token(cache_control, b"no-transform"):
            return 0
        # What a cache may serve for this URL now depends on Accept-Encoding, compressed or not.
        if vary is None:
            h.append(b"Vary")
            h.append(b"Accept-Encoding")
        elif not (_has_token(vary, b"accept-encoding") or _has_token(vary, b"*")):
            head.set(b"Vary", b", ".join(vary + [b"Accept-Encoding"]))
        accept = req.header(b"accept-encoding")
        try:
            coding = self.choices[accept]
        except KeyError:
            coding = self.choose(accept)
        if coding is None:
            return 0
        head.set(b"Content-Encoding", (<str>coding).encode())
        if etag is not None and not etag.startswith(b"W/"):
            head.set(b"ETag", b"W/" + etag)
        head.remove(b"accept-ranges")
        if req._vars is None:
            req._vars = {}
        req._vars[_COMPRESSOR] = self.streams[coding](self.levels[coding], length)
        head.stream_through(self)
        return 0

    cdef bytes on_body(self, Request req, bytes data):
        return (<tuple>req._vars[_COMPRESSOR])[0](data)

    cdef bytes on_end(self, Request req):
        return (<tuple>req._vars.pop(_COMPRESSOR))[1]()
