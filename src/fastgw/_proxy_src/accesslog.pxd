# The access log (DESIGN §3 step 6): one record per request, rendered in C into a buffer that
# the worker's sweeper flushes every tick, so a request costs no syscall.
#
# Call order: record(peer, req) once per request (ClientCore.log); flush() per tick and on exit.

cdef class AccessLog:
    cdef readonly int fd
    cdef bint json
    cdef OutBuf buf
    cdef bytes now_text
    cdef public object on_error

    cdef int record(self, bytes peer, Request req) except -1
    cpdef flush(self)
