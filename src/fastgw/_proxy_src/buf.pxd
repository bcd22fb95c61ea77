# Output buffers: growable C byte buffers that a head, a chunk frame or a log record is rendered
# into, then taken as one bytes object (one allocation, one write). Every compiled file that
# renders bytes uses these helpers; they are `inline` here so that each use is a memcpy.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memcpy


cdef struct OutBuf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef inline int buf_grow(OutBuf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap = b.cap * 2 if b.cap else 1024
    while cap < need:
        cap *= 2
    cdef char* data = <char*>PyMem_Realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    return 0


cdef inline int buf_add(OutBuf* b, const char* s, Py_ssize_t n) except -1:
    if b.len + n > b.cap:
        buf_grow(b, b.len + n)
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline int buf_addb(OutBuf* b, bytes s) except -1:
    return buf_add(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))


cdef inline int buf_add_int(OutBuf* b, Py_ssize_t v, int base) except -1:
    """`v` (>= 0) in `base` (10 or 16), lower-case digits."""
    cdef char tmp[24]
    cdef int i = 24
    cdef const char* digits = b"0123456789abcdef"
    if v <= 0:
        return buf_add(b, b"0", 1)
    while v > 0:
        i -= 1
        tmp[i] = digits[v % base]
        v //= base
    return buf_add(b, tmp + i, 24 - i)


cdef inline int buf_add_line(OutBuf* b, bytes name, bytes value) except -1:
    """`name: value\r\n`."""
    buf_addb(b, name)
    buf_add(b, b": ", 2)
    buf_addb(b, value)
    return buf_add(b, b"\r\n", 2)


cdef inline bytes buf_take(OutBuf* b):
    cdef bytes out = PyBytes_FromStringAndSize(b.data, b.len)
    b.len = 0
    return out


cdef inline void buf_free(OutBuf* b) noexcept:
    if b.data != NULL:
        PyMem_Free(b.data)
        b.data = NULL
    b.len = 0
    b.cap = 0
