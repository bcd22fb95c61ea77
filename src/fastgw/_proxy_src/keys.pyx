# Request keys (see keys.pxd).

_KEY_KINDS = {"ip": KEY_IP, "route": KEY_ROUTE, "path": KEY_PATH, "header": KEY_HEADER, "cookie": KEY_COOKIE,
              "query": KEY_QUERY, "claim": KEY_CLAIM, "consumer": KEY_CONSUMER}


@cython.final
cdef class RequestKey:
    """`RequestKey("ip" | "route" | "path" | "consumer")` or `RequestKey("header" | "cookie" |
    "query" | "claim", NAME)`."""

    def __init__(self, str kind, str name=None):
        if kind not in _KEY_KINDS:
            raise ValueError(f"unknown request key kind {kind!r}")
        self.kind = _KEY_KINDS[kind]
        needs_name = self.kind in (KEY_HEADER, KEY_COOKIE, KEY_QUERY, KEY_CLAIM)
        if needs_name != (name is not None):
            raise ValueError(f"key kind {kind!r} {'needs' if needs_name else 'takes no'} name")
        self.claim = name if self.kind == KEY_CLAIM else None
        if name is None:
            self.name = None
        elif self.kind == KEY_HEADER:
            self.name = name.lower().encode("latin-1")
        else:
            self.name = name.encode("latin-1")

    cpdef bytes of(self, Request req):
        cdef int kind = self.kind
        if kind == KEY_IP:
            return req.client_ip() or None
        if kind == KEY_PATH:
            return req.path
        if kind == KEY_HEADER:
            return req.header(self.name) or None
        if kind == KEY_ROUTE:
            return (<Plan>req.plan).route_key if req.plan is not None else None
        if kind == KEY_COOKIE:
            return _cookie(req.header(b"cookie"), self.name)
        if kind == KEY_QUERY:
            return _query_param(req.query, self.name)
        if kind == KEY_CLAIM:
            return _claim_bytes(req.claims, self.claim)
        return _identity_bytes(req.identity)

    def __repr__(self):
        kind = next(k for k, v in _KEY_KINDS.items() if v == self.kind)
        return f"RequestKey({kind!r}{'' if self.name is None else ', ' + repr(self.name.decode('latin-1'))})"


cdef bytes _cookie(bytes value, bytes name):
    """NAME's value in a Cookie header (clients send one, RFC 6265 §5.4), or None."""
    if value is None:
        return None
    cdef bytes pair, k, v
    for pair in value.split(b";"):
        k, sep, v = pair.partition(b"=")
        if sep and k.strip() == name:
            return v.strip() or None
    return None


cdef bytes _query_param(bytes query, bytes name):
    """The first NAME=value of a query (`?a=1&b=2`), as sent (still percent-encoded), or None."""
    if not query:
        return None
    cdef bytes part, k, v
    for part in query[1:].split(b"&"):
        k, sep, v = part.partition(b"=")
        if k == name:
            return v or None
    return None


cdef bytes _claim_bytes(object claims, str name):
    if claims is None:
        return None
    value = claims.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


cdef bytes _identity_bytes(object identity):
    if identity is None:
        return None
    if isinstance(identity, bytes):
        return identity
    return str(identity).encode()
