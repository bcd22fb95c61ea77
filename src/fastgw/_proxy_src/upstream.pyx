# The upstream side of the exchange (see upstream.pxd).

from libc.errno cimport EAGAIN, EINTR, errno

cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t recv(int fd, void* buf, size_t n, int flags)
    int MSG_PEEK
    int MSG_DONTWAIT

cdef class UpstreamCore:
    """One keep-alive connection to a target. It parses responses and hands every event to the
    client exchange it is bound to; it carries no per-request object of its own."""

    def __init__(self, TargetPool pool not None):
        self.pool = pool
        self.parser = _ResponseParser(self)
        self.hpairs = []

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        # A TLS connection's socket carries records the TLS layer reads on its own (a TLS 1.3
        # server sends session tickets after the handshake): it is never peeked.
        tls = transport.get_extra_info("ssl_object") is not None
        self.fd = sock.fileno() if sock is not None and not tls else -1

    def data_received(self, bytes data):
        if self.tunnel is not None:
            self.tunnel.upstream_data(data)
            return
        cdef ClientCore client = self.client
        if client is None or self.done:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.broken = True
            self.transport.abort()
            return
        self.got_bytes = True
        self.last_active = _now()
        if self.fresh:
            self.pool.proven(self)
        try:
            self.parser.feed_data(data)
        except _ParserUpgrade as exc:
            if self.tunnel is not None:
                # The 101 was accepted (ClientCore.upstream_head): what follows it is the tunnel's.
                rest = data[exc.args[0]:]
                if rest:
                    self.tunnel.upstream_data(rest)
                return
            client.upstream_failed(self, F_PROTOCOL, "upstream switched protocols unrequested")
            return
        except _ParserError as exc:
            if self.client is not None:
                client.upstream_failed(self, F_PROTOCOL, f"invalid upstream response: {exc}")
            return
        if self.done and self.client is not None:
            client.upstream_complete(self)
        else:
            client.flush()

    def connection_lost(self, exc):
        self.closed = True
        self.parser = None  # a cycle through its bound methods, as ClientCore.connection_lost
        if self.tunnel is not None:
            self.tunnel.close("upstream closed")
            return
        cdef ClientCore client = self.client
        if client is not None and not self.done:
            if self.until_close and exc is None:
                client.upstream_message_complete(self)
                self.done = True
                client.upstream_complete(self)
                return
            client.upstream_lost(self)
        else:
            self.pool.forget(self)

    def pause_writing(self):
        if self.client is not None:
            self.client.pause(P_UPSTREAM)

    def resume_writing(self):
        if self.client is not None:
            self.client.resume(P_UPSTREAM)

    # httptools callbacks. Once the response is complete (`done`), whatever llhttp still parses
    # from the same read is bytes after the response: ignored, and the connection is not reused.

    def on_message_begin(self):
        if self.done:
            self.broken = True
        self.hpairs = []

    def on_header(self, bytes name, bytes value):
        self.hpairs.append(name)
        self.hpairs.append(value)

    def on_headers_complete(self):
        if self.client is not None and not self.done:
            self.client.upstream_head(self, self.parser.get_status_code(), self.hpairs)

    def on_body(self, bytes body):
        if self.client is not None and not self.done:
            self.client.upstream_body(body)

    def on_message_complete(self):
        if self.client is not None and not self.done and self.client.upstream_message_complete(self):
            self.keep_alive = self.parser.should_keep_alive()
            self.done = True

    cdef bind(self, ClientCore client):
        self.client = client
        self.done = False
        self.until_close = False
        self.got_bytes = False
        self.last_active = _now()

    cpdef bint has_pending(self):
        """Whether the idle connection has bytes or an EOF waiting that the loop has not read
        yet: bytes after a response (a broken upstream) would otherwise be taken for the answer
        to the next request sent on it, so such a connection is never reused."""
        cdef char c
        cdef Py_ssize_t n
        if self.fd < 0:
            return False
        n = recv(self.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT)
        return n >= 0 or (errno != EAGAIN and errno != EINTR)

    cpdef release(self, bint reusable):
        """Ends the exchange: back to the pool when the response was complete and framed, closed
        otherwise (any doubt about where the next response starts means no reuse)."""
        self.client = None
        if reusable and not self.broken and not self.closed and self.keep_alive:
            self.pool.give(self)
        else:
            self.abort()

    cpdef abort(self):
        self.client = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.pool.forget(self)

    def timed_out(self):
        """Called by the sweeper when the upstream stayed silent past its read timeout."""
        if self.client is not None:
            self.client.upstream_failed(self, F_READ_TIMEOUT, "upstream read timed out")

    @property
    def busy(self):
        return self.client is not None
