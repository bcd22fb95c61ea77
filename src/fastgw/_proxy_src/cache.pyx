# The response cache filter (see cache.pxd for the call order; docs/caching.md for the rules).
#
# Why compiled: a hit answers a request without any upstream, so everything it costs is this
# filter plus the exchange's reply; in Python the lookup alone was several times the whole
# proxied request's user-space work.

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

from asyncio import sleep as _cache_sleep

cdef str _CACHE_STATE = "fastgw.cache"         # key of a request's CacheState in req.vars
cdef str _CACHE_HIT = "fastgw cache hit"       # Reply.message of the cache's own replies

# Why a request was forwarded (Cache-Status `fwd`, RFC 9211 §2.2).
cdef enum:
    FWD_NONE = 0
    FWD_BYPASS = 1
    FWD_METHOD = 2
    FWD_URI_MISS = 3
    FWD_VARY_MISS = 4
    FWD_MISS = 5
    FWD_REQUEST = 6
    FWD_STALE = 7

cdef tuple _FWD_TOKENS = (None,) + tuple(sf_token(t) for t in (b"bypass", b"method", b"uri-miss", b"vary-miss",
                                                                   b"miss", b"request", b"stale"))

# Cache-Status `detail` (indexes into CS_DETAILS, plus one; 0: none).
cdef enum:
    D_NONE = 0
    D_NO_STORE = 1
    D_PRIVATE = 2
    D_NO_CACHE = 3
    D_AUTHORIZATION = 4
    D_SET_COOKIE = 5
    D_VARY_STAR = 6
    D_STATUS = 7
    D_NO_FRESHNESS = 8
    D_TOO_LARGE = 9
    D_REQUEST_NO_STORE = 10
    D_FRAMING = 11
    D_NO_ROOM = 12
    D_HEAD = 13
    D_SWR = 14
    D_SIE = 15
    D_MAX_STALE = 16
    D_NOT_MODIFIED = 17

# Never stored (added to every reply anyway, or never shared): lower case.
cdef tuple _NEVER_STORED = (b"date", b"age", b"set-cookie", b"set-cookie2", b"x-request-id")
# What a 304 carries of the stored response (RFC 9110 §15.4.5; Date is the gateway's).
cdef tuple _NOT_MODIFIED_FIELDS = (b"cache-control", b"content-location", b"etag", b"expires", b"vary")
# Not sent with a background refresh: the client's conditionals (it sends the entry's own), ranges,
# and the client's request id (it sends the request's).
cdef tuple _REFRESH_DROP = (b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since",
                            b"if-range", b"range", b"x-request-id")
cdef frozenset _SAFE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
cdef frozenset _ERROR_STATUSES = frozenset((500, 502, 503, 504))


cdef inline int64_t _cf_wall_now_ns() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * NS + ts.tv_nsec


cdef bytes cs_value(bint hit, int fwd, int fwd_status, bint has_ttl, int64_t ttl_s, bint stored, bint collapsed,
                    int detail):
    """A Cache-Status field value: this cache's member of the list (RFC 9211), its parameters
    checked against the sf grammar once at import (CS_*, sf_token), integers in range."""
    out = [CACHE_NAME]
    if hit:
        out.append(b"; hit")
    if fwd:
        out.append(b"; fwd=" + <bytes>_FWD_TOKENS[fwd])
    if fwd_status:
        out.append(b"; fwd-status=%d" % fwd_status)
    if has_ttl:
        out.append(b"; ttl=%d" % max(-999999999999999, min(ttl_s, 999999999999999)))
    if stored:
        out.append(b"; stored")
    if collapsed:
        out.append(b"; collapsed")
    if detail:
        out.append(b"; detail=" + <bytes>CS_DETAILS[detail - 1])
    return b"".join(out)


def cache_status(*, bint hit=False, str fwd=None, int fwd_status=0, ttl=None, bint stored=False,
                 bint collapsed=False, str detail=None):
    """A Cache-Status value as the cache renders it (tests)."""
    cdef int f = 0, d = 0
    if fwd is not None:
        f = _FWD_TOKENS.index(fwd.encode())
    if detail is not None:
        d = CS_DETAILS.index(detail.encode()) + 1
    return cs_value(hit, f, fwd_status, ttl is not None, ttl if ttl is not None else 0, stored, collapsed, d)


cdef inline Py_ssize_t _cf_put(char* out, const char* s, Py_ssize_t n) noexcept:
    memcpy(out, s, n)
    return n


cdef list _cf_block_pairs(bytes block):
    """Rendered `name: value\\r\\n` lines back into a flat [name, value, ...] list."""
    cdef list out = []
    cdef bytes line
    for line in block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append(name)
            out.append(value.strip(b" \t"))
    return out


cdef list _cf_block_pairs_tuples(bytes block):
    cdef list flat = _cf_block_pairs(block)
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


cdef bytes _cf_block_value(bytes block, bytes lname):
    """The first value of `lname` in rendered header lines, or None."""
    cdef bytes line
    cdef Py_ssize_t n = PyBytes_GET_SIZE(lname)
    for line in block.split(b"\r\n"):
        if PyBytes_GET_SIZE(line) > n and line[n] == 58 and ieq(PyBytes_AS_STRING(line), PyBytes_AS_STRING(lname), n):
            return line[n + 1:].strip(b" \t")
    return None


cdef bytes _cf_block_only(bytes block, tuple lnames):
    """The lines of `block` whose names are in `lnames`."""
    cdef list out = []
    cdef bytes line
    for line in block.split(b"\r\n"):
        if line and name_in(line.partition(b":")[0], lnames):
            out.append(line + b"\r\n")
    return b"".join(out)


