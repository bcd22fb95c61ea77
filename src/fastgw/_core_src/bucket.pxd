# Rate limiting: GCRA token buckets (bucket.pyx), local or in a shared-memory table.
#
# Use from Cython (`from fastgw._core cimport Limit, BucketTable`): build one `Limit` per
# configured limit at config load, and one `BucketTable` per worker attached to the mapping the
# master formatted before forking. Per request:
#
#     if not table.consume(table.key_hash(limit_id, client_key), limit, 1):
#         ... 429 with Retry-After = ceil(table.retry_after_ns / 1e9)
#     RateLimit-Remaining = table.remaining, RateLimit-Reset = ceil(table.reset_after_ns / 1e9)
#
# `consume` with the C clock creates no Python object and never calls Python; the results of the
# last decision are plain C fields of the (per-process, single-threaded) table object.
# The classes are final so that these calls from Cython are direct C calls, with no check for
# a Python subclass overriding them.

cimport cython
from cpython.buffer cimport Py_buffer
from libc.stdint cimport int64_t, uint64_t

cdef extern from "bucket_atomic.h" nogil:
    ctypedef struct fg_slot:
        uint64_t key
        uint64_t tat
    ctypedef struct fg_table_header:
        uint64_t magic
        uint64_t version
        uint64_t capacity
        uint64_t seed
        uint64_t evictions
    uint64_t FG_TABLE_MAGIC
    uint64_t FG_TABLE_VERSION
    enum: FG_BUCKET_SLOTS
    uint64_t fg_load(const uint64_t *p)
    void fg_store(uint64_t *p, uint64_t v)
    void fg_add(uint64_t *p, uint64_t v)
    int fg_cas_slot(fg_slot *s, uint64_t *key, uint64_t *tat, uint64_t nkey, uint64_t ntat)
    int fg_bucket_find(const fg_slot *b, uint64_t key)
    uint64_t fg_bucket_of(uint64_t key, int j, uint64_t bucket_mask)
    uint64_t fg_now_ns()
    uint64_t fg_hash(const unsigned char *p, size_t n, uint64_t seed)

# One GCRA step's outputs, all relative to the decision's `now`.
cdef struct GcraOutcome:
    bint allowed
    uint64_t tat             # state to store (unchanged when refused)
    int64_t remaining        # whole tokens left after the decision
    int64_t retry_after_ns   # until the same n would be allowed; INT64_MAX if n > burst
    int64_t reset_after_ns   # until the bucket is full again

@cython.final
cdef class Limit:
    # Integer ns constants derived once from (rate, burst), so decisions need no float math.
    cdef readonly double rate
    cdef readonly double burst
    cdef readonly int64_t interval_ns   # ns per token (1e9 / rate, rounded)
    cdef readonly int64_t tau_ns        # bucket depth in ns: burst * interval_ns, rounded
    cdef readonly int64_t max_n         # largest n that can ever be allowed (tau // interval)

@cython.final
cdef class TokenBucket:
    # A process-local bucket: one tat word, no locking.
    cdef readonly Limit limit
    cdef uint64_t _tat
    cdef object _clock              # None: CLOCK_MONOTONIC read from C
    cdef int _now(self, uint64_t *now) except -1
    cpdef bint consume(self, int n=*) except -1
    cpdef double time_to_next(self) except -1.0

@cython.final
cdef class BucketTable:
    # `capacity` (power of two) slots in a caller-provided shared buffer, in buckets of
    # FG_BUCKET_SLOTS; each key may live in any of BUCKET_CHOICES buckets (see the docstring).
    cdef Py_buffer _view            # held for the table's lifetime: the mapping cannot be closed
    cdef bint _has_view
    cdef fg_table_header *_header
    cdef fg_slot *_slots
    cdef uint64_t _bucket_mask      # buckets - 1
    cdef uint64_t _seed
    cdef object _clock
    # Results of this process's last consume().
    cdef readonly int64_t remaining
    cdef readonly int64_t retry_after_ns
    cdef readonly int64_t reset_after_ns
    cdef int _now(self, uint64_t *now) except -1
    cdef void _decide(self, uint64_t key, uint64_t now, int64_t interval, int64_t tau,
                      int64_t max_n, int n, GcraOutcome *out) noexcept nogil
    cdef bint _claim(self, uint64_t key, uint64_t now, uint64_t tat) noexcept nogil
    cpdef bint consume(self, uint64_t key, Limit limit, int n=*) except -1
    cpdef uint64_t key_hash(self, bytes limit_id, bytes key) except? 0
    cpdef dict stats(self)
