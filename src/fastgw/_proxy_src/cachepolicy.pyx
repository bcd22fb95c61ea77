# RFC 9111 as pure functions, for the cache filter (cache.pyx): Cache-Control directives, HTTP
# dates, the freshness lifetime and age of a response (§4.2), and the Cache-Status field (RFC 9211)
# rendered by a small renderer of exactly the structured-field grammar it uses (RFC 8941 §4.1:
# an sf-list of one sf-item whose parameters are booleans, integers and tokens).
#
# Nothing here reads a clock or a connection: times come in as arguments (ns), so that the
# property tests (tests/unit/test_cache_freshness.py) can hold them against a plain-Python model
# of §4.2 built from the RFC text.
#
# Interpretation choices, where the RFC leaves one (the model makes the same):
# - a directive given twice: its first occurrence counts (§4.2.1 allows first-or-stale);
# - max-age / s-maxage that are not delta-seconds: the response is stale (lifetime 0), and it is
#   still "explicit" freshness (§4.2.1: caches are encouraged to treat them so);
# - delta-seconds above 2**31 count as 2**31 (§1.2.2); the quoted form "5" is accepted;
# - an Expires that is not an HTTP-date (e.g. "0") is in the past (§5.3): lifetime 0;
# - a missing or invalid Date is the time the response was received (RFC 9110 §6.6.1);
# - an Age that is not a non-negative integer is ignored; of a list, the first member counts.

from libc.stdint cimport INT64_MIN, int64_t
from libc.string cimport memcmp

cdef int64_t CC_ABSENT = -1
cdef int64_t CC_INVALID = -2
cdef int64_t CC_ANY = -3
cdef int64_t CC_DELTA_MAX = 2147483648
cdef int64_t NS = 1000000000
cdef int64_t DATE_INVALID = INT64_MIN

# Statuses a route ttl may apply to (DESIGN §8, "Cache further").
cdef frozenset TTL_STATUSES = frozenset((200, 203, 300, 301, 308))
# Statuses the cache may store at all: final, understood, not partial or 304. Errors only with
# explicit freshness (the caller checks), so a client cannot plant a 4xx/5xx (CPDoS).
cdef frozenset STORABLE_STATUSES = frozenset((200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405,
                                              410, 414, 451, 500, 501, 502, 503, 504))


cdef inline void cc_init(CacheControl* cc) noexcept:
    cc.present = False
    cc.no_store = False
    cc.no_cache = False
    cc.private_ = False
    cc.public = False
    cc.must_revalidate = False
    cc.proxy_revalidate = False
    cc.only_if_cached = False
    cc.max_age = CC_ABSENT
    cc.s_maxage = CC_ABSENT
    cc.swr = CC_ABSENT
    cc.sie = CC_ABSENT
    cc.max_stale = CC_ABSENT
    cc.min_fresh = CC_ABSENT


cdef inline bint _cp_ows(char c) noexcept:
    return c == b" " or c == b"\t"


cdef int64_t delta_seconds(const char* p, Py_ssize_t n) noexcept:
    """1*DIGIT, capped at 2**31; CC_INVALID for anything else (the quoted form included: the
    caller unquotes)."""
    cdef int64_t v = 0
    cdef Py_ssize_t i
    if n <= 0:
        return CC_INVALID
    for i in range(n):
        if not (b"0" <= p[i] <= b"9"):
            return CC_INVALID
        if v < CC_DELTA_MAX:
            v = v * 10 + (p[i] - 48)
    return v if v < CC_DELTA_MAX else CC_DELTA_MAX


cdef inline bint _cp_name_is(const char* p, Py_ssize_t n, const char* lit, Py_ssize_t ln) noexcept:
    return n == ln and ieq(p, lit, n)


