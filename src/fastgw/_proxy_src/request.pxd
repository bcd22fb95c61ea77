# Per-request state shared by every phase, and the two response shapes filters work with.
#
# A Request is created per request head (freelist), lives through the phases, and is dropped after
# its one log record. Its state is three small enums, one per direction of the exchange (`rx`
# client -> gateway, `up` gateway -> upstream for the current attempt, `resp` gateway -> client),
# plus the phase it is in; everything else is data.
#
# Filters (filter.pxd) read the request's data, set per-request values (`identity`, `claims`,
# `vars`), add or remove upstream request headers (`set_upstream_header`,
# `remove_upstream_header`), add response headers (`add_response_header`), and answer locally by
# setting `reply` (a Reply) and returning RESPONDED.

cimport cython

cdef enum RxState:
    RX_HEAD = 0         # reading the head
    RX_BODY = 1         # head read, body still arriving
    RX_DONE = 2         # the request was received in full
    RX_DISCARD = 3      # answered locally: the rest of the body is read and dropped

cdef enum UpState:
    UP_NONE = 0         # nothing of this attempt sent upstream
    UP_SENDING = 1      # head sent, body streaming
    UP_SENT = 2         # the whole request was sent

cdef enum RespState:
    RESP_NONE = 0       # nothing sent to the client yet
    RESP_HEAD = 1       # the final head went out; body streaming
    RESP_DONE = 2       # the response is complete

cdef enum Phase:
    PH_START = 0        # head received, not started
    PH_FILTERS = 1      # request filters running (or one is suspended)
    PH_TERMINAL = 2     # upstream attempts, or a local responder
    PH_LOGGED = 3       # its one log record is written: nothing more happens to it

cdef enum Framing:
    FR_NONE = 0         # no body (HEAD, 204, 304)
    FR_LENGTH = 1       # Content-Length
    FR_CHUNKED = 2
    FR_CLOSE = 3        # ends when the connection closes


@cython.final
cdef class Reply:
    cdef readonly int status
    cdef readonly tuple headers          # ((name, value), ...) bytes
    cdef readonly bytes body
    cdef readonly bint is_error          # a gateway error: the body is rendered from the error format
    cdef readonly str message            # for errors: the message (None: the status's default)
    cdef readonly object handler         # for a 101: what takes the connection over (Reply.switching)

    @staticmethod
    cdef Reply make_error(int status, str message, bytes extra_lines)


@cython.final
cdef class ResponseHead:
    cdef public int status
    cdef public list headers             # [name, value, name, value, ...] bytes, as sent
    cdef readonly bint is_local          # a Reply of the gateway's, not an upstream response
    cdef readonly object length          # the upstream body's Content-Length (int), else None
    cdef public bytes body               # a filter's replacement for a local reply's body (the
                                         #   cache's stale-if-error), else None
    cdef list body_filters               # filters that asked for the body (stream_through)
    cdef bint transforms                 # one of them changes the body: the length is unknown
    cdef object current                  # the filter whose on_response is running


@cython.final
cdef class Request:
    # what the client sent
    cdef public bytes method
    cdef public bytes url
    cdef public bytes path               # normalized; what is routed and (after rewrites) forwarded
    cdef public bytes query              # with its '?', or b""
    cdef public bytes host
    cdef public bytes rid
    cdef public bytes peer               # the connection's peer address
    cdef bytes client                    # the client address through trusted proxies (lazy)
    cdef public bint trusted_peer
    cdef list hpairs                     # name, value, name, value ... as received
    cdef list _headers                   # lazily built (lower, name, value) triples
    cdef list te
    cdef list xff
    cdef set conn_drop
    cdef bytes expect
    cdef bytes rid_in
    cdef public bytes ua
    cdef public bytes referer
    cdef public object params            # RouteMatch whose params the route captured, or None
    cdef int ver                         # 10, 11, or 0 for anything else
    cdef Py_ssize_t cl
    cdef Py_ssize_t body_len
    cdef Py_ssize_t nheaders
    cdef Py_ssize_t head_size
    cdef Py_ssize_t raw_head
    cdef int host_count
    cdef bint chunked                    # the request body is chunked
    cdef bint keep_alive                 # the client allows another request after this one

    # state
    cdef int rx
    cdef int up
    cdef int resp
    cdef public int phase
    cdef int framing                     # of the response to the client
    cdef int up_framing                  # of the upstream response
    cdef bint close_after                # the connection closes after this response
    cdef bint body_streamed              # body bytes went upstream as they came: no replay
    cdef bint in_flight                  # pool.begin() called, the attempt's end not reported yet
    cdef bint continued                  # the gateway sent `100 Continue` itself
    cdef bytes upgrade                   # the client's Upgrade header, or None
    cdef bint ws                         # a WebSocket upgrade forwarded on a websocket route

    # pipeline
    cdef public object ex                # the ClientCore serving it (None once logged)
    cdef public object plan
    cdef public object group
    cdef object pool
    cdef public str upstream             # the target of the last attempt ("" before any)
    cdef int filter_pos                  # next request filter to run
    cdef public Reply reply
    cdef public bytes resp_extra         # rendered response header lines added by filters
    cdef bytes up_extra                  # rendered upstream header lines added by filters
    cdef tuple up_drop                   # lower-case names filters removed from the upstream request
    cdef public object identity          # who is calling (consumer, subject), set by auth
    cdef public object claims            # verified token claims (dict), set by auth
    cdef object _vars
    cdef ResponseHead head_out           # the response head while response filters run
    cdef list body                       # body pieces held until an upstream connection is attached
    cdef bytes head                      # the rendered upstream request head
    cdef public int status
    cdef public Py_ssize_t sent
    cdef int attempts
    cdef double t0
    cdef double start
    cdef double attempt_t0
    cdef double upstream_time            # seconds from the last attempt's send to its response head
    cdef double queued_at                # when it joined its pool's queue (0: not queued)
    cdef Request wait_prev               # its neighbours in that queue
    cdef Request wait_next

    cpdef bytes header(self, bytes lname)
    cdef bytes client_ip(self)
