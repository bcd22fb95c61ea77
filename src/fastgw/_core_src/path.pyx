# Path normalization (DESIGN §8 "Route matching", "Paths, further"). The gateway routes, authorizes
# and forwards the normalized path, so every spelling of one resource must reach one route and
# no spelling may smuggle a different meaning past auth to the upstream.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy


class PathError(ValueError):
    """The request target's path is malformed or ambiguous; the gateway answers 400."""


cdef inline int _hex_value(unsigned char c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


cdef inline bint _is_unreserved(unsigned char c) noexcept nogil:
    return ((65 <= c <= 90) or (97 <= c <= 122) or (48 <= c <= 57)
            or c == 45 or c == 46 or c == 95 or c == 126)


cdef inline bint _is_dot_segment(const char* buf, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t n = end - start
    return (n == 1 and buf[start] == b'.') or (n == 2 and buf[start] == b'.' and buf[start + 1] == b'.')


cdef inline Py_ssize_t _segment_end(const char* buf, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    while pos < n and buf[pos] != b'/':
        pos += 1
    return pos


cdef int _check_path(const char* buf, Py_ssize_t n) except -1:
    """Validates the whole path; returns 1 when normalization would change it, else 0. Doing both
    in one pass is what lets already-normal paths (nearly all traffic) go through allocation-free."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    cdef int hi, lo, v
    cdef int changes = 0
    if n == 0 or buf[0] != b'/':
        raise PathError("path must start with '/'")
    while i < n:
        c = <unsigned char>buf[i]
        if c < 0x21 or c >= 0x7F:
            raise PathError(f"invalid byte 0x{c:02x} in path")
        if c == b'#':
            raise PathError("fragment in path")
        if c == b'\\':
            raise PathError("backslash in path")
        if c == b'%':
            if i + 2 >= n:
                raise PathError("truncated percent-escape in path")
            hi = _hex_value(<unsigned char>buf[i + 1])
            lo = _hex_value(<unsigned char>buf[i + 2])
            if hi < 0 or lo < 0:
                raise PathError("invalid percent-escape in path")
            v = hi * 16 + lo
            if v == 0x2F:
                raise PathError("encoded slash (%2F) in path")
            if v == 0x5C:
                raise PathError("encoded backslash (%5C) in path")
            if v == 0:
                raise PathError("encoded NUL (%00) in path")
            if _is_unreserved(<unsigned char>v) or buf[i + 1] >= b'a' or buf[i + 2] >= b'a':
                changes = 1
            i += 3
            continue
        if c == b'/' and i + 1 < n:
            if buf[i + 1] == b'/':
                changes = 1
            elif buf[i + 1] == b'.' and _is_dot_segment(buf, i + 1, _segment_end(buf, i + 1, n)):
                changes = 1
        i += 1
    return changes


cdef Py_ssize_t _decode_unreserved(const char* src, Py_ssize_t n, char* dst) noexcept nogil:
    """Needs a path `_check_path` accepted. Only unreserved bytes are decoded, so the segment
    structure is unchanged and no decoded byte can be reinterpreted later."""
    cdef Py_ssize_t i = 0, w = 0
    cdef int v
    while i < n:
        if src[i] == b'%':
            v = _hex_value(<unsigned char>src[i + 1]) * 16 + _hex_value(<unsigned char>src[i + 2])
            if _is_unreserved(<unsigned char>v):
                dst[w] = <char>v
                w += 1
            else:
                dst[w] = b'%'
                dst[w + 1] = src[i + 1] - 32 if src[i + 1] >= b'a' else src[i + 1]
                dst[w + 2] = src[i + 2] - 32 if src[i + 2] >= b'a' else src[i + 2]
                w += 3
            i += 3
        else:
            dst[w] = src[i]
            w += 1
            i += 1
    return w


cdef Py_ssize_t _remove_dot_segments(const char* src, Py_ssize_t n, char* dst) except -1:
    """RFC 3986 §5.2.4 on a path starting with '/', except that climbing above the root is an
    error instead of being clamped: a request for `/../x` is an attack or a bug, never a resource.
    `dst` holds the output as a stack of "/segment" entries, so popping is a scan back to '/'."""
    cdef Py_ssize_t pos = 0, start, end, w = 0
    cdef bint last
    while pos < n:
        start = pos + 1
        end = _segment_end(src, start, n)
        last = end == n
        if _is_dot_segment(src, start, end):
            if end - start == 2:
                if w == 0:
                    raise PathError("path climbs above the root")
                w -= 1
                while dst[w] != b'/':
                    w -= 1
            if last:
                dst[w] = b'/'
                w += 1
        else:
            dst[w] = b'/'
            memcpy(dst + w + 1, src + start, end - start)
            w += 1 + end - start
        pos = end
    if w == 0:
        dst[0] = b'/'
        w = 1
    return w


cdef inline Py_ssize_t _merge_slashes(char* buf, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, w = 1
    for i in range(1, n):
        if buf[i] != b'/' or buf[w - 1] != b'/':
            buf[w] = buf[i]
            w += 1
    return w


cpdef bytes normalize_path(bytes raw):
    """Returns `raw` itself when it is already normal, so the common case costs one scan and no
    allocation; raises PathError for anything the gateway must refuse with 400."""
    if raw is None:
        raise TypeError("normalize_path() argument must be bytes, not None")
    cdef const char* src = PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    if not _check_path(src, n):
        return raw
    cdef char* work = <char*>PyMem_Malloc(2 * n)
    if work == NULL:
        raise MemoryError()
    cdef Py_ssize_t m
    try:
        m = _decode_unreserved(src, n, work)
        m = _remove_dot_segments(work, m, work + n)
        m = _merge_slashes(work + n, m)
        return PyBytes_FromStringAndSize(work + n, m)
    finally:
        PyMem_Free(work)
