# WebSocket tunnels (see tunnel.pxd).

from libc.stdlib cimport rand


cdef inline void _track(FrameTracker* t, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """Moves the tracker past `n` bytes of a WebSocket stream (RFC 6455 §5.2): 2 header bytes,
    then 0, 2 or 8 bytes of length, then 4 mask bytes if masked, then the payload."""
    cdef Py_ssize_t i = 0, take
    cdef int b1, j
    cdef unsigned long long length
    while i < n:
        if t.left:
            take = n - i
            if <unsigned long long>take > t.left:
                take = <Py_ssize_t>t.left
            t.left -= take
            i += take
            continue
        t.head[t.have] = p[i]
        t.have += 1
        i += 1
        if t.have == 2:
            b1 = t.head[1] & 0x7f
            t.need = 2 + (2 if b1 == 126 else (8 if b1 == 127 else 0)) + (4 if t.head[1] & 0x80 else 0)
        if t.have >= 2 and t.have == t.need:
            b1 = t.head[1] & 0x7f
            if b1 == 126:
                length = (<unsigned long long>t.head[2] << 8) | t.head[3]
            elif b1 == 127:
                length = 0
                for j in range(8):
                    length = (length << 8) | t.head[2 + j]
            else:
                length = b1
            t.left = length
            t.have = 0
            t.need = 0


cdef inline bint _at_boundary(FrameTracker* t) noexcept nogil:
    return t.left == 0 and t.have == 0


# Close frames with status 1001 (going away): to the client unmasked, to the upstream masked
# (RFC 6455 §5.1: a client masks every frame, and here the gateway is the upstream's client).
cdef bytes _CLOSE_TO_CLIENT = b"\x88\x02\x03\xe9"


cdef bytes _close_to_upstream():
    cdef unsigned char frame[8]
    cdef int i
    frame[0] = 0x88
    frame[1] = 0x82
    for i in range(4):
        frame[2 + i] = <unsigned char>(rand() & 0xff)
    frame[6] = 0x03 ^ frame[2]
    frame[7] = 0xe9 ^ frame[3]
    return PyBytes_FromStringAndSize(<char*>frame, 8)


@cython.final
cdef class Tunnel:
    """One WebSocket connection passed through: bytes both ways, untouched."""

    @staticmethod
    cdef Tunnel open(ClientCore client, UpstreamCore upstream, Request req, double idle_timeout):
        cdef Tunnel t = Tunnel.__new__(Tunnel)
        t.client = client
        t.upstream = upstream
        t.req = req
        t.idle_timeout = idle_timeout
        t.last_active = _now()
        client.tunnel = t
        upstream.tunnel = t
        return t

    cdef client_data(self, bytes data):
        if self.closed:
            return
        self.last_active = _now()
        _track(&self.to_upstream, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        self.up_bytes += PyBytes_GET_SIZE(data)
        self.upstream.transport.write(data)

    cdef upstream_data(self, bytes data):
        if self.closed:
            return
        self.last_active = _now()
        _track(&self.to_client, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        self.req.sent += PyBytes_GET_SIZE(data)
        self.client.transport.write(data)

    cdef close(self, str why):
        """Ends both sides (one closed, or the tunnel idled out) and writes the log record."""
        if self.closed:
            return
        self.closed = True
        cdef ClientCore client = self.client
        cdef UpstreamCore upstream = self.upstream
        # Closed, not aborted: a close frame just written still goes out before the FIN.
        upstream.client = None
        upstream.closed = True
        if upstream.transport is not None:
            upstream.transport.close()
        upstream.pool.forget(upstream)
        client.up = None
        if client.transport is not None and not client.transport.is_closing():
            client.close(False)
        client.log(self.req)
        client.active = None

    cdef close_going_away(self):
        """The worker's grace period is over: a 1001 close frame each way where no frame is half
        written, then both connections close."""
        if self.closed:
            return
        if _at_boundary(&self.to_client) and self.client.transport is not None:
            self.client.transport.write(_CLOSE_TO_CLIENT)
        if _at_boundary(&self.to_upstream) and self.upstream.transport is not None:
            self.upstream.transport.write(_close_to_upstream())
        self.close("going away")

    def check_idle(self, double now):
        if not self.closed and now - self.last_active > self.idle_timeout:
            self.close("idle")

    @property
    def bytes_to_upstream(self):
        return self.up_bytes