cdef void cc_parse(bytes value, CacheControl* cc) noexcept:
    """Adds the directives of one Cache-Control field line to `cc`."""
    cdef const char* p = PyBytes_AS_STRING(value)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value), i = 0, ns, ne, vs, ve
    cdef bint quoted
    cdef char unq[24]
    cdef Py_ssize_t un
    cdef int64_t d
    cc.present = True
    while i < n:
        while i < n and (_cp_ows(p[i]) or p[i] == b","):
            i += 1
        ns = i
        while i < n and p[i] != b"=" and p[i] != b"," and not _cp_ows(p[i]):
            i += 1
        ne = i
        while i < n and _cp_ows(p[i]):
            i += 1
        vs = ve = -1
        quoted = False
        if i < n and p[i] == b"=":
            i += 1
            while i < n and _cp_ows(p[i]):
                i += 1
            if i < n and p[i] == b'"':
                quoted = True
                i += 1
                un = 0
                while i < n and p[i] != b'"':
                    if p[i] == b"\\" and i + 1 < n:
                        i += 1
                    if un < 24:
                        unq[un] = p[i]
                    un += 1
                    i += 1
                if i < n:
                    i += 1
            else:
                vs = i
                while i < n and p[i] != b"," and not _cp_ows(p[i]):
                    i += 1
                ve = i
        while i < n and p[i] != b",":
            i += 1
        if ne == ns:
            continue
        if quoted:
            d = delta_seconds(unq, un) if un <= 24 else CC_INVALID
        elif vs >= 0:
            d = delta_seconds(p + vs, ve - vs)
        else:
            d = CC_ABSENT
        if _cp_name_is(p + ns, ne - ns, b"max-age", 7):
            if cc.max_age == CC_ABSENT:
                cc.max_age = d if d != CC_ABSENT else CC_INVALID
        elif _cp_name_is(p + ns, ne - ns, b"s-maxage", 8):
            if cc.s_maxage == CC_ABSENT:
                cc.s_maxage = d if d != CC_ABSENT else CC_INVALID
        elif _cp_name_is(p + ns, ne - ns, b"no-store", 8):
            cc.no_store = True
        elif _cp_name_is(p + ns, ne - ns, b"no-cache", 8):
            cc.no_cache = True          # the qualified form counts as the unqualified one
        elif _cp_name_is(p + ns, ne - ns, b"private", 7):
            cc.private_ = True          # idem
        elif _cp_name_is(p + ns, ne - ns, b"public", 6):
            cc.public = True
        elif _cp_name_is(p + ns, ne - ns, b"must-revalidate", 15):
            cc.must_revalidate = True
        elif _cp_name_is(p + ns, ne - ns, b"proxy-revalidate", 16):
            cc.proxy_revalidate = True
        elif _cp_name_is(p + ns, ne - ns, b"stale-while-revalidate", 22):
            if cc.swr == CC_ABSENT and d >= 0:
                cc.swr = d
        elif _cp_name_is(p + ns, ne - ns, b"stale-if-error", 14):
            if cc.sie == CC_ABSENT and d >= 0:
                cc.sie = d
        elif _cp_name_is(p + ns, ne - ns, b"max-stale", 9):
            if cc.max_stale == CC_ABSENT:
                cc.max_stale = d if d >= 0 else CC_ANY
        elif _cp_name_is(p + ns, ne - ns, b"min-fresh", 9):
            if cc.min_fresh == CC_ABSENT and d >= 0:
                cc.min_fresh = d
        elif _cp_name_is(p + ns, ne - ns, b"only-if-cached", 14):
            cc.only_if_cached = True


def cache_control(*values):
    """The directives of Cache-Control field lines, as a dict (tests, tools)."""
    cdef CacheControl cc
    cc_init(&cc)
    for v in values:
        cc_parse(bytes(v), &cc)
    def num(int64_t x):
        return None if x == CC_ABSENT else ("invalid" if x == CC_INVALID else ("any" if x == CC_ANY else x))
    return {"no-store": cc.no_store, "no-cache": cc.no_cache, "private": cc.private_, "public": cc.public,
            "must-revalidate": cc.must_revalidate, "proxy-revalidate": cc.proxy_revalidate,
            "only-if-cached": cc.only_if_cached, "max-age": num(cc.max_age), "s-maxage": num(cc.s_maxage),
            "stale-while-revalidate": num(cc.swr), "stale-if-error": num(cc.sie), "max-stale": num(cc.max_stale),
            "min-fresh": num(cc.min_fresh)}


# ---- HTTP dates (RFC 9110 §5.6.7) -------------------------------------------------------------

cdef const char* _cp_DAY_NAMES = b"MonTueWedThuFriSatSun"
cdef const char* _cp_MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"
cdef tuple _cp_DAY_NAMES_LONG = (b"Monday", b"Tuesday", b"Wednesday", b"Thursday", b"Friday", b"Saturday", b"Sunday")
cdef int[12] _cp_MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y -= 1 if m <= 2 else 0
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline bint _cp_leap(int64_t y) noexcept:
    return (y % 4 == 0 and y % 100 != 0) or y % 400 == 0


