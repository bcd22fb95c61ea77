# The response cache as a filter of the request pipeline (DESIGN §3, RFC 9111): one CacheFilter
# per cached route and worker, all on the worker's view of the host's shared store (cachestore).
#
# Call order, per request of a cached route:
#   on_request (phase CACHE, after auth and rate limits), GET and HEAD only:
#       the key (method, scheme, normalized host, path, query; plus the request headers a Vary
#       marker names) -> the store -> a fresh entry: a Reply (RESPONDED) with the stored header
#       lines in req.resp_extra and the body copied out of shared memory once;
#     else a CacheState in req.vars (why it goes on, a copy of a stale entry to revalidate with
#       If-None-Match / If-Modified-Since or to serve on error) and, for a plain miss, a claim on
#       the key: the claimant goes on (CONTINUE); another request that finds the claim taken waits
#       for it (SUSPENDED on _collapse) and then is served from the store, or goes on itself.
#   on_response (phase STORE, last): every response gets Age and Cache-Status; a hit's reply is
#       left as it is; an upstream 304 to a revalidation becomes the stored response (its headers
#       updated and stored again); an error (upstream 5xx, or the gateway's own 502/504) within
#       stale-if-error becomes the stored response; a storable response starts a CacheWrite and
#       asks for the body (stream_through, not transforming); a successful unsafe request
#       invalidates its URL and its Location / Content-Location on the same host.
#   on_body / on_end: body pieces are appended to the CacheWrite as they pass to the client;
#       on_end commits it (or gives the stored body that replaces the upstream's).
# A request that ends before on_end (client gone, upstream reset) drops its CacheState, and with
# it the CacheWrite, which aborts itself: nothing half-written is ever published.

cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef struct RqInfo:
    CacheControl cc          # the request's directives (Pragma: no-cache counts as no-cache)
    bint auth                # Authorization present
    bint head                # HEAD (looked up as GET; never stored)
    bint upgrade             # Upgrade (a WebSocket handshake): never looked up or stored


@cython.final
cdef class CacheState:
    cdef CacheStore store
    cdef bytes primary               # the key without Vary (a marker's key, if the URL varies)
    cdef uint64_t phash
    cdef bytes key                   # where a response to this request would be stored (a variant
    cdef uint64_t hash               #   key once a marker told the Vary names)
    cdef RqInfo rq
    cdef bytes inm                   # the client's If-None-Match / If-Modified-Since
    cdef bytes ims
    cdef int fwd                     # FWD_*: why the request was forwarded
    cdef bint swr_ok                 # the stale entry may be served while another revalidates
    cdef bint has_stale              # a copy of a usable stale entry:
    cdef EntrySnap stale             #   its metadata,
    cdef bytes stale_head            #   header lines
    cdef bytes stale_body            #   and body
    cdef bint revalidating           # the upstream request carries our validators
    cdef bint has_claim
    cdef uint32_t claim_slot
    cdef uint32_t claim_token
    cdef bint collapsed              # waited for another request's fill
    cdef CacheWrite writer           # the response being stored
    cdef bytes serve_body            # the stored body replacing the upstream's (304, stale-if-error)
    cdef void release(self) noexcept


@cython.final
cdef class CacheFilter(Filter):
    cdef CacheStore store
    cdef int64_t ttl_ns              # the route's ttl, -1: none
    cdef Py_ssize_t max_object       # larger bodies stream through unstored
    cdef int64_t lock_ns             # how long a miss waits for another request's fill
    cdef int64_t swr_ns              # route defaults when a response names none (-1: none)
    cdef int64_t sie_ns
    cdef tuple strip                 # lower-case names never stored (Date, Age, Set-Cookie, the
                                     #   route's response `set` names: added to every reply anyway)
    cdef object wall_clock           # None: CLOCK_REALTIME from C; else a callable giving ns (tests)
    cdef public object client        # the worker's UpstreamClient: background revalidation
                                     #   (stale-while-revalidate); None: the claimant revalidates
    cdef bytes _inm                  # the last scanned request's conditionals
    cdef bytes _ims
    cdef OutBuf kb                   # key rendering

    cdef bytes scheme_of(self, Request req)
    cdef bytes url_key(self, bytes scheme, bytes host, bytes path, bytes query)
    cdef int url_key_buf(self, bytes scheme, bytes host, bytes path, bytes query) except -1
    cdef int scan(self, Request req, RqInfo* rq) except -1
    cdef bytes variant_key(self, bytes primary, uint64_t epoch, bytes names, Request req)
    cdef object lookup(self, Request req, RqInfo* rq, bytes key, uint64_t phash, bint collapsed)
    cdef Reply hit(self, Request req, EntrySnap* s, int64_t now, int64_t age, int64_t fresh, int detail,
                   bint collapsed)
    cdef int64_t wall_ns(self) except? -1
    cdef int invalidate(self, Request req, ResponseHead head) except -1
    cdef int decide(self, CacheState st, int status, RespInfo* ri, int64_t life, int64_t swr, int64_t sie,
                    bint framing_ok) noexcept
    cdef CacheWrite begin(self, Request req, CacheState st, list headers, int status, RespInfo* ri,
                          int64_t request_wall, int64_t wall, int64_t now, Py_ssize_t hint, bint framing_ok,
                          int* detail, int64_t* age_out, int64_t* life_out)
    cdef int store_response(self, Request req, ResponseHead head, CacheState st, int64_t now) except -1
    cdef list merge_304(self, CacheState st, list fresh)
    cdef bint restore(self, Request req, CacheState st, list merged, int64_t request_wall, int64_t wall,
                      int64_t now, int64_t* age_out, int64_t* life_out) except -1
    cdef int freshen(self, Request req, ResponseHead head, CacheState st, int64_t now) except -1
    cdef int start_refresh(self, Request req, CacheState st) except -1
    cdef Reply _stale_reply(self, Request req, CacheState st, int detail)
    cdef int serve_stale(self, Request req, ResponseHead head, CacheState st, int64_t now, int detail) except -1
