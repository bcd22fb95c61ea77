# cython: language_level=3
"""fastgw's private proxy module: the HTTP/1.1 exchange, the upstream protocol, the request
pipeline (phases, the filter contract, compiled filters) and the access log. Assembled from
`_proxy_src/` with `include`, like `_core`, whose public library (router, path normalization,
buckets) it cimports. Not an API: embed `fastgw._core` instead."""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcmp

include "_proxy_src/headers.pyx"
include "_proxy_src/keys.pyx"
include "_proxy_src/request.pyx"
include "_proxy_src/filter.pyx"
include "_proxy_src/plan.pyx"
include "_proxy_src/upstreams.pyx"
include "_proxy_src/upstream.pyx"
include "_proxy_src/tunnel.pyx"
include "_proxy_src/exchange.pyx"
include "_proxy_src/accesslog.pyx"
include "_proxy_src/metrics.pyx"
include "_proxy_src/tracing.pyx"
include "_proxy_src/ratelimit.pyx"
include "_proxy_src/authcache.pyx"
include "_proxy_src/builtin.pyx"
include "_proxy_src/cachestore.pyx"
include "_proxy_src/cachepolicy.pyx"
include "_proxy_src/cache.pyx"
include "_proxy_src/compress.pyx"
