# The access log, rendered in C (DESIGN §3 step 6: exactly one record per request).
#
# Why here: building a dict and serialising it cost ~6k instructions per request (callgrind),
# more than routing and both heads together. Records are rendered straight into one buffer and
# written by `flush`, which the worker's sweeper calls every tick, so a request costs no syscall,
# and stamped with their own time without one either (see accesslog.pxd).

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.errno cimport EINTR, errno
from posix.unistd cimport write as _c_write

cdef enum:
    LOG_FLUSH_AT = 64 * 1024


cdef const char* _HEX = b"0123456789abcdef"
cdef const char* _MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"


cdef inline void _digits(char* out, long long v, int n) noexcept:
    cdef int i
    for i in range(n - 1, -1, -1):
        out[i] = <char>(48 + v % 10)
        v //= 10


cdef void _render_second(long long t, char* iso, char* clf) noexcept:
    """`t` (Unix seconds, UTC) as `2026-12-05T01:02:03` (19 bytes) and as the combined log
    format's `05/Dec/2026:01:02:03 +0000` (26 bytes). The date is Hinnant's days_from_civil
    inverse: no libc call, no time zone."""
    cdef long long days = t // 86400
    cdef long long secs = t - days * 86400
    cdef long long z = days + 719468
    cdef long long era = (z if z >= 0 else z - 146096) // 146097
    cdef long long doe = z - era * 146097
    cdef long long yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef long long doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef long long mp = (5 * doy + 2) // 153
    cdef long long day = doy - (153 * mp + 2) // 5 + 1
    cdef long long month = mp + 3 if mp < 10 else mp - 9
    cdef long long year = yoe + era * 400 + (1 if month <= 2 else 0)
    cdef long long hh = secs // 3600, mm = secs // 60 % 60, ss = secs % 60
    _digits(iso, year, 4)
    iso[4] = b"-"
    _digits(iso + 5, month, 2)
    iso[7] = b"-"
    _digits(iso + 8, day, 2)
    iso[10] = b"T"
    _digits(iso + 11, hh, 2)
    iso[13] = b":"
    _digits(iso + 14, mm, 2)
    iso[16] = b":"
    _digits(iso + 17, ss, 2)
    _digits(clf, day, 2)
    clf[2] = b"/"
    memcpy(clf + 3, _MONTHS + 3 * (month - 1), 3)
    clf[6] = b"/"
    _digits(clf + 7, year, 4)
    clf[11] = b":"
    memcpy(clf + 12, iso + 11, 8)
    memcpy(clf + 20, b" +0000", 6)


cdef inline bint _plain8(const char* s) noexcept nogil:
    """Whether none of 8 bytes needs escaping in a JSON string (a control byte, DEL, non-ASCII,
    `"` or `\\`): one word test, so the common run of plain bytes costs a few instructions per 8."""
    cdef uint64_t w, ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL, q, bs
    memcpy(&w, s, 8)
    q = w ^ (ones * 34)
    bs = w ^ (ones * 92)
    return ((w - ones * 0x20) | (w + ones) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | w) & highs == 0


cdef int _json_str(OutBuf* b, const char* s, Py_ssize_t n) except -1:
    """A JSON string body: bytes are read as Latin-1, so the record is always valid UTF-8 JSON."""
    cdef Py_ssize_t i = 0, run = 0
    cdef unsigned char c
    cdef char esc[6]
    while i < n:
        if i + 8 <= n and _plain8(s + i):
            i += 8
            continue
        c = <unsigned char>s[i]
        i += 1
        if c != 34 and c != 92 and 0x20 <= c < 0x7f:
            continue
        # Copy the run of plain bytes before this one in one piece.
        if i - 1 > run:
            buf_add(b, s + run, i - 1 - run)
        run = i
        if c == 34 or c == 92:
            esc[0] = 92
            esc[1] = c
            buf_add(b, esc, 2)
        elif c >= 0x80:
            # Latin-1 code point as UTF-8 (two bytes).
            esc[0] = <char>(0xc0 | (c >> 6))
            esc[1] = <char>(0x80 | (c & 0x3f))
            buf_add(b, esc, 2)
        else:
            esc[0] = 92
            esc[1] = 117
            esc[2] = 48
            esc[3] = 48
            esc[4] = _HEX[c >> 4]
            esc[5] = _HEX[c & 15]
            buf_add(b, esc, 6)
    if n > run:
        buf_add(b, s + run, n - run)
    return 0


cdef int _json_bytes(OutBuf* b, bytes s) except -1:
    if s is None:
        return buf_add(b, b"null", 4)
    buf_add(b, b"\"", 1)
    _json_str(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s))
    return buf_add(b, b"\"", 1)


cdef int _clf_str(OutBuf* b, bytes s) except -1:
    """A quoted combined-log field: `"` and `\\` and non-printable bytes as \\xHH (as nginx)."""
    if s is None:
        return buf_add(b, b"-", 1)
    cdef const char* p = PyBytes_AS_STRING(s)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(s)
    cdef unsigned char c
    cdef char esc[4]
    for i in range(n):
        c = <unsigned char>p[i]
        if c == 34 or c == 92 or c < 0x20 or c >= 0x7f:
            esc[0] = 92
            esc[1] = 120
            esc[2] = _HEX[c >> 4]
            esc[3] = _HEX[c & 15]
            buf_add(b, esc, 4)
        else:
            buf_add(b, p + i, 1)
    return 0


