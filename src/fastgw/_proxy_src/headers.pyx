# The header table (see headers.pxd). Each entry is (lower-case name, id, flags, why a route may
# not edit it in requests, why not in responses); `header_id` is built from it at import, and
# config validation reads the reasons, so the exchange and the config can never disagree about
# which names the gateway owns.

_FRAMING = "it frames the message, and the gateway manages framing itself"
_HOP_BY_HOP = "it is hop-by-hop: the gateway manages each connection's own"
_FORWARDING = "the gateway sets it from the client connection (see trusted_proxies)"
_HOST = "the client's Host is forwarded as is; set the upstream's host_header to change it"
_HOP = HF_REQUEST_DROP | HF_RESPONSE_DROP | HF_ROUTE_REQUEST | HF_ROUTE_RESPONSE
_FWD = HF_REQUEST_DROP | HF_ROUTE_REQUEST

HEADER_TABLE = (
    (b"host", H_HOST, HF_ROUTE_REQUEST | HF_ROUTE_RESPONSE, _HOST, _HOST),
    (b"content-length", H_CONTENT_LENGTH, _HOP, _FRAMING, _FRAMING),
    (b"transfer-encoding", H_TRANSFER_ENCODING, _HOP, _FRAMING, _FRAMING),
    (b"trailer", H_TRAILER, _HOP, _FRAMING, _FRAMING),
    (b"connection", H_CONNECTION, _HOP, _HOP_BY_HOP, _HOP_BY_HOP),
    (b"keep-alive", H_KEEP_ALIVE, _HOP, _HOP_BY_HOP, _HOP_BY_HOP),
    (b"te", H_TE, _HOP, _HOP_BY_HOP, _HOP_BY_HOP),
    (b"upgrade", H_UPGRADE, _HOP, _HOP_BY_HOP, _HOP_BY_HOP),
    (b"proxy-connection", H_PROXY_CONNECTION, _HOP, _HOP_BY_HOP, _HOP_BY_HOP),
    (b"proxy-authorization", H_PROXY_AUTHORIZATION, HF_REQUEST_DROP, None, None),
    (b"proxy-authenticate", H_PROXY_AUTHENTICATE, HF_RESPONSE_DROP, None, None),
    (b"expect", H_EXPECT, HF_REQUEST_DROP, None, None),
    (b"x-forwarded-for", H_XFF, _FWD, _FORWARDING, None),
    (b"x-forwarded-proto", H_XF_PROTO, _FWD, _FORWARDING, None),
    (b"x-forwarded-host", H_XF_HOST, _FWD, _FORWARDING, None),
    (b"x-forwarded-port", H_XF_PORT, _FWD, _FORWARDING, None),
    (b"x-real-ip", H_X_REAL_IP, _FWD, _FORWARDING, None),
    (b"forwarded", H_FORWARDED, _FWD, _FORWARDING, None),
    (b"x-original-url", H_X_ORIGINAL_URL, HF_REQUEST_DROP, None, None),
    (b"x-rewrite-url", H_X_REWRITE_URL, HF_REQUEST_DROP, None, None),
    (b"x-request-id", H_XRID, _HOP,
     "the gateway keeps the client's well-formed ID or generates one",
     "the gateway returns the request's ID to the client"),
    (b"user-agent", H_USER_AGENT, 0, None, None),
    (b"referer", H_REFERER, 0, None, None),
)

cdef enum:
    _MAX_NAME = 24          # longer than any name in the table

# Entries sorted by name length; `_by_len[n]` .. `_by_len[n + 1]` index the names of length n.
cdef const char* _names[H_COUNT]
cdef int _ids[H_COUNT]
cdef int _by_len[_MAX_NAME + 2]


cdef _build_table():
    cdef int i = 0, n, hid, flags
    cdef bytes name
    entries = sorted(HEADER_TABLE, key=lambda e: len(e[0]))
    for n in range(_MAX_NAME + 2):
        _by_len[n] = 0
    for name, hid, flags, _, _ in entries:
        _names[i] = PyBytes_AS_STRING(name)   # kept alive by HEADER_TABLE
        _ids[i] = hid
        header_flags[hid] = flags
        i += 1
    # _by_len[n] = first entry whose name is at least n long
    i = 0
    for n in range(_MAX_NAME + 2):
        while i < len(entries) and len(entries[i][0]) < n:
            i += 1
        _by_len[n] = i


_build_table()


cdef bint ieq(const char* p, const char* lit, Py_ssize_t n) noexcept nogil:
    # `lit` is lower-case letters, digits and '-': OR-ing 0x20 folds ASCII letters and leaves
    # '-' and digits alone; any other byte cannot make a match it should not.
    cdef Py_ssize_t i
    for i in range(n):
        if (p[i] | 0x20) != lit[i]:
            return False
    return True


cdef int header_id(bytes name) noexcept:
    cdef const char* p = PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    cdef int i
    if n > _MAX_NAME:
        return H_OTHER
    for i in range(_by_len[n], _by_len[n + 1]):
        if ieq(p, _names[i], n):
            return _ids[i]
    return H_OTHER


cdef bint name_in(bytes name, tuple lower_names) noexcept:
    """Whether `name` is one of `lower_names` (lower-case), ignoring case; no allocation."""
    cdef const char* p = PyBytes_AS_STRING(name)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name)
    cdef bytes other
    for other in lower_names:
        if PyBytes_GET_SIZE(other) == n and ieq(p, PyBytes_AS_STRING(other), n):
            return True
    return False


def owned_header_reason(str name, str direction):
    """Why a route may not set or remove header `name` in `direction` ("request" or
    "response"), or None when it may."""
    cdef bytes lname = name.lower().encode("latin-1")
    for entry_name, _, flags, request_reason, response_reason in HEADER_TABLE:
        if entry_name == lname:
            if direction == "request" and flags & HF_ROUTE_REQUEST:
                return request_reason
            if direction == "response" and flags & HF_ROUTE_RESPONSE:
                return response_reason
            return None
    return None


def folds_to_owned(bytes name):
    """Whether `name`, read with `_` as `-` (as CGI-style backends do), is one of the table's."""
    return header_id(name.replace(b"_", b"-")) != H_OTHER


cdef set connection_tokens(bytes value, set into):
    """Header names a Connection header lists (RFC 9110 §7.6.1), other than close/keep-alive."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef const char* p = PyBytes_AS_STRING(value)
    if (n == 10 and ieq(p, b"keep-alive", 10)) or (n == 5 and ieq(p, b"close", 5)):
        return into
    cdef bytes token
    for token in value.split(b","):
        token = token.strip().lower()
        if token and token != b"close" and token != b"keep-alive":
            if into is None:
                into = set()
            into.add(token)
    return into


cdef tuple check_te(list values):
    """DESIGN §8: `chunked` must be last and only once (else 400); any other coding is 501."""
    cdef list codings = []
    cdef bytes value, part, coding
    for value in values:
        for part in value.split(b","):
            part = part.strip()
            if part:
                # RFC 9110 §5.6.1: empty list elements are ignored (llhttp frames `,chunked` as
                # chunked too, so both sides agree on where the body ends).
                codings.append(part.lower())
    if codings.count(b"chunked") > 1 or (b"chunked" in codings and codings[len(codings) - 1] != b"chunked"):
        return 400, "chunked must be the last transfer coding, once"
    for coding in codings:
        if coding != b"chunked":
            return 501, "unsupported transfer coding"
    return 0, ""
