# Declarations other Cython code may cimport: `from fastgw._core cimport RouteTrie, TokenBucket`.
include "_core_src/trie.pxd"
include "_core_src/bucket.pxd"
include "_core_src/proto.pxd"
include "_core_src/ratefilter.pxd"
