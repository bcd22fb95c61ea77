# The HTTP/1.1 proxy exchange (DESIGN §3): client side `ClientCore`, upstream side `UpstreamCore`,
# the per-request `Request`, and the compiled per-route `Plan`.
#
# Call order, per request:
#   uvloop -> ClientCore.data_received -> httptools -> on_message_begin / on_url / on_header* /
#   on_headers_complete -> _start (validate, normalize_path, RouteTrie.match, plan.filters,
#   upstream head rendered into a C buffer, group.pick, pool.begin/take) -> _attach (one write of
#   head + buffered body) -> on_body* (streamed) -> on_message_complete.
#   uvloop -> UpstreamCore.data_received -> httptools -> upstream_head (response head rendered
#   into the client's out buffer) -> upstream_body* -> upstream_message_complete; then one
#   write of everything produced by that read (flush), upstream_complete (pool give, log, next
#   request or close).
# Python subclasses add asyncio.Protocol: fastgw.http.protocol.ClientProtocol and
# fastgw.upstream.connection.UpstreamConnection.

cdef struct OutBuf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap


@cython.final
cdef class RequestIds:
    cdef bytes prefix
    cdef Py_ssize_t counter
    cdef OutBuf buf
    cpdef bytes next(self)


cdef class Plan:
    cdef public int index
    cdef public str upstream
    cdef public Py_ssize_t strip_len            # bytes of prefix to strip, -1: no stripping
    cdef public object request_drop_extra       # frozenset of lower-case names beyond the base set, or None
    cdef public bytes request_set               # rendered `name: value\r\n` lines
    cdef public object response_drop_extra
    cdef public bytes response_set
    cdef public bytes host_header               # None: forward the client's Host
    cdef public bytes default_host_line         # `host:` line for HTTP/1.0 clients without Host
    cdef public object group                    # the worker's UpstreamGroup
    cdef public tuple filters                   # request filters, route order


@cython.final
cdef class Request:
    cdef public bytes method
    cdef public bytes url
    cdef public bytes path
    cdef public bytes query
    cdef public bytes host
    cdef public bytes rid
    cdef public bytes resp_extra
    cdef public object plan
    cdef public object pool
    cdef public str upstream
    cdef list hpairs                 # name, value, name, value ... as received
    cdef list _headers               # lazily built (lower, name, value) triples
    cdef list te
    cdef list xff
    cdef set conn_drop
    cdef list body
    cdef bytes expect
    cdef bytes rid_in
    cdef public bytes ua
    cdef public bytes referer
    cdef bytes head
    cdef public int status
    cdef public Py_ssize_t sent
    cdef Py_ssize_t cl
    cdef Py_ssize_t body_len
    cdef Py_ssize_t nheaders
    cdef Py_ssize_t head_size
    cdef Py_ssize_t raw_head
    cdef int host_count
    cdef int attempts
    cdef int ver                     # 10, 11, or 0 for anything else
    cdef double t0
    cdef double start
    cdef double attempt_t0           # when the current attempt was sent: per-try timeout, latency
    cdef bint chunked
    cdef bint keep_alive
    cdef bint head_done
    cdef bint body_done
    cdef bint resp_started
    cdef bint resp_chunked
    cdef bint resp_close
    cdef bint resp_nobody
    cdef bint resp_chunked_up
    cdef bint resp_cl_up
    cdef bint req_sent
    cdef bint body_streamed
    cdef bint finished
    cdef bint in_flight              # pool.begin() called, end not reported yet
    cdef bint continued              # the gateway sent `100 Continue` itself

    cpdef bytes header(self, bytes lname)


cdef class AccessLog:
    cdef readonly int fd
    cdef bint json
    cdef OutBuf buf
    cdef bytes now_text
    cdef public object on_error

    cdef int record(self, bytes peer, Request req) except -1
    cpdef flush(self)


cdef class UpstreamCore:
    cdef public object pool
    cdef public object transport
    cdef object parser
    cdef ClientCore client
    cdef list hpairs
    cdef public bint closed
    cdef public bint reused
    cdef public double last_active
    cdef bint got_bytes
    cdef bint done
    cdef bint broken
    cdef bint until_close
    cdef bint keep_alive

    cdef bind(self, ClientCore client)
    cpdef release(self, bint reusable)
    cpdef abort(self)


cdef class ClientCore:
    cdef object rt
    cdef object listener
    cdef public object transport
    cdef object parser
    cdef object replies
    cdef RouteTrie trie
    cdef AccessLog alog
    cdef RequestIds ids
    cdef Request req
    cdef Request active
    cdef object queue
    cdef UpstreamCore up
    cdef object deferred
    cdef public bytes peer
    cdef bytes last_host
    cdef bytes fwd_lines
    cdef OutBuf out
    cdef OutBuf head
    cdef public double last_active
    cdef Py_ssize_t max_head
    cdef Py_ssize_t max_headers
    cdef Py_ssize_t max_url
    cdef Py_ssize_t max_body
    cdef int paused
    cdef int served
    cdef public bint closing
    cdef bint halted                 # answered locally and closing: parse nothing more
    cdef bint underscores            # the listener forwards header names with `_`
    cdef bint trusted

    cdef _start(self, Request req)
    cdef bytes _upstream_head(self, Request req, Plan plan, bytes path)
    cdef _send_to(self, Request req, object pool)
    cdef _attach(self, Request req, UpstreamCore conn)
    cdef _failed_attempt(self, Request req, object pool, object outcome, int status, str message)
    cdef bint _retry(self, Request req, object outcome)
    cdef upstream_head(self, UpstreamCore conn, int status, list hpairs)
    cdef bytes _response_head(self, Request req, int status, list hpairs, bint informational)
    cdef upstream_body(self, bytes body)
    cdef bint upstream_message_complete(self, UpstreamCore conn)
    cdef flush(self)
    cdef upstream_complete(self, UpstreamCore conn)
    cdef upstream_lost(self, UpstreamCore conn)
    cdef upstream_failed(self, UpstreamCore conn, int status, str message, str kind)
    cdef _end_attempt(self, Request req, int status, str kind)
    cdef _after_response(self, Request req)
    cdef _local_error(self, Request req, int status, str message=*, bint close=*, bytes extra=*)
    cdef _abort(self, Request req)
    cdef _expire(self, Request req, str message)
    cdef bint _absolute_form(self, Request req)
    cdef _pause(self, int reason)
    cdef _resume(self, int reason)
    cdef _log(self, Request req)
    cdef _close(self, bint abort)
