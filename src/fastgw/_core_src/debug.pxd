cdef extern from "debug.h":
    cdef int FASTGW_DEBUG