cdef inline int _cp_digits(const char* p, int n) noexcept:
    cdef int v = 0, i
    for i in range(n):
        if not (b"0" <= p[i] <= b"9"):
            return -1
        v = v * 10 + (p[i] - 48)
    return v


cdef inline int _cp_month(const char* p) noexcept:
    cdef int i
    for i in range(12):
        if p[0] == _cp_MONTHS[3 * i] and p[1] == _cp_MONTHS[3 * i + 1] and p[2] == _cp_MONTHS[3 * i + 2]:
            return i + 1
    return 0


cdef inline bint _cp_short_day(const char* p) noexcept:
    cdef int i
    for i in range(7):
        if p[0] == _cp_DAY_NAMES[3 * i] and p[1] == _cp_DAY_NAMES[3 * i + 1] and p[2] == _cp_DAY_NAMES[3 * i + 2]:
            return True
    return False


cdef int64_t _cp_stamp(int64_t year, int month, int day, const char* t) noexcept:
    """Seconds since the epoch, `t` pointing at "HH:MM:SS"; DATE_INVALID when out of range."""
    cdef int hh, mm, ss, mdays
    if month < 1 or t[2] != b":" or t[5] != b":":
        return DATE_INVALID
    hh = _cp_digits(t, 2)
    mm = _cp_digits(t + 3, 2)
    ss = _cp_digits(t + 6, 2)
    if hh < 0 or mm < 0 or ss < 0 or hh > 23 or mm > 59 or ss > 60:
        return DATE_INVALID
    mdays = _cp_MONTH_DAYS[month - 1] + (1 if month == 2 and _cp_leap(year) else 0)
    if day < 1 or day > mdays:
        return DATE_INVALID
    return days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss


