# WebSocket tunnels (DESIGN §3 special route kinds): after an upstream's 101 to a forwarded
# upgrade, the client connection and the upstream connection become one two-way byte tunnel.
#
# Call order: ClientCore.upstream_head sees the 101 -> Tunnel.open(client, upstream) -> from then
# on ClientCore.data_received and UpstreamCore.data_received hand their bytes to
# client_data / upstream_data, write-buffer pressure on one side pauses reading on the other, and
# either side closing (or idle_timeout, or the end of a drain's grace period: close_going_away)
# ends both. The frame trackers only find frame boundaries, so that a 1001 close frame is never
# written into the middle of a frame; the frames themselves pass through untouched.

cimport cython

cdef class ClientCore
cdef class UpstreamCore


cdef struct FrameTracker:
    unsigned char head[14]          # a frame header being read across reads
    int have                        # bytes of `head` read so far
    int need                        # header length, once the first two bytes are known (else 0)
    unsigned long long left         # payload bytes of the current frame still to pass


@cython.final
cdef class Tunnel:
    cdef ClientCore client
    cdef UpstreamCore upstream
    cdef Request req
    cdef public double last_active
    cdef double idle_timeout
    cdef FrameTracker to_upstream
    cdef FrameTracker to_client
    cdef long long up_bytes
    cdef bint closed

    @staticmethod
    cdef Tunnel open(ClientCore client, UpstreamCore upstream, Request req, double idle_timeout)
    cdef client_data(self, bytes data)
    cdef upstream_data(self, bytes data)
    cdef close(self, str why)
    cdef close_going_away(self)