cdef bytes _cf_render_block(list headers, tuple strip):
    """Rendered header lines of a flat [name, value, ...] list, without the names in `strip`."""
    cdef list out = []
    cdef Py_ssize_t i
    cdef bytes name
    for i in range(0, len(headers), 2):
        name = <bytes>headers[i]
        if name_in(name, strip):
            continue
        out.append(name)
        out.append(b": ")
        out.append(<bytes>headers[i + 1])
        out.append(b"\r\n")
    return b"".join(out)


cdef list _cf_without(list headers, bytes lname):
    cdef list out = []
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(lname)
    cdef bytes name
    for i in range(0, len(headers), 2):
        name = <bytes>headers[i]
        if PyBytes_GET_SIZE(name) == n and ieq(PyBytes_AS_STRING(name), PyBytes_AS_STRING(lname), n):
            continue
        out.append(name)
        out.append(headers[i + 1])
    return out


cdef bint _cf_etag_matches(bytes inm, bytes etag):
    """If-None-Match against a stored ETag, by weak comparison (RFC 9110 §13.1.2)."""
    if etag is None:
        return False
    if inm.strip(b" \t") == b"*":
        return True
    cdef bytes want = etag[2:] if etag.startswith(b"W/") else etag
    cdef bytes tag
    for tag in inm.split(b","):
        tag = tag.strip(b" \t")
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == want:
            return True
    return False


cdef bint _cf_not_modified(bytes block, bytes inm, bytes ims, int64_t now_s):
    """Whether a conditional GET/HEAD is answered 304 by the stored response (RFC 9110 §13.2.2:
    If-None-Match first, If-Modified-Since only without it)."""
    cdef int64_t since, modified
    if inm is not None:
        return _cf_etag_matches(inm, _cf_block_value(block, b"etag"))
    if ims is None:
        return False
    lm = _cf_block_value(block, b"last-modified")
    if lm is None:
        return False
    since = parse_http_date(ims, now_s)
    modified = parse_http_date(lm, now_s)
    return since != DATE_INVALID and modified != DATE_INVALID and modified <= since


cdef bytes _cf_vary_names(list headers):
    """The lower-case field names a response's Vary lists, in order, once each, `\\n`-joined."""
    cdef list names = []
    cdef Py_ssize_t i
    cdef bytes name, part
    for i in range(0, len(headers), 2):
        name = <bytes>headers[i]
        if PyBytes_GET_SIZE(name) == 4 and ieq(PyBytes_AS_STRING(name), b"vary", 4):
            for part in (<bytes>headers[i + 1]).split(b","):
                part = part.strip(b" \t").lower()
                if part and part not in names:
                    names.append(part)
    return b"\n".join(names)


@cython.final
cdef class CacheState:
    """What the cache knows about a request it let through (see cache.pxd)."""

    cdef void release(self) noexcept:
        if self.has_claim:
            self.has_claim = False
            self.store.release_claim(self.claim_slot, self.claim_token)

    def __dealloc__(self):
        if self.has_claim and self.store is not None:
            self.release()


