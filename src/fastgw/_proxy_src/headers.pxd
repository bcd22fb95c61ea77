# The gateway's table of header names it must recognise (framing, hop-by-hop, the headers it
# owns), one table for the exchange and for config validation alike.
#
# Call order: `header_id(name)` per header of every request and response (no allocation: length
# then case-folded compare against the names of that length); `H_*` flags decide what is dropped.
# Config validation asks `owned_header_reason(name, direction)` (Python) at load.

cdef enum HeaderId:
    H_OTHER = 0
    H_HOST
    H_TRANSFER_ENCODING
    H_CONTENT_LENGTH
    H_CONNECTION
    H_EXPECT
    H_XFF
    H_XRID
    H_USER_AGENT
    H_REFERER
    H_KEEP_ALIVE
    H_PROXY_CONNECTION
    H_TE
    H_TRAILER
    H_UPGRADE
    H_PROXY_AUTHORIZATION
    H_PROXY_AUTHENTICATE
    H_XF_PROTO
    H_XF_HOST
    H_XF_PORT
    H_X_REAL_IP
    H_FORWARDED
    H_X_ORIGINAL_URL
    H_X_REWRITE_URL
    H_COUNT

cdef enum HeaderFlag:
    HF_REQUEST_DROP = 1     # never forwarded upstream as the client sent it
    HF_RESPONSE_DROP = 2    # never relayed to the client as the upstream sent it
    HF_ROUTE_REQUEST = 4    # a route may not set or remove it in requests
    HF_ROUTE_RESPONSE = 8   # a route may not set or remove it in responses

cdef int header_flags[H_COUNT]

cdef bint ieq(const char* p, const char* lit, Py_ssize_t n) noexcept nogil
cdef int header_id(bytes name) noexcept
cdef bint name_in(bytes name, tuple lower_names) noexcept
cdef set connection_tokens(bytes value, set into)
cdef tuple check_te(list values)
