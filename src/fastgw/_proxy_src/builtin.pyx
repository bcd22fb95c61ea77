# The gateway's own compiled filters (see builtin.pxd).

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memset

cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    int AF_INET
    int AF_INET6


cdef bint _parse_ip(bytes text, uint8_t* out) noexcept:
    """`text` as 16 bytes, an IPv4 address as IPv4-mapped IPv6; False when it is not an address."""
    memset(out, 0, 16)
    if inet_pton(AF_INET, PyBytes_AS_STRING(text), out + 12) == 1:
        out[10] = 0xff
        out[11] = 0xff
        return True
    return inet_pton(AF_INET6, PyBytes_AS_STRING(text), out) == 1


cdef inline bint _in_prefix(const uint8_t* addr, const uint8_t* net, int bits) noexcept nogil:
    cdef int i = 0
    while bits >= 8:
        if addr[i] != net[i]:
            return False
        i += 1
        bits -= 8
    if bits == 0:
        return True
    cdef uint8_t mask = <uint8_t>(0xff << (8 - bits))
    return (addr[i] & mask) == (net[i] & mask)


cdef IpRule* _rules(networks, deny_flags) except NULL:
    """The networks as IpRules (IPv4 as IPv4-mapped IPv6), in one allocation."""
    cdef int n = len(networks), i = 0, j
    cdef IpRule* rules = <IpRule*>PyMem_Malloc(max(1, n) * sizeof(IpRule))
    cdef bytes packed
    if rules == NULL:
        raise MemoryError()
    for network, deny in zip(networks, deny_flags):
        if network.version == 4:
            packed = b"\0" * 10 + b"\xff\xff" + network.network_address.packed
            rules[i].prefix = network.prefixlen + 96
        else:
            packed = network.network_address.packed
            rules[i].prefix = network.prefixlen
        for j in range(16):
            rules[i].addr[j] = packed[j]
        rules[i].deny = deny
        i += 1
    return rules


@cython.final
cdef class IpSet:
    """A set of networks and the question every proxy asks of it: is this address in one of
    them (`trusted_proxies`)."""

    def __init__(self, networks):
        networks = list(networks)
        self.count = len(networks)
        self.rules = _rules(networks, [False] * self.count)

    def __dealloc__(self):
        PyMem_Free(self.rules)

    cdef bint contains(self, bytes ip):
        cdef uint8_t addr[16]
        cdef int i
        if not self.count or ip is None or not _parse_ip(ip, addr):
            return False
        for i in range(self.count):
            if _in_prefix(addr, self.rules[i].addr, self.rules[i].prefix):
                return True
        return False

    def __contains__(self, ip):
        return self.contains(ip.encode() if isinstance(ip, str) else ip)


@cython.final
cdef class AccessFilter(Filter):
    """IP access control: the most specific network that holds the client address decides (a
    deny wins a tie); an address no network holds is allowed only when there is no allow list.
    A refusal is a 403 JSON error."""

    def __init__(self, allow, deny):
        networks = list(allow) + list(deny)
        self.request_phase = RQ_ACCESS
        self.has_allow = bool(allow)
        self.count = len(networks)
        self.rules = _rules(networks, [False] * len(allow) + [True] * len(deny))

    def __dealloc__(self):
        PyMem_Free(self.rules)

    cdef bint allows(self, bytes ip):
        cdef uint8_t addr[16]
        cdef int i, best = -1
        cdef bint deny = False
        if ip is None or not _parse_ip(ip, addr):
            return not self.has_allow
        for i in range(self.count):
            if _in_prefix(addr, self.rules[i].addr, self.rules[i].prefix):
                if self.rules[i].prefix > best or (self.rules[i].prefix == best and self.rules[i].deny):
                    best = self.rules[i].prefix
                    deny = self.rules[i].deny
        if best < 0:
            return not self.has_allow
        return not deny

    cdef int on_request(self, Request req) except -1:
        if self.allows(req.client_ip()):
            return CONTINUE
        req.reply = Reply.make_error(403, "access denied for this client address", None)
        return RESPONDED

    def check(self, bytes ip):
        """Whether `ip` (text, as bytes) may pass (for tests)."""
        return self.allows(ip)


cdef bytes _VARY_ORIGIN = b"vary: Origin\r\n"
cdef bytes _PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