cdef int64_t parse_http_date(bytes value, int64_t now_s) noexcept:
    """Seconds since the epoch of an HTTP-date in any of its three formats (IMF-fixdate, RFC 850,
    asctime), surrounding whitespace ignored; DATE_INVALID otherwise. `now_s` places an RFC 850
    two-digit year: one more than 50 years ahead is the century before."""
    cdef bytes v = value.strip(b" \t")
    cdef const char* p = PyBytes_AS_STRING(v)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v), comma
    cdef int day, year, yy
    cdef int64_t y, stamp
    if n == 29 and p[3] == b"," and p[4] == b" " and p[7] == b" " and p[11] == b" " and p[16] == b" " \
            and p[25] == b" " and memcmp(p + 26, b"GMT", 3) == 0 and _cp_short_day(p):
        # IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        day = _cp_digits(p + 5, 2)
        year = _cp_digits(p + 12, 4)
        if day < 0 or year < 0:
            return DATE_INVALID
        return _cp_stamp(year, _cp_month(p + 8), day, p + 17)
    if n == 24 and p[3] == b" " and p[7] == b" " and p[10] == b" " and p[19] == b" " and _cp_short_day(p):
        # asctime: Sun Nov  6 08:49:37 1994
        if p[8] == b" ":
            day = _cp_digits(p + 9, 1)
        else:
            day = _cp_digits(p + 8, 2)
        year = _cp_digits(p + 20, 4)
        if day < 0 or year < 0:
            return DATE_INVALID
        return _cp_stamp(year, _cp_month(p + 4), day, p + 11)
    comma = v.find(b",")
    if comma >= 6 and v[:comma] in _cp_DAY_NAMES_LONG and n - comma == 24:
        # RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        p = p + comma
        if not (p[1] == b" " and p[4] == b"-" and p[8] == b"-" and p[11] == b" " and p[20] == b" "
                and memcmp(p + 21, b"GMT", 3) == 0):
            return DATE_INVALID
        day = _cp_digits(p + 2, 2)
        yy = _cp_digits(p + 9, 2)
        if day < 0 or yy < 0:
            return DATE_INVALID
        y = _cp_civil_year(now_s)
        y = (y // 100) * 100 + yy
        stamp = _cp_stamp(y, _cp_month(p + 5), day, p + 12)
        if stamp != DATE_INVALID and stamp > now_s + 50 * 31556952:
            stamp = _cp_stamp(y - 100, _cp_month(p + 5), day, p + 12)
        return stamp
    return DATE_INVALID


cdef int64_t _cp_civil_year(int64_t s) noexcept:
    cdef int64_t z = s // 86400 + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0)


cdef bytes format_http_date(int64_t s):
    """IMF-fixdate of `s` seconds since the epoch."""
    cdef int64_t z = s // 86400, secs = s - (s // 86400) * 86400
    cdef int64_t wd = (z + 3) % 7          # 1970-01-01 was a Thursday: 0 is Monday
    z += 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t d = doy - (153 * mp + 2) // 5 + 1
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    cdef int64_t y = yoe + era * 400 + (1 if m <= 2 else 0)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _cp_DAY_NAMES[3 * wd:3 * wd + 3], d, _cp_MONTHS[3 * (m - 1):3 * m], y, secs // 3600, secs // 60 % 60, secs % 60)


def http_date(int64_t seconds):
    """IMF-fixdate of `seconds` since the epoch (tests, tools)."""
    return format_http_date(seconds)


def parse_date(bytes value not None, int64_t now=0):
    """Seconds since the epoch of an HTTP-date, or None (tests, tools); `now` places RFC 850
    two-digit years."""
    cdef int64_t v = parse_http_date(value, now)
    return None if v == DATE_INVALID else v


# ---- a response's freshness (RFC 9111 §4.2) ---------------------------------------------------

cdef void resp_info(list headers, int64_t now_s, RespInfo* ri):
    """What the freshness and storage rules need from a response's headers (a flat [name,
    value, ...] list)."""
    cdef Py_ssize_t i, n = len(headers), ln
    cdef bytes name, value, v, part
    cdef const char* p
    cdef bint have_date = False, have_age = False
    cc_init(&ri.cc)
    ri.date = DATE_INVALID
    ri.expires = DATE_INVALID
    ri.has_expires = False
    ri.age = -1
    ri.vary_star = False
    ri.nvary = 0
    ri.set_cookie = False
    ri.etag = False
    ri.last_modified = False
    for i in range(0, n, 2):
        name = <bytes>headers[i]
        value = <bytes>headers[i + 1]
        p = PyBytes_AS_STRING(name)
        ln = PyBytes_GET_SIZE(name)
        if ln == 13 and ieq(p, b"cache-control", 13):
            cc_parse(value, &ri.cc)
        elif ln == 4 and ieq(p, b"date", 4):
            if not have_date:
                have_date = True
                ri.date = parse_http_date(value, now_s)
        elif ln == 7 and ieq(p, b"expires", 7):
            if not ri.has_expires:
                ri.has_expires = True
                ri.expires = parse_http_date(value, now_s)
        elif ln == 3 and ieq(p, b"age", 3):
            if not have_age:
                have_age = True
                v = value.split(b",", 1)[0].strip(b" \t")
                ri.age = delta_seconds(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v))
                if ri.age < 0:
                    ri.age = -1
        elif ln == 4 and ieq(p, b"vary", 4):
            for part in value.split(b","):
                part = part.strip(b" \t")
                if part == b"*":
                    ri.vary_star = True
                elif part:
                    ri.nvary += 1
        elif ln == 10 and ieq(p, b"set-cookie", 10):
            ri.set_cookie = True
        elif ln == 4 and ieq(p, b"etag", 4):
            ri.etag = True
        elif ln == 13 and ieq(p, b"last-modified", 13):
            ri.last_modified = True


cdef int64_t explicit_lifetime_ns(RespInfo* ri, int64_t response_time_ns) noexcept:
    """§4.2.1 for a shared cache: s-maxage, else max-age, else Expires minus Date; -1 when the
    response states no freshness at all."""
    cdef int64_t date_ns
    if ri.cc.s_maxage != CC_ABSENT:
        return ri.cc.s_maxage * NS if ri.cc.s_maxage >= 0 else 0
    if ri.cc.max_age != CC_ABSENT:
        return ri.cc.max_age * NS if ri.cc.max_age >= 0 else 0
    if ri.has_expires:
        if ri.expires == DATE_INVALID:
            return 0
        date_ns = ri.date * NS if ri.date != DATE_INVALID else response_time_ns
        return ri.expires * NS - date_ns if ri.expires * NS > date_ns else 0
    return -1


cdef int64_t initial_age_ns(RespInfo* ri, int64_t request_time_ns, int64_t response_time_ns) noexcept:
    """§4.2.3: the corrected initial age, from Age, Date and the request's round trip."""
    cdef int64_t date_ns = ri.date * NS if ri.date != DATE_INVALID else response_time_ns
    cdef int64_t apparent = response_time_ns - date_ns if response_time_ns > date_ns else 0
    cdef int64_t delay = response_time_ns - request_time_ns if response_time_ns > request_time_ns else 0
    cdef int64_t corrected = (ri.age if ri.age >= 0 else 0) * NS + delay
    return apparent if apparent > corrected else corrected


