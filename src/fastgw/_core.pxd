# Declarations other Cython code may cimport, e.g.
#     from fastgw._core cimport RouteTrie, RouteMatch, BucketTable, Limit, normalize_path
# This is the stable, embeddable surface; see docs/embedding.md.
include "_core_src/path.pxd"
include "_core_src/trie.pxd"
include "_core_src/bucket.pxd"