cdef class CacheFilter(Filter):
    """A cached route's filter (see cache.pxd). `ttl` (seconds or None) applies to responses
    without explicit freshness of the statuses DESIGN §8 names; `max_object` bounds a stored body;
    `lock_timeout` bounds the wait for another request's fill; `stale_while_revalidate` and
    `stale_if_error` (seconds or None) are defaults for responses that state none; `strip` are
    more (lower-case) header names never stored."""

    def __init__(self, CacheStore store not None, ttl=None, Py_ssize_t max_object=1 << 20, double lock_timeout=5.0,
                 stale_while_revalidate=None, stale_if_error=None, strip=(), client=None, wall_clock=None):
        self.request_phase = RQ_CACHE
        self.response_phase = RS_STORE
        self.store = store
        self.ttl_ns = <int64_t>(ttl * 1e9) if ttl is not None else -1
        self.max_object = max_object
        self.lock_ns = <int64_t>(lock_timeout * 1e9)
        self.swr_ns = <int64_t>(stale_while_revalidate * 1e9) if stale_while_revalidate is not None else -1
        self.sie_ns = <int64_t>(stale_if_error * 1e9) if stale_if_error is not None else -1
        self.strip = _NEVER_STORED + tuple(bytes(n).lower() for n in strip)
        self.client = client
        self.wall_clock = wall_clock

    def __dealloc__(self):
        buf_free(&self.kb)

    cdef int64_t wall_ns(self) except? -1:
        if self.wall_clock is None:
            return _cf_wall_now_ns()
        return <int64_t>self.wall_clock()

    # ---- keys -------------------------------------------------------------------------------

    cdef bytes scheme_of(self, Request req):
        if req.ex is None:
            return b"http"
        return (<ClientCore>req.ex).ctx.scheme

    cdef bytes url_key(self, bytes scheme, bytes host, bytes path, bytes query):
        """`GET <scheme>://<host>/<path>?<query>`: the host lower-cased, its default port dropped."""
        self.url_key_buf(scheme, host, path, query)
        return buf_take(&self.kb)

    cdef int url_key_buf(self, bytes scheme, bytes host, bytes path, bytes query) except -1:
        """url_key rendered into `kb` only: a hit never makes the key an object."""
        cdef OutBuf* b = &self.kb
        cdef Py_ssize_t n, i
        cdef const char* p
        cdef char c
        b.len = 0
        buf_add(b, b"GET ", 4)
        buf_addb(b, scheme)
        buf_add(b, b"://", 3)
        if host is not None:
            p = PyBytes_AS_STRING(host)
            n = PyBytes_GET_SIZE(host)
            if scheme == b"http" and n > 3 and memcmp(p + n - 3, b":80", 3) == 0:
                n -= 3
            elif scheme == b"https" and n > 4 and memcmp(p + n - 4, b":443", 4) == 0:
                n -= 4
            if b.len + n > b.cap:
                buf_grow(b, b.len + n)
            for i in range(n):
                c = p[i]
                b.data[b.len + i] = c + 32 if b"A" <= c <= b"Z" else c
            b.len += n
        buf_addb(b, path)
        buf_addb(b, query)
        return 0

    cdef int scan(self, Request req, RqInfo* rq) except -1:
        """The request headers the cache reads, in one pass."""
        cdef list pairs = req.hpairs
        cdef Py_ssize_t i, n
        cdef bytes name
        cdef const char* p
        cdef bint pragma = False
        cc_init(&rq.cc)
        rq.auth = False
        rq.upgrade = False
        rq.head = req.method == b"HEAD"
        self._inm = None
        self._ims = None
        for i in range(0, len(pairs), 2):
            name = <bytes>pairs[i]
            n = PyBytes_GET_SIZE(name)
            p = PyBytes_AS_STRING(name)
            if n == 13:
                if ieq(p, b"authorization", 13):
                    rq.auth = True
                elif ieq(p, b"cache-control", 13):
                    cc_parse(<bytes>pairs[i + 1], &rq.cc)
                elif ieq(p, b"if-none-match", 13):
                    self._inm = <bytes>pairs[i + 1] if self._inm is None else self._inm + b", " + <bytes>pairs[i + 1]
            elif n == 17 and ieq(p, b"if-modified-since", 17):
                if self._ims is None:
                    self._ims = <bytes>pairs[i + 1]
            elif n == 6 and ieq(p, b"pragma", 6):
                if b"no-cache" in (<bytes>pairs[i + 1]).lower():
                    pragma = True
            elif n == 7 and ieq(p, b"upgrade", 7):
                rq.upgrade = True
        if pragma and not rq.cc.present:
            rq.cc.no_cache = True       # RFC 9111 §5.4: Pragma counts only without Cache-Control
        return 0

    cdef bytes variant_key(self, bytes primary, uint64_t epoch, bytes names, Request req):
        """The key of the variant a request selects: the primary key, the marker's epoch, then
        each Vary name with the request's values, normalized (lines joined, whitespace around
        commas dropped), or `!` when the request lacks it (RFC 9111 §4.1)."""
        cdef list parts = [primary, b"\n%d\n" % epoch]
        cdef list pairs = req.hpairs
        cdef list values
        cdef bytes lname, name, v
        cdef Py_ssize_t i, n
        for lname in names.split(b"\n"):
            n = PyBytes_GET_SIZE(lname)
            values = []
            for i in range(0, len(pairs), 2):
                name = <bytes>pairs[i]
                if PyBytes_GET_SIZE(name) == n and ieq(PyBytes_AS_STRING(name), PyBytes_AS_STRING(lname), n):
                    for v in (<bytes>pairs[i + 1]).split(b","):
                        values.append(v.strip(b" \t"))
            parts.append(lname)
            if values:
                parts.append(b":")
                parts.append(b",".join(values))
            else:
                parts.append(b"!")
            parts.append(b"\n")
        return b"".join(parts)

    # ---- request phase ----------------------------------------------------------------------

    cdef int on_request(self, Request req) except -1:
        cdef bytes method = req.method
        cdef RqInfo rq
        if method != b"GET" and method != b"HEAD":
            return CONTINUE
        self.scan(req, &rq)
        if rq.upgrade:
            return CONTINUE             # a protocol switch is the connection's, never a cached answer
        self.url_key_buf(self.scheme_of(req), req.host, req.path, req.query)
        cdef uint64_t phash = self.store.hash_key(self.kb.data, self.kb.len)
        result = self.lookup(req, &rq, None, phash, False)
        if type(result) is Reply:
            req.reply = <Reply>result
            return RESPONDED
        if type(result) is not CacheState:
            return CONTINUE
        cdef CacheState st = <CacheState>result
        if req._vars is None:
            req._vars = {}
        req._vars[_CACHE_STATE] = st
        if rq.head or rq.auth or rq.cc.no_store or not (
                st.fwd == FWD_URI_MISS or st.fwd == FWD_VARY_MISS or st.fwd == FWD_STALE):
            return CONTINUE
        cdef uint32_t slot = 0, token = 0
        cdef int r = self.store.claim(st.hash, self.lock_ns, &slot, &token)
        cdef Reply stale
        if r == CLAIM_OWNER:
            st.has_claim = True
            st.claim_slot = slot
            st.claim_token = token
            if st.swr_ok and st.has_stale and self.client is not None and req.ex is not None:
                # serve the stale entry now and revalidate it in the background (RFC 5861 §3); the
                # refresh carries the claim, so that other requests get the stale entry meanwhile
                stale = self._stale_reply(req, st, D_SWR)
                self.start_refresh(req, st)
                req._vars[_CACHE_STATE] = None
                req.reply = stale
                return RESPONDED
            return CONTINUE
        if r == CLAIM_WAIT and req.ex is not None:
            if st.swr_ok and st.has_stale:
                # another request revalidates: this one gets the stale copy at once
                stale = self._stale_reply(req, st, D_SWR)
                if stale is not None:
                    req.reply = stale
                    return RESPONDED
            st.claim_slot = slot
            st.claim_token = token
            (<ClientCore>req.ex).suspend_on(req, self._collapse(req, st))
            return SUSPENDED
        return CONTINUE

    cdef object lookup(self, Request req, RqInfo* rq, bytes key, uint64_t phash, bint collapsed):
        """A Reply when the store answers, else the CacheState of a request that goes on. `key`
        None: the key is in `kb` (made an object only when it is needed: a Vary marker, a miss)."""
        cdef CacheStore store = self.store
        cdef EntrySnap s
        cdef bytes vkey = None, names
        cdef uint64_t vhash = phash
        cdef int fwd = FWD_URI_MISS, detail = D_NONE
        cdef int64_t now = store.now_ns(), age = 0, fresh = 0
        cdef bint found
        if key is None:
            found = store.find(phash, self.kb.data, self.kb.len, &s)
        else:
            found = store.find(phash, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), &s)
        cdef bint swr_ok = False, strict
        cdef Reply reply
        if found and s.flags & EF_MARKER:
            if key is None:
                key = PyBytes_FromStringAndSize(self.kb.data, self.kb.len)
            names = store.head_bytes(&s)
            found = False
            if names is not None and store.valid(&s):
                vkey = self.variant_key(key, s.epoch, names, req)
                vhash = store.hash_key(PyBytes_AS_STRING(vkey), PyBytes_GET_SIZE(vkey))
                found = store.find(vhash, PyBytes_AS_STRING(vkey), PyBytes_GET_SIZE(vkey), &s)
                if not found:
                    fwd = FWD_VARY_MISS
        if found:
            age = s.age_ns + (now - s.stored_ns)
            if age < 0:
                age = 0
            fresh = s.lifetime_ns - age
            strict = (s.flags & EF_MUST_REVALIDATE) != 0
            if rq.auth and not s.flags & EF_AUTH_OK:
                found = False
                fwd = FWD_BYPASS
                detail = D_AUTHORIZATION
            elif rq.cc.no_cache or s.flags & EF_NO_CACHE:
                fwd = FWD_REQUEST
            elif fresh > 0 and (rq.cc.max_age < 0 or age <= rq.cc.max_age * NS) \
                    and (rq.cc.min_fresh < 0 or fresh >= rq.cc.min_fresh * NS):
                reply = self.hit(req, &s, now, age, fresh, D_NONE, collapsed)
                if reply is not None:
                    return reply
                found = False
                fwd = FWD_MISS
            elif fresh > 0:
                fwd = FWD_REQUEST
            else:
                fwd = FWD_STALE
                if not strict:
                    if rq.cc.max_stale == CC_ANY or (rq.cc.max_stale >= 0 and -fresh <= rq.cc.max_stale * NS):
                        reply = self.hit(req, &s, now, age, fresh, D_MAX_STALE, collapsed)
                        if reply is not None:
                            return reply
                    swr_ok = -fresh < s.swr_ns
        if rq.cc.only_if_cached:
            return Reply.make_error(504, "not in the cache (only-if-cached)", None)
        if key is None:
            key = PyBytes_FromStringAndSize(self.kb.data, self.kb.len)
        cdef CacheState st = CacheState.__new__(CacheState)
        st.store = store
        st.primary = key
        st.phash = phash
        st.key = vkey if vkey is not None else key
        st.hash = vhash
        st.rq = rq[0]
        st.inm = self._inm
        st.ims = self._ims
        st.fwd = fwd
        st.collapsed = collapsed
        st.swr_ok = swr_ok
        if found:
            st.stale = s
            st.stale_head = store.head_bytes(&s)
            st.stale_body = store.body_bytes(&s) if not rq.head else b""
            st.has_stale = st.stale_head is not None and st.stale_body is not None and store.valid(&s)
            if st.has_stale and not rq.head:
                etag = _cf_block_value(st.stale_head, b"etag")
                modified = _cf_block_value(st.stale_head, b"last-modified")
                if etag is not None or modified is not None:
                    req.remove_upstream_header(b"if-none-match")
                    req.remove_upstream_header(b"if-modified-since")
                    if etag is not None:
                        req.set_upstream_header(b"if-none-match", etag)
                    if modified is not None:
                        req.set_upstream_header(b"if-modified-since", modified)
                    st.revalidating = True
        store.count(ST_BYPASS if fwd == FWD_BYPASS else ST_MISSES)
        return st

    cdef Reply hit(self, Request req, EntrySnap* s, int64_t now, int64_t age, int64_t fresh, int detail,
                   bint collapsed):
        """The reply of a stored response: status and body, its header lines with Age and
        Cache-Status after the request's own in req.resp_extra (no per-header objects), a 304
        when the request's conditionals match it. None when the entry changed meanwhile."""
        cdef CacheStore store = self.store
        cdef char extra[192]
        cdef Py_ssize_t n = 0, prev = PyBytes_GET_SIZE(req.resp_extra), cs_len
        cdef bytes out, body, block, cs
        cdef int status = s.status
        cdef Reply reply
        cdef int64_t ttl = floor_s(fresh)
        if self._inm is not None or self._ims is not None:
            block = store.head_bytes(s)
            if block is None or not store.valid(s):
                return None
            if _cf_not_modified(block, self._inm, self._ims, self.wall_ns() // NS):
                status = 304
                cs = _cf_block_only(block, _NOT_MODIFIED_FIELDS)
                out = req.resp_extra + cs + b"age: %d\r\ncache-status: " % floor_s(age) \
                    + cs_value(True, FWD_NONE, 0, True, ttl, False, collapsed, D_NOT_MODIFIED) + b"\r\n"
                body = b""
                store.touch(s, now)
                store.count(ST_HITS if detail != D_SWR else ST_STALE)
                reply = Reply.__new__(Reply)
                reply.status = 304
                reply.headers = ()
                reply.body = b""
                reply.message = _CACHE_HIT
                req.resp_extra = out
                return reply
        # Age and Cache-Status rendered into a stack buffer, then one bytes object holding the
        # request's own lines, the stored lines (copied out of shared memory) and these.
        n += _cf_put(extra + n, b"age: ", 5)
        n += _cp_put_int(extra + n, floor_s(age))
        n += _cf_put(extra + n, b"\r\n", 2)
        if collapsed or detail:
            cs = b"cache-status: " + cs_value(not collapsed, FWD_URI_MISS if collapsed else FWD_NONE, 0, True, ttl,
                                              False, collapsed, detail) + b"\r\n"
            cs_len = PyBytes_GET_SIZE(cs)
            if cs_len > 150:
                return None
            n += _cf_put(extra + n, PyBytes_AS_STRING(cs), cs_len)
        else:
            n += _cf_put(extra + n, PyBytes_AS_STRING(CS_HIT), PyBytes_GET_SIZE(CS_HIT))
            n += _cp_put_int(extra + n, ttl)
            n += _cf_put(extra + n, b"\r\n", 2)
        out = PyBytes_FromStringAndSize(NULL, prev + s.head_len + n)
        cdef char* p = PyBytes_AS_STRING(out)
        if prev:
            memcpy(p, PyBytes_AS_STRING(req.resp_extra), prev)
        if store.copy_head(s, p + prev) < 0:
            return None
        memcpy(p + prev + s.head_len, extra, n)
        body = PyBytes_FromStringAndSize(NULL, s.body_len)
        if store.copy_body(s, PyBytes_AS_STRING(body)) < 0 or not store.valid(s):
            return None
        store.touch(s, now)
        store.count(ST_HITS if detail != D_SWR else ST_STALE)
        if collapsed:
            store.count(ST_COLLAPSED)
        reply = Reply.__new__(Reply)
        reply.status = status
        reply.headers = ()
        reply.body = body
        reply.message = _CACHE_HIT
        req.resp_extra = out
        return reply

    cdef Reply _stale_reply(self, Request req, CacheState st, int detail):
        """The copied stale entry as a reply (stale-while-revalidate, another request
        revalidating)."""
        cdef int64_t age = st.stale.age_ns + (self.store.now_ns() - st.stale.stored_ns)
        cdef bytes lines = b"age: %d\r\ncache-status: " % floor_s(age) \
            + cs_value(True, FWD_NONE, 0, True, floor_s(st.stale.lifetime_ns - age), False, False, detail) + b"\r\n"
        cdef Reply reply = Reply.__new__(Reply)
        reply.status = st.stale.status
        reply.headers = ()
        reply.body = st.stale_body
        reply.message = _CACHE_HIT
        req.resp_extra = req.resp_extra + st.stale_head + lines
        self.store.count(ST_STALE)
        return reply

    async def _collapse(self, Request req, CacheState st):
        """A miss whose key another request is fetching: wait until that request's claim is
        released (stored, or given up) or lock_timeout passes, then look again. The claim lives
        in shared memory and its owner may be another worker, so it is polled (1 ms, doubling to
        16 ms)."""
        cdef CacheStore store = self.store
        cdef double delay = 0.001
        cdef int64_t deadline = store.now_ns() + self.lock_ns
        cdef RqInfo rq
        while store.claim_held(st.claim_slot, st.hash, st.claim_token) and store.now_ns() < deadline:
            await _cache_sleep(delay)
            if delay < 0.016:
                delay *= 2
        if req.phase == PH_LOGGED:
            return None
        rq = st.rq
        self._inm = st.inm
        self._ims = st.ims
        result = self.lookup(req, &rq, st.primary, st.phash, True)
        if type(result) is Reply:
            req.reply = <Reply>result   # so that on_response knows its own reply
            return result
        if type(result) is CacheState:
            # going upstream itself, without claiming again (the claim's owner could not fill it)
            if req._vars is None:
                req._vars = {}
            req._vars[_CACHE_STATE] = result
        return None

    # ---- response phase ---------------------------------------------------------------------

    cdef int on_response(self, Request req, ResponseHead head) except -1:
        cdef Reply reply = req.reply
        if head.is_local and reply is not None and reply.message is _CACHE_HIT:
            return 0                    # a hit: Age and Cache-Status are in its lines already
        cdef CacheState st = None
        if req._vars is not None:
            st = req._vars.get(_CACHE_STATE)
        cdef int status = head.status
        cdef int64_t now, age = 0
        if st is None:
            # not looked up: another method, or answered before the cache phase
            if not head.is_local and req.method not in _SAFE_METHODS and 200 <= status < 400:
                self.invalidate(req, head)
            age_value = head.get(b"age") if not head.is_local else None
            if age_value is None:
                head.headers.append(b"age")
                head.headers.append(b"0")
            head.headers.append(b"cache-status")
            head.headers.append(cs_value(False, FWD_METHOD if req.method not in (b"GET", b"HEAD") else FWD_BYPASS,
                                         0, False, 0, False, False, D_NONE))
            return 0
        now = self.store.now_ns()
        if head.is_local:
            if st.has_stale and status in _ERROR_STATUSES:
                return self.serve_stale(req, head, st, now, D_SIE)
            st.release()
            head.headers.append(b"age")
            head.headers.append(b"0")
            head.headers.append(b"cache-status")
            head.headers.append(cs_value(False, st.fwd, 0, False, 0, False, st.collapsed, D_NONE))
            return 0
        if st.revalidating and status == 304 and st.has_stale:
            return self.freshen(req, head, st, now)
        if st.has_stale and status in _ERROR_STATUSES:
            return self.serve_stale(req, head, st, now, D_SIE)
        self.store_response(req, head, st, now)
        return 0

    cdef int decide(self, CacheState st, int status, RespInfo* ri, int64_t life, int64_t swr, int64_t sie,
                    bint framing_ok) noexcept:
        """Whether a response may be stored: D_NONE, or the detail that says why not."""
        cdef bint auth_ok = ri.cc.public or ri.cc.s_maxage != CC_ABSENT
        if st.rq.head:
            return D_HEAD
        if st.rq.cc.no_store:
            return D_REQUEST_NO_STORE
        if ri.cc.no_store:
            return D_NO_STORE
        if ri.cc.private_:
            return D_PRIVATE
        if ri.cc.no_cache:
            return D_NO_CACHE
        if st.rq.auth and not auth_ok:
            return D_AUTHORIZATION
        if ri.set_cookie and not auth_ok:
            return D_SET_COOKIE
        if ri.vary_star:
            return D_VARY_STAR
        if status not in STORABLE_STATUSES:
            return D_STATUS
        if life < 0 or (life == 0 and not (ri.etag or ri.last_modified) and swr == 0 and sie == 0):
            return D_NO_FRESHNESS
        if not framing_ok:
            return D_FRAMING
        return D_NONE

    cdef CacheWrite begin(self, Request req, CacheState st, list headers, int status, RespInfo* ri,
                          int64_t request_wall, int64_t wall, int64_t now, Py_ssize_t hint, bint framing_ok,
                          int* detail, int64_t* age_out, int64_t* life_out):
        """Starts storing a response (status, flat `headers`) when the rules allow: its freshness
        from the headers and the request's times, its key (a variant key under a Vary marker), the
        claim handed over to the write. None, with `detail` saying why, when not stored."""
        cdef int64_t age = initial_age_ns(ri, request_wall, wall)
        cdef int64_t life = explicit_lifetime_ns(ri, wall)
        cdef int64_t swr = 0, sie = 0
        cdef EntryMeta meta
        cdef bytes names, key = st.key
        cdef uint64_t hv = st.hash, epoch
        cdef CacheWrite w
        if life < 0 and self.ttl_ns >= 0 and status in TTL_STATUSES:
            life = self.ttl_ns
        age_out[0] = age
        life_out[0] = life
        if ri.cc.swr >= 0:
            swr = ri.cc.swr * NS
        elif self.swr_ns >= 0:
            swr = self.swr_ns
        if ri.cc.sie >= 0:
            sie = ri.cc.sie * NS
        elif self.sie_ns >= 0:
            sie = self.sie_ns
        detail[0] = self.decide(st, status, ri, life, swr, sie, framing_ok)
        if detail[0] == D_NONE and 0 <= hint and hint > self.max_object:
            detail[0] = D_TOO_LARGE
        if detail[0] != D_NONE:
            return None
        meta.flags = 0
        if ri.cc.public or ri.cc.s_maxage != CC_ABSENT:
            meta.flags |= EF_AUTH_OK
        if ri.cc.must_revalidate or ri.cc.proxy_revalidate or ri.cc.s_maxage != CC_ABSENT:
            meta.flags |= EF_MUST_REVALIDATE
        meta.status = status
        meta.nvary = 0
        meta.stored_ns = now
        meta.age_ns = age
        meta.lifetime_ns = life
        meta.swr_ns = swr
        meta.sie_ns = sie
        meta.epoch = 0
        if ri.nvary:
            names = _cf_vary_names(headers)
            epoch = self.store.marker(st.phash, st.primary, names, <uint32_t>(names.count(b"\n") + 1))
            if epoch == 0:
                detail[0] = D_NO_ROOM
                return None
            key = self.variant_key(st.primary, epoch, names, req)
            hv = self.store.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        elif st.key is not st.primary:
            # the URL no longer varies: stored under the primary key (replacing the marker)
            key = st.primary
            hv = st.phash
        w = self.store.begin_meta(hv, key, _cf_render_block(headers, self.strip), hint, self.max_object, &meta)
        if w is None:
            detail[0] = D_NO_ROOM
            return None
        if st.has_claim and hv == st.hash:
            w.has_claim = True
            w.claim_slot = st.claim_slot
            w.claim_token = st.claim_token
            st.has_claim = False
        return w

    cdef int store_response(self, Request req, ResponseHead head, CacheState st, int64_t now) except -1:
        """An upstream response to a request the cache let through: stored as it streams when the
        rules allow; its head gets Age and Cache-Status."""
        cdef RespInfo ri
        cdef int detail = D_NONE
        cdef int64_t wall = self.wall_ns(), age = 0, life = -1
        cdef int64_t request_wall = wall
        if req.attempt_t0 > 0:
            request_wall = wall - <int64_t>((_now() - req.attempt_t0) * 1e9)
        resp_info(head.headers, wall // NS, &ri)
        hint = head.length
        cdef CacheWrite w = self.begin(req, st, head.headers, head.status, &ri, request_wall, wall, now,
                                       hint if hint is not None else -1,
                                       req.up_framing == FR_LENGTH or req.up_framing == FR_CHUNKED,
                                       &detail, &age, &life)
        if w is not None:
            st.writer = w
            head.stream_through(self, False)
        else:
            st.release()
        head.headers = _cf_without(head.headers, b"age")
        head.headers.append(b"age")
        head.headers.append(b"%d" % floor_s(age))
        head.headers.append(b"cache-status")
        head.headers.append(cs_value(False, st.fwd, head.status, w is not None, floor_s(life - age), w is not None,
                                     st.collapsed, detail))
        return 0

    cdef list merge_304(self, CacheState st, list fresh):
        """The stored header fields updated by a 304's (RFC 9111 §4.3.4: each field the 304 has
        replaces the stored field of that name)."""
        cdef list stored = _cf_block_pairs(st.stale_head)
        cdef Py_ssize_t i
        cdef set replaced = set()
        for i in range(0, len(fresh), 2):
            replaced.add((<bytes>fresh[i]).lower())
        cdef list merged = []
        for i in range(0, len(stored), 2):
            if (<bytes>stored[i]).lower() not in replaced:
                merged.append(stored[i])
                merged.append(stored[i + 1])
        merged.extend(fresh)
        return merged

    cdef bint restore(self, Request req, CacheState st, list merged, int64_t request_wall, int64_t wall,
                      int64_t now, int64_t* age_out, int64_t* life_out) except -1:
        """Stores the stale entry again with `merged` headers (a successful revalidation)."""
        cdef RespInfo ri
        cdef int detail = D_NONE
        resp_info(merged, wall // NS, &ri)
        cdef RqInfo rq = st.rq
        st.rq.head = False
        st.rq.cc.no_store = False
        cdef CacheWrite w = self.begin(req, st, merged, st.stale.status, &ri, request_wall, wall, now,
                                       PyBytes_GET_SIZE(st.stale_body), True, &detail, age_out, life_out)
        st.rq = rq
        if w is None:
            return False
        if w.append(PyBytes_AS_STRING(st.stale_body), PyBytes_GET_SIZE(st.stale_body)) != 0:
            return False
        return w.commit()

    cdef int freshen(self, Request req, ResponseHead head, CacheState st, int64_t now) except -1:
        """A 304 to our revalidation: the stored response, its headers updated by the 304's, is
        stored again and sent to the client (or a 304 of its own when its conditionals match)."""
        cdef list merged = self.merge_304(st, head.headers)
        cdef int64_t wall = self.wall_ns(), age = 0, life = 0
        cdef int64_t request_wall = wall
        cdef Py_ssize_t i
        if req.attempt_t0 > 0:
            request_wall = wall - <int64_t>((_now() - req.attempt_t0) * 1e9)
        cdef bint stored_again = self.restore(req, st, merged, request_wall, wall, now, &age, &life)
        st.release()
        self.store.count(ST_REVALIDATED)
        merged = _cf_without(merged, b"age")
        merged.append(b"age")
        merged.append(b"%d" % floor_s(age))
        merged.append(b"cache-status")
        merged.append(cs_value(False, FWD_STALE, 304, True, floor_s(life - age), stored_again, st.collapsed, D_NONE))
        if (st.inm is not None or st.ims is not None) and _cf_not_modified(
                _cf_render_block(merged, ()), st.inm, st.ims, wall // NS):
            keep = []
            for i in range(0, len(merged), 2):
                if name_in(<bytes>merged[i], _NOT_MODIFIED_FIELDS + (b"date", b"age", b"cache-status")):
                    keep.append(merged[i])
                    keep.append(merged[i + 1])
            head.headers = keep
            return 0                    # the client's own conditionals hold: it gets the 304
        head.status = st.stale.status
        head.headers = merged
        st.serve_body = st.stale_body
        head.stream_through(self, True)
        return 0

    cdef int serve_stale(self, Request req, ResponseHead head, CacheState st, int64_t now, int detail) except -1:
        """stale-if-error (RFC 5861 §4): an error (upstream 5xx, or the gateway's own 502/504
        when the upstream is unreachable) becomes the stored response while the entry is within
        its window and nothing forbids serving it stale."""
        cdef int64_t age = st.stale.age_ns + (now - st.stale.stored_ns)
        cdef int64_t over = age - st.stale.lifetime_ns
        if st.stale.flags & EF_MUST_REVALIDATE or (over > 0 and over >= st.stale.sie_ns) or st.rq.head:
            st.release()
            head.headers.append(b"age")
            head.headers.append(b"0")
            head.headers.append(b"cache-status")
            head.headers.append(cs_value(False, st.fwd, 0 if head.is_local else head.status, False, 0, False,
                                         st.collapsed, D_NONE))
            return 0
        st.release()
        self.store.count(ST_STALE)
        cdef list headers = _cf_block_pairs(st.stale_head)
        cdef bytes date = head.get(b"date") if not head.is_local else None
        if date is not None:
            headers.append(b"date")
            headers.append(date)
        headers.append(b"age")
        headers.append(b"%d" % floor_s(age))
        headers.append(b"cache-status")
        headers.append(cs_value(True, FWD_STALE, 0 if head.is_local else head.status, True,
                                floor_s(st.stale.lifetime_ns - age), False, st.collapsed, detail))
        head.status = st.stale.status
        head.headers = headers
        if head.is_local:
            head.body = st.stale_body
        else:
            if date is None:
                headers.append(b"date")
                headers.append(format_http_date(self.wall_ns() // NS))
            st.serve_body = st.stale_body
            head.stream_through(self, True)
        return 0

    cdef bytes on_body(self, Request req, bytes data):
        cdef CacheState st = <CacheState>req._vars.get(_CACHE_STATE) if req._vars is not None else None
        if st is None:
            return data
        if st.serve_body is not None:
            return b""                  # the stored body replaces the upstream's
        cdef CacheWrite w = st.writer
        if w is not None and w.append(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) != 0:
            st.writer = None
        return data

    cdef bytes on_end(self, Request req):
        cdef CacheState st = <CacheState>req._vars.get(_CACHE_STATE) if req._vars is not None else None
        cdef bytes body
        cdef CacheWrite w
        if st is None:
            return b""
        if st.serve_body is not None:
            body = st.serve_body
            st.serve_body = None
            return body
        w = st.writer
        if w is not None:
            st.writer = None
            w.commit()
        return b""

    cdef int invalidate(self, Request req, ResponseHead head) except -1:
        """RFC 9111 §4.4: a non-error response to an unsafe method invalidates the request URL and
        the Location / Content-Location URLs on the same host (both schemes)."""
        cdef CacheStore store = self.store
        cdef bytes host = req.host
        cdef list targets = [(req.path, req.query)]
        cdef bytes value, rest, authority, target
        cdef Py_ssize_t slash, q
        cdef bytes lhost = self.url_key(b"http", host, b"", b"")[11:] if host is not None else b""
        for hname in (b"location", b"content-location"):
            value = head.get(hname)
            if value is None:
                continue
            value = value.strip()
            if value.startswith(b"/") and not value.startswith(b"//"):
                target = value
            else:
                lower = value[:8].lower()
                if lower.startswith(b"http://"):
                    rest = value[7:]
                elif lower.startswith(b"https://"):
                    rest = value[8:]
                else:
                    continue
                slash = rest.find(b"/")
                authority = rest if slash < 0 else rest[:slash]
                target = b"/" if slash < 0 else rest[slash:]
                if self.url_key(b"http", authority, b"", b"")[11:] != lhost \
                        and self.url_key(b"https", authority, b"", b"")[12:] != lhost:
                    continue
            target = target.split(b"#", 1)[0]
            q = target.find(b"?")
            targets.append((target, b"") if q < 0 else (target[:q], target[q:]))
        for path, query in targets:
            for scheme in (b"http", b"https"):
                key = self.url_key(scheme, host, path, query)
                store.remove_key(store.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)), key)
        return 0

    # ---- background revalidation (stale-while-revalidate) -------------------------------------

    cdef int start_refresh(self, Request req, CacheState st) except -1:
        """Sends the request the stale entry answered to the route's upstream again, as the
        exchange would (the same target path, Host and forwarded headers, the route's header
        edits), through the worker's UpstreamClient, with the entry's validators; `_refresh` then
        stores the outcome. The claim goes with it."""
        cdef Plan plan = <Plan>req.plan
        cdef bytes path = req.path, name
        cdef list pairs = req.hpairs
        cdef list headers = []
        cdef Py_ssize_t i
        cdef int hid
        group = plan.group
        if plan.split is not None:
            group = plan.split.groups[plan.split.pick(req)]
        if group is None:
            return 0
        if plan.rewrite is not None:
            path = plan.rewrite.apply(req, path)
        elif plan.strip_len >= 0:
            path = path[plan.strip_len:] or b"/"
        for i in range(0, len(pairs), 2):
            name = <bytes>pairs[i]
            hid = header_id(name)
            if hid != H_OTHER and header_flags[hid] & HF_REQUEST_DROP:
                continue
            if name_in(name, _REFRESH_DROP) or (plan.request_drop and name_in(name, plan.request_drop)) \
                    or (req.up_drop is not None and name_in(name, req.up_drop)):
                continue
            headers.append((name, <bytes>pairs[i + 1]))
        for name, value in _cf_block_pairs_tuples(plan.request_set + req.up_extra):
            if not name_in(name, _REFRESH_DROP):
                headers.append((name, value))
        etag = _cf_block_value(st.stale_head, b"etag")
        modified = _cf_block_value(st.stale_head, b"last-modified")
        if etag is not None:
            headers.append((b"if-none-match", etag))
        if modified is not None:
            headers.append((b"if-modified-since", modified))
        headers.append((b"x-request-id", req.rid))
        (<ClientCore>req.ex).rt.spawn(self._refresh(req, st, group, path + req.query, headers,
                                                    plan.host_header if plan.host_header is not None else req.host))
        return 0

    async def _refresh(self, Request req, CacheState st, group, bytes target, list headers, bytes host):
        cdef int64_t t0 = self.wall_ns(), wall, now, age = 0, life = 0
        cdef RespInfo ri
        cdef int detail = D_NONE, hid
        cdef list flat
        cdef CacheWrite w
        try:
            response = await self.client.request(group, b"GET", target, headers, host=host,
                                                 max_body=self.max_object)
        except Exception:
            st.release()
            return
        try:
            wall = self.wall_ns()
            now = self.store.now_ns()
            flat = []
            for name, value in response.headers:
                hid = header_id(<bytes>name)
                if hid != H_OTHER and header_flags[hid] & HF_RESPONSE_DROP:
                    continue
                flat.append(name)
                flat.append(value)
            if response.status == 304:
                self.restore(req, st, self.merge_304(st, flat), t0, wall, now, &age, &life)
                self.store.count(ST_REVALIDATED)
            elif response.status not in _ERROR_STATUSES:
                resp_info(flat, wall // NS, &ri)
                w = self.begin(req, st, flat, response.status, &ri, t0, wall, now, len(response.body), True,
                               &detail, &age, &life)
                if w is not None and w.append(PyBytes_AS_STRING(response.body), len(response.body)) == 0:
                    w.commit()
        finally:
            st.release()

    # ---- Python API (tests, tools) ------------------------------------------------------------

    def key_of(self, Request req not None):
        """The primary cache key of `req` as the filter computes it."""
        return self.url_key(self.scheme_of(req), req.host, req.path, req.query)
