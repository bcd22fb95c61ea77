# One keep-alive connection to a target (asyncpg shape: this cdef core plus the asyncio.Protocol
# subclass fastgw.upstream.connection.UpstreamConnection).
#
# Call order: pool.take()/connect() -> bind(client) -> the client writes the request ->
# data_received -> httptools -> client.upstream_head / upstream_body* / upstream_message_complete
# -> client.upstream_complete -> release(reusable) (back to the pool, or closed). Failures go to
# client.upstream_failed(conn, failure, message) or client.upstream_lost(conn).

cdef class UpstreamCore:
    cdef public TargetPool pool
    cdef public object transport
    cdef object parser
    cdef ClientCore client
    cdef list hpairs
    cdef public bint closed
    cdef public bint reused
    cdef public double last_active
    cdef bint got_bytes              # a byte of the current response arrived
    cdef bint done                   # the current response is complete
    cdef bint broken                 # framing in doubt: never reused
    cdef bint until_close            # the current response ends when the connection closes
    cdef bint keep_alive
    cdef public bint fresh           # new, and the target has not answered on it yet: holds a
                                     # connect slot of its pool (TargetPool.unproven)
    cdef int fd                      # the socket, for the idle check before reuse
    cdef Tunnel tunnel               # after a 101: the tunnel its bytes go to

    cpdef bint has_pending(self)
    cdef bind(self, ClientCore client)
    cpdef release(self, bint reusable)
    cpdef abort(self)