cdef class AccessLog:
    """Buffered access-log writer over a file descriptor (-1: logging off)."""

    def __init__(self, int fd, str format, WallClock clock=None):
        self.fd = fd
        self.json = format == "json"
        self.clock = clock if clock is not None else WallClock()
        self.second = -1
        self.on_error = None

    def __dealloc__(self):
        buf_free(&self.buf)

    def set_fd(self, int fd):
        """Points the log at a new descriptor (after USR1 reopened the file); flush first."""
        self.fd = fd

    def tick(self):
        self.flush()

    cdef int stamp(self, double now) except -1:
        cdef long long ms = <long long>(self.clock.wall(now) * 1000.0)
        cdef long long second = ms // 1000
        if second != self.second:
            self.second = second
            _render_second(second, self.iso, self.clf)
        return <int>(ms - second * 1000)

    def timestamp(self, double mono):
        """The JSON `ts` text of a record made at monotonic time `mono` (for tests)."""
        cdef int ms = self.stamp(mono)
        cdef char out[24]
        memcpy(out, self.iso, 19)
        out[19] = b"."
        out[20] = <char>(48 + ms // 100)
        out[21] = <char>(48 + ms // 10 % 10)
        out[22] = <char>(48 + ms % 10)
        out[23] = b"Z"
        return PyBytes_FromStringAndSize(out, 24)

    def clf_time(self, double mono):
        """The combined format's time, without its brackets, for monotonic time `mono`."""
        self.stamp(mono)
        return PyBytes_FromStringAndSize(self.clf, 26)

    cdef int record(self, bytes peer, Request req) except -1:
        if self.fd < 0:
            return 0
        cdef OutBuf* b = &self.buf
        cdef double now = _now()
        cdef long long us = <long long>((now - req.t0) * 1e6)
        cdef Py_ssize_t label_len = 0
        cdef const char* label
        cdef int ms = self.stamp(now)
        cdef char frac[6]
        cdef PyObject* trace
        if us < 0:
            us = 0
        if self.json:
            buf_add(b, b"{\"ts\":\"", 7)
            buf_add(b, self.iso, 19)
            frac[0] = b"."
            frac[1] = <char>(48 + ms // 100)
            frac[2] = <char>(48 + ms // 10 % 10)
            frac[3] = <char>(48 + ms % 10)
            frac[4] = b"Z"
            buf_add(b, frac, 5)
            buf_add(b, b"\",\"remote\":", 11)
            _json_bytes(b, peer)
            buf_add(b, b",\"method\":", 10)
            _json_bytes(b, req.method)
            buf_add(b, b",\"uri\":", 7)
            _json_bytes(b, req.url)
            buf_add(b, b",\"status\":", 10)
            buf_add_int(b, req.status, 10)
            buf_add(b, b",\"bytes\":", 9)
            buf_add_int(b, req.sent, 10)
            buf_add(b, b",\"duration_ms\":", 15)
            buf_add_int(b, us // 1000, 10)
            buf_add(b, b".", 1)
            buf_add(b, _HEX + (us % 1000) // 100, 1)
            buf_add(b, _HEX + (us % 100) // 10, 1)
            buf_add(b, _HEX + us % 10, 1)
            buf_add(b, b",\"upstream\":\"", 13)
            label = PyUnicode_AsUTF8AndSize(req.upstream, &label_len)
            _json_str(b, label, label_len)
            buf_add(b, b"\",\"request_id\":", 15)
            _json_bytes(b, req.rid)
            buf_add(b, b",\"trace_id\":", 12)
            trace = PyDict_GetItem(req._vars, "trace") if req._vars is not None else NULL
            if trace != NULL and type(<object>trace) is TraceSpan:
                buf_add(b, b"\"", 1)
                buf_add(b, (<TraceSpan>trace).trace, 32)
                buf_add(b, b"\"}\n", 3)
            else:
                buf_add(b, b"null}\n", 6)
        else:
            buf_addb(b, peer)
            buf_add(b, b" - - [", 6)
            buf_add(b, self.clf, 26)
            buf_add(b, b"] \"", 3)
            _clf_str(b, req.method)
            buf_add(b, b" ", 1)
            _clf_str(b, req.url)
            if req.ver == 11:
                buf_add(b, b" HTTP/1.1\" ", 11)
            elif req.ver == 10:
                buf_add(b, b" HTTP/1.0\" ", 11)
            else:
                buf_add(b, b"\" ", 2)
            buf_add_int(b, req.status, 10)
            buf_add(b, b" ", 1)
            buf_add_int(b, req.sent, 10)
            buf_add(b, b" \"", 2)
            _clf_str(b, req.referer)
            buf_add(b, b"\" \"", 3)
            _clf_str(b, req.ua)
            buf_add(b, b"\"\n", 2)
        if b.len > LOG_FLUSH_AT:
            self.flush()
        return 0

    def write(self, bytes peer, Request req):
        self.record(peer, req)

    cpdef flush(self):
        cdef Py_ssize_t done = 0
        cdef Py_ssize_t n
        cdef OutBuf* b = &self.buf
        if b.len == 0 or self.fd < 0:
            b.len = 0
            return
        while done < b.len:
            with nogil:
                n = _c_write(self.fd, b.data + done, b.len - done)
            if n < 0:
                if errno == EINTR:
                    continue
                if self.on_error is not None:
                    self.on_error(errno)
                break
            done += n
        b.len = 0

    @property
    def buffered(self):
        return self.buf.len
