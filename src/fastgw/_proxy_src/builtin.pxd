# The gateway's own compiled filters (DESIGN §3), one per feature, built once per route by
# fastgw.pipeline.chain:
#   AccessFilter    ACCESS   IP allow/deny on the client address (through trusted proxies)
#   CorsFilter      CORS     answers preflights itself; CORS headers on every other response
#   FixedResponder  RESPOND  a fixed Reply (maintenance pages)
#   Redirector      RESPOND  a redirect whose Location is a template of the request

cimport cython
from libc.stdint cimport uint8_t


cdef struct IpRule:
    uint8_t addr[16]         # IPv4 as IPv4-mapped IPv6, so one comparison serves both families
    int prefix               # bits, over the 128
    bint deny


@cython.final
cdef class IpSet:
    cdef IpRule* rules
    cdef int count
    cdef bint contains(self, bytes ip)


@cython.final
cdef class AccessFilter(Filter):
    cdef IpRule* rules
    cdef int count
    cdef bint has_allow
    cdef bint allows(self, bytes ip)


@cython.final
cdef class CorsFilter(Filter):
    cdef frozenset exact             # lower-case origins
    cdef tuple suffixes              # (scheme prefix, ".domain[:port]") pairs for *.domain
    cdef bint any_origin
    cdef bint credentials
    cdef frozenset methods
    cdef bytes methods_value
    cdef frozenset headers           # lower-case allowed request headers, None: any asked for
    cdef bytes headers_value
    cdef bytes expose_line
    cdef bytes max_age_line
    cdef bint origin_allowed(self, bytes origin)
    cdef bytes allow_lines(self, bytes origin)
    cdef int preflight(self, Request req, bytes origin, bint allowed, bytes method) except -1


@cython.final
cdef class FixedResponder(Filter):
    cdef Reply reply


@cython.final
cdef class Redirector(Filter):
    cdef int status
    cdef tuple parts                 # literal bytes and names (str) alternating
