# RFC 9111 rules as pure functions (cachepolicy.pyx): what the cache filter parses out of
# Cache-Control, the dates and ages of a response, and its freshness lifetime. Times are ns (or
# seconds where the field is), passed in: nothing here reads a clock.

from libc.stdint cimport int64_t

cdef struct CacheControl:
    bint present
    bint no_store
    bint no_cache
    bint private_
    bint public
    bint must_revalidate
    bint proxy_revalidate
    bint only_if_cached
    int64_t max_age          # seconds; CC_ABSENT, or CC_INVALID (not delta-seconds: stale)
    int64_t s_maxage
    int64_t swr              # stale-while-revalidate
    int64_t sie              # stale-if-error
    int64_t max_stale        # request: seconds, or CC_ANY
    int64_t min_fresh        # request


# What the freshness and storage rules need from a response's header section.
cdef struct RespInfo:
    CacheControl cc
    int64_t date             # seconds since the epoch; DATE_INVALID when missing or invalid
    int64_t expires          # DATE_INVALID when invalid (in the past)
    bint has_expires
    int64_t age              # seconds; -1 when missing or invalid
    bint vary_star
    int nvary
    bint set_cookie
    bint etag
    bint last_modified
