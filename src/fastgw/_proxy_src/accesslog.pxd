# The access log (DESIGN §3 step 6): one record per request, rendered in C into a buffer that
# the worker's sweeper flushes every tick, so a request costs no syscall.
#
# Call order: record(peer, req) once per request (ClientCore.log); flush() per tick and on exit.
#
# Time: each record is stamped with its own time, read from the monotonic clock the duration
# needs anyway and turned into wall-clock time by the worker's WallClock (anchored every tick);
# the text of the current second is rendered once per second, the milliseconds per record.

cdef class AccessLog:
    cdef readonly int fd
    cdef bint json
    cdef OutBuf buf
    cdef public WallClock clock
    cdef long long second            # the second `iso` and `clf` render
    cdef char iso[19]                # 2026-12-05T01:02:03
    cdef char clf[26]                # 05/Dec/2026:01:02:03 +0000
    cdef public object on_error

    cdef int stamp(self, double now) except -1    # milliseconds within the second

    cdef int record(self, bytes peer, Request req) except -1
    cpdef flush(self)