def cache_freshness(headers, double request_time, double response_time, ttl=None, int status=200):
    """(freshness lifetime or None, corrected initial age), in seconds, of a response with
    `headers` ((name, value) pairs of bytes) requested at `request_time` and received at
    `response_time` (seconds since the epoch); `ttl` is the route's, applied as RFC 9111 and
    DESIGN §8 say. None: the response may not be stored for want of freshness. A stored response
    is fresh at `now` iff lifetime > initial_age + (now - response_time)."""
    cdef RespInfo ri
    cdef list flat = []
    for name, value in headers:
        flat.append(bytes(name))
        flat.append(bytes(value))
    cdef int64_t resp_ns = <int64_t>(response_time * 1e9), req_ns = <int64_t>(request_time * 1e9)
    resp_info(flat, resp_ns // NS, &ri)
    cdef int64_t life = explicit_lifetime_ns(&ri, resp_ns)
    if life < 0 and ttl is not None and status in TTL_STATUSES:
        life = <int64_t>(ttl * 1e9)
    return (None if life < 0 else life / 1e9), initial_age_ns(&ri, req_ns, resp_ns) / 1e9


# ---- Cache-Status (RFC 9211), rendered as RFC 8941 structured fields ------------------------

cdef bytes CACHE_NAME = b"fastgw"
cdef bytes _cp_SF_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:/"
cdef bytes _cp_SF_KEYCHAR = b"abcdefghijklmnopqrstuvwxyz0123456789_-.*"


def sf_token(bytes t not None):
    """`t` if it is an sf-token (RFC 8941 §3.3.4: ALPHA or "*", then tchar, ":" or "/")."""
    if not t or not (t[:1].isalpha() or t[:1] == b"*") or t.translate(None, _cp_SF_TCHAR):
        raise ValueError(f"{t!r} is not an sf-token")
    return t


def sf_key(bytes k not None):
    """`k` if it is an sf-key (RFC 8941 §3.1.2: lcalpha or "*", then lcalpha, DIGIT, _ - . *)."""
    if not k or not (b"a" <= k[:1] <= b"z" or k[:1] == b"*") or k.translate(None, _cp_SF_KEYCHAR):
        raise ValueError(f"{k!r} is not an sf-key")
    return k


def sf_item(bytes token, params=()):
    """An sf-item whose bare item is a token, with `params` ((key, value) pairs: True renders
    the bare key, an int an sf-integer, bytes an sf-token). What Cache-Status needs, nothing more."""
    out = [sf_token(token)]
    for key, value in params:
        out.append(b"; " + sf_key(key))
        if value is True:
            continue
        if isinstance(value, bool):
            out.append(b"=?0")
        elif isinstance(value, int):
            if not -999999999999999 <= value <= 999999999999999:
                raise ValueError(f"{value} is out of the sf-integer range")
            out.append(b"=%d" % value)
        else:
            out.append(b"=" + sf_token(bytes(value)))
    return b"".join(out)


# The params each response may carry, rendered once (and so checked once) here; the hot path
# appends only integers, which need no check beyond their range.
cdef bytes CS_HIT = b"cache-status: " + sf_item(CACHE_NAME, ((b"hit", True),)) + b"; ttl="
cdef tuple CS_DETAILS = tuple(sf_token(t) for t in (
    b"no-store", b"private", b"no-cache", b"authorization", b"set-cookie", b"vary-star", b"status", b"no-freshness",
    b"too-large", b"request-no-store", b"framing", b"no-room", b"head", b"stale-while-revalidate",
    b"stale-if-error", b"max-stale", b"not-modified"))


cdef inline Py_ssize_t _cp_put_int(char* out, int64_t v) noexcept:
    cdef char digits[21]
    cdef Py_ssize_t n = 0, i, k = 0
    if v < 0:
        out[0] = b"-"
        k = 1
        v = -v
    if v == 0:
        out[k] = b"0"
        return k + 1
    while v:
        digits[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    for i in range(n):
        out[k + i] = digits[n - 1 - i]
    return k + n


cdef inline int64_t floor_s(int64_t ns) noexcept:
    """Whole seconds, rounded down (towards minus infinity)."""
    cdef int64_t q = ns // NS
    if ns < 0 and q * NS != ns:
        q -= 1
    return q
