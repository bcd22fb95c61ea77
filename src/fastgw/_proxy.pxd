# Declarations shared by the files of the private proxy module (`_proxy.pyx`). Not a public
# contract: embedders cimport `fastgw._core` only.

from fastgw._core cimport RouteTrie, RouteMatch, BucketTable, Limit, normalize_path, fg_now_ns, fg_hash

include "_proxy_src/consts.pxi"
include "_proxy_src/buf.pxd"
include "_proxy_src/headers.pxd"


cdef inline double _now() noexcept nogil:
    """CLOCK_MONOTONIC seconds: the clock of every timeout and duration in the proxy."""
    return <double>fg_now_ns() * 1e-9


include "_proxy_src/request.pxd"
include "_proxy_src/keys.pxd"
include "_proxy_src/filter.pxd"
include "_proxy_src/plan.pxd"
include "_proxy_src/builtin.pxd"
include "_proxy_src/metrics.pxd"
include "_proxy_src/tracing.pxd"
include "_proxy_src/accesslog.pxd"
include "_proxy_src/tunnel.pxd"
include "_proxy_src/upstreams.pxd"
include "_proxy_src/upstream.pxd"
include "_proxy_src/exchange.pxd"
include "_proxy_src/ratelimit.pxd"
include "_proxy_src/authcache.pxd"
include "_proxy_src/cachestore.pxd"
include "_proxy_src/cachepolicy.pxd"
include "_proxy_src/cache.pxd"
include "_proxy_src/compress.pxd"