@cython.final
cdef class CorsFilter(Filter):
    """CORS for one route (Fetch standard, CORS protocol). A preflight (OPTIONS with
    Access-Control-Request-Method and an Origin) is answered here, 204 when the origin, method
    and headers are allowed, else 403 naming what is not; the upstream never sees it. Any other
    request with an allowed Origin gets Access-Control-Allow-Origin (and credentials, exposed
    headers) on whatever response it gets, local errors included, so browsers can read them.
    Every response of the route carries `Vary: Origin`."""

    def __init__(self, origins, methods, headers, expose_headers, bint credentials, max_age):
        self.request_phase = RQ_CORS
        exact = set()
        suffixes = []
        self.any_origin = False
        for origin in origins:
            if origin == "*":
                self.any_origin = True
            elif "://*." in origin:
                scheme, _, rest = origin.partition("://*")
                suffixes.append(((scheme + "://").encode(), rest.encode()))
            else:
                exact.add(origin.lower().encode())
        self.exact = frozenset(exact)
        self.suffixes = tuple(suffixes)
        self.credentials = credentials
        self.methods = frozenset(m.encode() for m in methods)
        self.methods_value = ", ".join(methods).encode()
        self.headers = frozenset(h.lower().encode() for h in headers) if headers is not None else None
        self.headers_value = ", ".join(headers).encode() if headers is not None else None
        self.expose_line = (b"access-control-expose-headers: " + ", ".join(expose_headers).encode() + b"\r\n"
                            if expose_headers else b"")
        self.max_age_line = b"access-control-max-age: %d\r\n" % int(max_age) if max_age is not None else b""

    cdef bint origin_allowed(self, bytes origin):
        cdef bytes lower = origin.lower()
        cdef bytes scheme, suffix
        if self.any_origin or lower in self.exact:
            return True
        for scheme, suffix in self.suffixes:
            if lower.startswith(scheme) and lower.endswith(suffix) \
                    and len(lower) > len(scheme) + len(suffix) and b"/" not in lower[len(scheme):]:
                return True
        return False

    cdef int on_request(self, Request req) except -1:
        cdef bytes origin = req.header(b"origin")
        cdef bytes method, requested, name
        if origin is None:
            req.resp_extra = req.resp_extra + _VARY_ORIGIN
            return CONTINUE
        cdef bint allowed = self.origin_allowed(origin)
        if req.method == b"OPTIONS":
            method = req.header(b"access-control-request-method")
            if method is not None:
                return self.preflight(req, origin, allowed, method)
        if allowed:
            req.resp_extra = req.resp_extra + self.allow_lines(origin) + self.expose_line + _VARY_ORIGIN
        else:
            req.resp_extra = req.resp_extra + _VARY_ORIGIN
        return CONTINUE

    cdef bytes allow_lines(self, bytes origin):
        if self.any_origin and not self.credentials:
            return b"access-control-allow-origin: *\r\n"
        if self.credentials:
            return b"access-control-allow-origin: " + origin + b"\r\naccess-control-allow-credentials: true\r\n"
        return b"access-control-allow-origin: " + origin + b"\r\n"

    cdef int preflight(self, Request req, bytes origin, bint allowed, bytes method) except -1:
        cdef bytes requested = req.header(b"access-control-request-headers")
        cdef bytes name
        cdef list asked = []
        if not allowed:
            req.reply = Reply.make_error(403, "CORS preflight refused: origin not allowed", None)
            return RESPONDED
        if method.strip() not in self.methods:
            req.reply = Reply.make_error(
                403, f"CORS preflight refused: method {method.strip().decode('latin-1')} not allowed", None)
            return RESPONDED
        if requested is not None:
            for name in requested.split(b","):
                name = name.strip().lower()
                if name:
                    asked.append(name)
            if self.headers is not None:
                for name in asked:
                    if name not in self.headers:
                        req.reply = Reply.make_error(
                            403, f"CORS preflight refused: header {name.decode('latin-1')} not allowed", None)
                        return RESPONDED
        headers = [(b"access-control-allow-methods", self.methods_value)]
        if self.headers_value is not None and self.headers_value:
            headers.append((b"access-control-allow-headers", self.headers_value))
        elif asked:
            headers.append((b"access-control-allow-headers", b", ".join(asked)))
        req.resp_extra = req.resp_extra + self.allow_lines(origin) + self.max_age_line
        headers.append((b"vary", _PREFLIGHT_VARY))
        req.reply = Reply(204, headers, b"")
        return RESPONDED


@cython.final
cdef class FixedResponder(Filter):
    """The terminal answer of a `respond:` route."""

    def __init__(self, Reply reply not None):
        self.request_phase = RQ_RESPOND
        self.reply = reply

    cdef int on_request(self, Request req) except -1:
        req.reply = self.reply
        return RESPONDED


@cython.final
cdef class Redirector(Filter):
    """The terminal answer of a `redirect:` route: `to` filled with `{path}` (the normalized
    path), `{query}` (with its `?`, or empty) and the route's `{param}` captures."""

    def __init__(self, str to, int status):
        self.request_phase = RQ_RESPOND
        self.status = status
        parts = []
        for i, piece in enumerate(_PARAM_SPLIT.split(to)):
            parts.append(piece.encode() if i % 2 == 0 else piece)
        self.parts = tuple(parts)

    cdef int on_request(self, Request req) except -1:
        cdef list out = []
        cdef Py_ssize_t i
        params = None
        for i in range(len(self.parts)):
            part = self.parts[i]
            if i % 2 == 0:
                out.append(part)
            elif part == "path":
                out.append(req.path)
            elif part == "query":
                out.append(req.query)
            else:
                if params is None:
                    params = req.route_params
                out.append(params[part].encode("latin-1"))
        req.reply = Reply(self.status, ((b"location", b"".join(out)),), b"")
        return RESPONDED
