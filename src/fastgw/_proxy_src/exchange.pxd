# The HTTP/1.1 exchange, client side: one downstream connection and the phases of its requests
# (DESIGN §3). The Python subclass fastgw.http.protocol.ClientProtocol adds asyncio.Protocol.
#
# Call order, per request:
#   uvloop -> data_received -> httptools -> on_message_begin / on_url / on_header* /
#   on_headers_complete -> start():
#       validate the head (version, Host, framing, Expect) and the target; normalize the path;
#       route (RouteTrie.match, RouteChoice.select) -> req.plan
#     -> run_filters(): the plan's request filters in phase order (CONTINUE / RESPONDED /
#        SUSPENDED; a suspended request resumes through filter_done)
#     -> terminal(): the plan's responder (a Reply), or proxy(): upstream head rendered into a C
#        buffer, a target picked (group or split), pool.begin/take, attach (one write)
#   on_body* (streamed) -> on_message_complete.
#   uvloop -> UpstreamCore.data_received -> upstream_head (response filters, head rendered into
#   the out buffer) -> upstream_body* -> upstream_message_complete; then one write of everything
#   that read produced (flush) -> upstream_complete (pool give, log, next request or close).
#   A local answer (Reply) goes through send_reply: response filters, rendering, log.
#
# Failures: every upstream failure is one Failure code; `failure_status` maps it to the status the
# client gets, `retry_target` decides whether another attempt is made (DESIGN §8).

cdef enum Failure:
    F_CONNECT_REFUSED = 1    # could not connect (refused, unreachable): nothing was sent
    F_CONNECT_TIMEOUT = 2
    F_RESET = 3              # the connection failed before any response byte
    F_READ_TIMEOUT = 4       # no response head (or body gap) within timeouts.read / per_try
    F_PROTOCOL = 5           # the upstream's bytes are not a valid response
    F_NO_TARGET = 6          # no usable target
    F_TOTAL_TIMEOUT = 7      # retries.total_timeout passed
    F_NO_CONNECTION = 8      # no upstream connection came free: the pool's queue was full, or
                             # the request waited there `queue.timeout`


cdef enum Pause:
    # Reasons to stop reading from the client (a bit each; reading resumes when none is left).
    P_QUEUE = 1
    P_UPSTREAM = 2
    P_BUFFER = 4
    P_UPGRADE = 8            # an upgrade request waits for the upstream's answer


@cython.final
cdef class RequestIds:
    cdef bytes prefix
    cdef Py_ssize_t counter
    cdef OutBuf buf
    cpdef bytes next(self)


@cython.final
cdef class ListenerContext:
    # What every connection of one listener in one worker shares, read once per worker rather
    # than once per connection: the runtime's tables and limits, the listener's lines, the
    # trusted proxies, and the last Host that passed validation.
    cdef readonly object rt
    cdef object replies
    cdef RouteTrie trie
    cdef AccessLog alog
    cdef MetricsRecorder metrics
    cdef RequestIds ids
    cdef set connections
    cdef IpSet trusted
    cdef Py_ssize_t max_head
    cdef Py_ssize_t max_headers
    cdef Py_ssize_t max_url
    cdef Py_ssize_t max_body
    cdef bytes fwd_lines
    cdef readonly bytes scheme       # b"http" or b"https": part of a cache key
    cdef bint underscores
    cdef bytes valid_host            # the last Host value that passed valid_host()


cdef class ClientCore:
    cdef ListenerContext ctx
    cdef object rt
    cdef public object transport
    cdef object parser
    cdef object replies
    cdef RouteTrie trie
    cdef AccessLog alog
    cdef MetricsRecorder metrics
    cdef RequestIds ids
    cdef Request req                 # the request being parsed
    cdef Request active              # the request being served
    cdef object queue                # pipelined requests waiting (heads complete)
    cdef UpstreamCore up
    cdef object deferred             # a parse error found while a request was still being served
    cdef public bytes peer
    cdef bytes fwd_lines
    cdef readonly bytes scheme       # b"http" or b"https": part of a cache key
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
    cdef bint v11                    # the request being read has an ` HTTP/1.1` request line
    cdef Tunnel tunnel               # after a WebSocket 101: both connections are one tunnel
    cdef bytes early                 # bytes the client sent after an upgrade request, held
    cdef object handler              # after a local 101 (Reply.switching): owns the connection
    cdef double linger_end           # lingering close (see linger): when it ends at the latest; 0 otherwise
    cdef Py_ssize_t linger_left      # bytes it still reads and drops before closing

    cdef start(self, Request req)
    cdef run_filters(self, Request req)
    cdef terminal(self, Request req)
    cdef proxy(self, Request req)
    cdef bytes upstream_request_head(self, Request req, Plan plan, bytes path)
    cdef send_to(self, Request req, object target)
    cdef attach(self, Request req, UpstreamCore conn)
    cdef attempt_failed(self, Request req, int failure, str message)
    cdef connect_failed(self, Request req, TargetPool pool, int failure, str message)
    cdef bint waiter_ready(self, Request req, UpstreamCore conn) except -1
    cdef queue_refused(self, Request req, str message)
    cdef object retry_target(self, Request req, object outcome)
    cdef upstream_head(self, UpstreamCore conn, int status, list hpairs)
    cdef bytes response_head(self, Request req, int status, list hpairs)
    cdef bytes informational_head(self, Request req, int status, list hpairs)
    cdef bytes upgrade_head(self, Request req, list hpairs)
    cdef start_tunnel(self, Request req, UpstreamCore conn, list hpairs)
    cdef ResponseHead filtered_head(self, Request req, int status, list hpairs, bint is_local)
    cdef bytes render_head(self, Request req, ResponseHead head, bytes upstream_cl, bint chunked_up)
    cdef int frame(self, Request req, OutBuf* b, int status, bytes length, bint chunked_up,
                   bint transformed) except -1
    cdef upstream_body(self, bytes body)
    cdef write_body(self, Request req, bytes body)
    cdef bint upstream_message_complete(self, UpstreamCore conn)
    cdef bint discardable(self, Request req)
    cdef flush(self)
    cdef upstream_complete(self, UpstreamCore conn)
    cdef upstream_lost(self, UpstreamCore conn)
    cdef upstream_failed(self, UpstreamCore conn, int failure, str message)
    cdef end_attempt(self, Request req, int status, str kind)
    cdef after_response(self, Request req)
    cdef refuse(self, Request req, int status, str message=*, bint close=*, bytes extra=*)
    cdef send_reply(self, Request req, Reply reply, bint force_close)
    cdef take_over(self, Request req, Reply reply)
    cdef abort(self, Request req)
    cdef expire(self, Request req, str message)
    cdef bint absolute_form(self, Request req)
    cdef pause(self, int reason)
    cdef resume(self, int reason)
    cdef log(self, Request req)
    cdef close(self, bint abort)
    cdef linger(self, Request req)
    cdef bytes resolve_client(self, Request req)
    cdef suspend_on(self, Request req, object awaitable)
    cdef filter_done(self, Request req, object result)
