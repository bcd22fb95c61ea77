# cython: language_level=3
"""fastgw's public compiled library: path normalization, the routing trie and GCRA token buckets
(local, or in a shared-memory table). Assembled from `_core_src/` with `include` (the uvloop
layout). It imports nothing but the standard library, so other Python and Cython code can embed
it (docs/embedding.md); the proxy itself lives in the private module `fastgw._proxy`, which
cimports this one."""

include "_core_src/path.pyx"
include "_core_src/trie.pyx"
include "_core_src/bucket.pyx"


cpdef double monotonic():
    """CLOCK_MONOTONIC in seconds: the clock of the buckets, and of the proxy's timeouts."""
    return <double>fg_now_ns() * 1e-9
