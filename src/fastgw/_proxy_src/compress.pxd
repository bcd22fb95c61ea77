# The COMPRESS response filter, compiled (fastgw.compress: its policy and codecs).

@cython.final
cdef class CompressFilter(Filter):
    cdef object policy               # fastgw.compress.Policy: types, encodings, levels, min_size
    cdef dict type_cache             # the policy's Content-Type -> bool cache
    cdef object type_match           # policy.types.match, on a cache miss
    cdef dict choices                # the policy's Accept-Encoding -> coding cache
    cdef object choose               # policy.choose, on a cache miss
    cdef dict streams                # coding -> (level, length) -> (compress piece, finish)
    cdef dict levels                 # coding -> level
    cdef Py_ssize_t min_size
