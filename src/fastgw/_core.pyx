# cython: language_level=3
"""fastgw's compiled hot path: one extension module assembled from `_core_src/` with `include`
(the uvloop/asyncpg layout), so cdef code in different parts can call each other directly."""

include "_core_src/path.pyx"
include "_core_src/trie.pyx"
include "_core_src/bucket.pyx"
include "_core_src/proto.pyx"
include "_core_src/accesslog.pyx"
include "_core_src/ratefilter.pyx"
