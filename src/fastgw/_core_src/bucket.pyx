# Rate limiting: token buckets kept as GCRA state (see bucket.pxd for the call order).
#
# GCRA (generic cell rate algorithm) is a token bucket written as one number: the theoretical
# arrival time `tat`, in integer ns on CLOCK_MONOTONIC. With T ns per token and tau = burst * T,
# a bucket holds (tau - max(0, tat - now)) / T tokens, so `tat <= now` is a full bucket, and
# taking n tokens is `tat = max(tat, now) + n*T`, allowed iff that lands within tau of now.
# One word of state means a shared-memory update is one compare-and-swap, and integer ns mean
# no float drift. The result is the textbook bucket with the rate rounded to a whole number of
# ns per token (relative error <= 0.5 / interval_ns: 5e-7 at 1000/s).

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.math cimport INFINITY, isfinite, llround
from libc.stdint cimport INT64_MAX, uintptr_t
from libc.string cimport memset

import os as _bucket_os

cdef enum:
    BUCKET_CHOICES = 4    # candidate buckets of a key
    BUCKET_SPILL = 4      # a new key passes a candidate holding this many non-full buckets

# Spans (tau, interval, clock readings) stay below 2**61 ns (73 years) so that every sum in
# `_gcra` fits in 64 bits with room to spare.
cdef int64_t BUCKET_MAX_SPAN_NS = 2305843009213693952
# Key 0 marks an empty slot; a caller's key 0 is folded onto this one.
cdef uint64_t BUCKET_KEY_ZERO = 0xa0761d6478bd642f


cdef inline void _gcra(uint64_t tat, uint64_t now, int64_t interval, int64_t tau, int64_t max_n,
                       int n, GcraOutcome *out) noexcept nogil:
    cdef uint64_t base = tat if tat > now else now
    cdef uint64_t after = base
    cdef int64_t need = 0
    cdef int64_t debt
    out.allowed = False
    if n <= max_n:
        need = <int64_t>n * interval
        if base - now + <uint64_t>need <= <uint64_t>tau:
            out.allowed = True
            after = base + <uint64_t>need
    out.tat = after if out.allowed else tat
    # Another worker may have stored a tat computed from a slightly later clock reading, so the
    # debt can exceed tau by that skew: clamp rather than report negative tokens.
    debt = <int64_t>(after - now)
    out.reset_after_ns = debt
    out.remaining = (tau - debt) // interval if debt < tau else 0
    if n > max_n:
        out.retry_after_ns = INT64_MAX
    else:
        out.retry_after_ns = debt + need - tau if debt + need > tau else 0


cdef int _bucket_now(object clock, uint64_t *now) except -1:
    if clock is None:
        now[0] = fg_now_ns()
        return 0
    value = clock()
    if not 0 <= value < BUCKET_MAX_SPAN_NS:
        raise ValueError(f"clock() must return int ns in [0, 2**61), got {value!r}")
    now[0] = value
    return 0


cdef inline uint64_t _bucket_hash(bytes limit_id, bytes key, uint64_t seed) noexcept:
    cdef uint64_t h = fg_hash(<const unsigned char *><char *>limit_id, len(limit_id), seed)
    h = fg_hash(<const unsigned char *><char *>key, len(key), h)
    return h if h != 0 else BUCKET_KEY_ZERO


cpdef uint64_t key_hash(bytes limit_id, bytes key, uint64_t seed) except? 0:
    """Table key for (limit, client key) under `seed`.

    The limit id is hashed in so that limits sharing a table never share a bucket; the seed is
    per table and secret so clients cannot aim collisions at other clients' buckets. Never 0.
    """
    if limit_id is None or key is None:
        raise TypeError("limit_id and key must be bytes")
    return _bucket_hash(limit_id, key, seed)


cdef uint64_t _bucket_capacity(object capacity) except 0:
    if not 1 <= capacity <= 2**32:
        raise ValueError(f"capacity must be in [1, 2**32], got {capacity!r}")
    cdef uint64_t cap = FG_BUCKET_SLOTS
    while cap < <uint64_t>capacity:
        cap <<= 1
    return cap


cdef class Limit:
    """A rate limit compiled once at config load into the integer ns constants a decision uses.

    `rate` is tokens per second (at most 1e9, one token per ns), `burst` the bucket capacity in
    tokens (>= 1, may be fractional). The config layer picks the default burst (one second of
    rate); nothing here guesses it.
    """

    def __init__(self, double rate, double burst):
        if not (isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
        if not (isfinite(burst) and burst >= 1):
            raise ValueError(f"burst must be a finite number >= 1, got {burst!r}")
        if rate > 1e9:
            raise ValueError(f"rate {rate!r}/s is above one token per ns")
        cdef double interval = 1e9 / rate
        if interval * burst >= <double>BUCKET_MAX_SPAN_NS:
            raise ValueError(f"burst / rate ({burst!r} / {rate!r}) spans more than 2**61 ns")
        self.rate = rate
        self.burst = burst
        self.interval_ns = llround(interval)
        self.tau_ns = llround(burst * <double>self.interval_ns)
        if self.tau_ns >= BUCKET_MAX_SPAN_NS:
            raise ValueError(f"burst / rate ({burst!r} / {rate!r}) spans more than 2**61 ns")
        self.max_n = self.tau_ns // self.interval_ns

    def __repr__(self):
        return f"Limit(rate={self.rate!r}, burst={self.burst!r})"


cdef class TokenBucket:
    """One process-local token bucket, for code that embeds the core without shared memory.

    `clock` returns monotonic ns and exists for tests; without it the bucket reads
    CLOCK_MONOTONIC from C and a decision never calls into Python.
    """

    def __init__(self, double rate, double burst, clock=None):
        self.limit = Limit(rate, burst)
        self._clock = clock
        self._tat = 0

    cdef int _now(self, uint64_t *now) except -1:
        return _bucket_now(self._clock, now)

    cpdef bint consume(self, int n=1) except -1:
        """Take `n` tokens if the bucket holds them; a refusal takes nothing."""
        cdef uint64_t now
        cdef GcraOutcome out
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._now(&now)
        _gcra(self._tat, now, self.limit.interval_ns, self.limit.tau_ns, self.limit.max_n, n, &out)
        self._tat = out.tat
        return out.allowed

    cpdef double time_to_next(self) except -1.0:
        """Seconds until one token is available (0.0 if now): the basis of `Retry-After`."""
        cdef uint64_t now
        self._now(&now)
        cdef uint64_t base = self._tat if self._tat > now else now
        cdef int64_t wait = <int64_t>(base - now) + self.limit.interval_ns - self.limit.tau_ns
        return wait / 1e9 if wait > 0 else 0.0

    @property
    def remaining(self):
        """Whole tokens in the bucket now (`RateLimit-Remaining`)."""
        cdef uint64_t now
        self._now(&now)
        cdef int64_t debt = <int64_t>(self._tat - now) if self._tat > now else 0
        if debt >= self.limit.tau_ns:
            return 0
        return (self.limit.tau_ns - debt) // self.limit.interval_ns

    @property
    def reset_after(self):
        """Seconds until the bucket is full again (`RateLimit-Reset`)."""
        cdef uint64_t now
        self._now(&now)
        return (self._tat - now) / 1e9 if self._tat > now else 0.0


cdef class BucketTable:
    """GCRA buckets for many keys in one shared buffer, exact across forked workers.

    The master creates `mmap.mmap(-1, BucketTable.size_for(capacity), flags=MAP_SHARED)` and
    formats it with `init=True` before forking; each worker attaches with `init=False`. Every
    decision is a compare-and-swap of one 16-byte slot {key, tat}, so concurrent workers never
    lose or double-spend a token, and a worker killed mid-decision leaves the table consistent.

    Where a key lives. The slots form buckets of 8 (128 bytes, two cache lines), and a key may
    live in any of 4 candidate buckets (its low bits, then three remixes of all its bits); a
    lookup compares the key with the slots of its candidates, in order, until it finds it. A new
    key goes to the first candidate holding fewer than 4 non-full buckets or, if none does, to
    the candidate holding the fewest (the first of equals); there it takes the first slot that
    was never used or holds a full bucket (tat <= now: indistinguishable from a fresh one, so
    reusing its slot loses nothing). Only when all 32 candidate slots hold non-full buckets is
    one of them evicted, the closest to full (smallest tat; `evictions` counts these).

    Why this shape: a single window of 8 consecutive slots per key (layout version 1) filled up
    while much of the table was still free, as runs of used slots merged, and evicted live keys
    from half occupancy on. Four candidates, with new keys spread once a bucket is half full of
    live keys, keep the buckets level: with every key live (tests/unit/test_bucket_shared.py,
    64k slots, keys filling a fresh table), no eviction up to 85% of `capacity` and 1.2e-4
    evictions per new key at 90%, against 5.6e-3 at 50%, 4.2e-2 at 75% and 8.7e-2 at 90% for
    version 1; with keys coming and going (a steady live share of the table), none up to 75%.

    Why it stays exact across workers:

    - A slot, once used, is never emptied, and a new key only takes a slot at or before the
      first unused one of its bucket: the used slots of a bucket are always a prefix.
    - A key goes past a candidate only if that bucket held at least 4 non-full buckets, hence 4
      used slots, which stay used. So a lookup that meets a candidate whose 4th slot was never
      used can stop there: the key is in none of the later ones, whatever other workers are
      doing. That is the only early stop; no key ever moves.
    - A new key is one compare-and-swap of the slot chosen above: two workers inserting two new
      keys into the same slot cannot both succeed, and the loser looks again.

    What can go wrong is bounded:

    - the evicted key, when it comes back, gets a fresh full bucket, so it can exceed its limit
      by at most `burst` tokens per eviction;
    - two workers inserting the same new key at the same instant can, rarely (when what they
      read of its candidates differs), each take a different slot; lookups use the first in
      candidate order, so the decisions made on the other during that race (about one per
      racing worker) are not charged to the key.

    So size `capacity` against the keys active at once (a key is active for up to burst/rate
    after its last request; `stats()['active']`): the config layer's default of 65536 slots
    (1 MiB) serves 49k active keys (75%) with no eviction, 55k (85%) with next to none.
    """

    def __cinit__(self):
        self._has_view = False

    def __init__(self, buffer, capacity, *, bint init, clock=None):
        if self._has_view:
            raise TypeError("BucketTable is already initialized")
        cdef uint64_t cap = _bucket_capacity(capacity)
        cdef Py_ssize_t size = BucketTable.size_for(cap)
        PyObject_GetBuffer(buffer, &self._view, PyBUF_WRITABLE)
        self._has_view = True
        if self._view.len < size:
            raise ValueError(f"buffer has {self._view.len} bytes, capacity {cap} needs {size}")
        if <uintptr_t>self._view.buf % 16:
            raise ValueError("buffer must be 16-byte aligned (an mmap is)")
        self._header = <fg_table_header *>self._view.buf
        self._slots = <fg_slot *>(<char *>self._view.buf + sizeof(fg_table_header))
        if init:
            memset(self._view.buf, 0, size)
            self._header.version = FG_TABLE_VERSION
            self._header.capacity = cap
            self._header.seed = int.from_bytes(_bucket_os.urandom(8), "little")
            fg_store(&self._header.magic, FG_TABLE_MAGIC)
        else:
            if fg_load(&self._header.magic) != FG_TABLE_MAGIC:
                raise ValueError("buffer is not a formatted BucketTable (init=True formats one)")
            if self._header.version != FG_TABLE_VERSION:
                raise ValueError(f"BucketTable layout version {self._header.version}, "
                                 f"this build reads {FG_TABLE_VERSION}")
            if self._header.capacity != cap:
                raise ValueError(f"BucketTable was formatted with capacity "
                                 f"{self._header.capacity}, not {cap}")
        self._bucket_mask = cap // FG_BUCKET_SLOTS - 1
        self._seed = self._header.seed
        self._clock = clock

    def __dealloc__(self):
        if self._has_view:
            PyBuffer_Release(&self._view)

    @staticmethod
    def size_for(capacity):
        """Bytes of buffer for `capacity` slots (rounded up to a power of two, at least 8)."""
        return sizeof(fg_table_header) + _bucket_capacity(capacity) * sizeof(fg_slot)

    @property
    def capacity(self):
        return (self._bucket_mask + 1) * FG_BUCKET_SLOTS

    @property
    def seed(self):
        """The table's hash seed, drawn at format time so every attached worker agrees."""
        return self._seed

    @property
    def retry_after(self):
        """Seconds, after the last consume(), until the same n would be allowed; inf if never."""
        return INFINITY if self.retry_after_ns == INT64_MAX else self.retry_after_ns / 1e9

    @property
    def reset_after(self):
        """Seconds, after the last consume(), until that bucket is full again."""
        return self.reset_after_ns / 1e9

    cdef int _now(self, uint64_t *now) except -1:
        return _bucket_now(self._clock, now)

    cdef void _decide(self, uint64_t key, uint64_t now, int64_t interval, int64_t tau,
                      int64_t max_n, int n, GcraOutcome *out) noexcept nogil:
        cdef fg_slot *bucket
        cdef fg_slot *found
        cdef uint64_t k, t
        cdef int i, j
        while True:
            found = NULL
            for j in range(BUCKET_CHOICES):
                bucket = self._slots + fg_bucket_of(key, j, self._bucket_mask) * FG_BUCKET_SLOTS
                i = fg_bucket_find(bucket, key)
                if i >= 0:
                    found = bucket + i
                    break
                if fg_load(&bucket[BUCKET_SPILL - 1].key) == 0:
                    break  # no key ever went past this bucket (see the class docstring)
            if found != NULL:
                k = key
                t = fg_load(&found.tat)
                while True:
                    _gcra(t, now, interval, tau, max_n, n, out)
                    # Also on refusal: the swap of a pair with itself proves the pair was read
                    # whole, so a refusal is never based on a slot changing hands mid-read.
                    if fg_cas_slot(found, &k, &t, key, out.tat):
                        return
                    if k != key:
                        break
            else:
                _gcra(0, now, interval, tau, max_n, n, out)
                if not out.allowed or self._claim(key, now, out.tat):
                    return

    cdef bint _claim(self, uint64_t key, uint64_t now, uint64_t tat) noexcept nogil:
        """Store a new key's first state in the slot the class docstring says; False if the table
        changed under the choice (the slot was taken, or the key appeared): look up again."""
        cdef fg_slot *bucket
        cdef fg_slot *s
        cdef fg_slot *free
        cdef fg_slot *spare = NULL
        cdef fg_slot *victim = NULL
        cdef uint64_t k, t, fkey = 0, ftat = 0, skey = 0, stat = 0, vkey = 0, vtat = 0
        cdef int i, j, live, spare_live = FG_BUCKET_SLOTS
        for j in range(BUCKET_CHOICES):
            bucket = self._slots + fg_bucket_of(key, j, self._bucket_mask) * FG_BUCKET_SLOTS
            live = 0
            free = NULL
            for i in range(FG_BUCKET_SLOTS):
                s = bucket + i
                k = fg_load(&s.key)
                if k == key:
                    return False
                if k == 0:
                    if free == NULL:
                        free, fkey, ftat = s, 0, 0
                    break  # the used slots are a prefix
                t = fg_load(&s.tat)
                if t > now:
                    live += 1
                elif free == NULL:
                    free, fkey, ftat = s, k, t
            if live < BUCKET_SPILL:
                return fg_cas_slot(free, &fkey, &ftat, key, tat)
            if live < spare_live:
                spare, skey, stat, spare_live = free, fkey, ftat, live
        if spare != NULL:
            return fg_cas_slot(spare, &skey, &stat, key, tat)
        # All candidate slots hold non-full buckets: evict the one closest to full.
        for j in range(BUCKET_CHOICES):
            bucket = self._slots + fg_bucket_of(key, j, self._bucket_mask) * FG_BUCKET_SLOTS
            for i in range(FG_BUCKET_SLOTS):
                s = bucket + i
                k = fg_load(&s.key)
                t = fg_load(&s.tat)
                if k == key:
                    return False
                if victim == NULL or t < vtat:
                    victim, vkey, vtat = s, k, t
        if not fg_cas_slot(victim, &vkey, &vtat, key, tat):
            return False
        if vkey != 0 and vtat > now:
            fg_add(&self._header.evictions, 1)
        return True

    cpdef bint consume(self, uint64_t key, Limit limit, int n=1) except -1:
        """Take `n` tokens from `key`'s bucket under `limit`; a refusal takes nothing.

        The outcome's numbers land in `remaining`, `retry_after_ns` and `reset_after_ns` (C
        fields of this per-worker object) instead of a result object, so a decision allocates
        nothing; read them before the next consume().
        """
        cdef uint64_t now
        cdef GcraOutcome out
        if limit is None:
            raise TypeError("limit must be a Limit, not None")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if key == 0:
            key = BUCKET_KEY_ZERO
        self._now(&now)
        self._decide(key, now, limit.interval_ns, limit.tau_ns, limit.max_n, n, &out)
        self.remaining = out.remaining
        self.retry_after_ns = out.retry_after_ns
        self.reset_after_ns = out.reset_after_ns
        return out.allowed

    cpdef uint64_t key_hash(self, bytes limit_id, bytes key) except? 0:
        """`key_hash(limit_id, key, self.seed)`: the key to pass to consume()."""
        if limit_id is None or key is None:
            raise TypeError("limit_id and key must be bytes")
        return _bucket_hash(limit_id, key, self._seed)

    cpdef dict stats(self):
        """Occupancy for metrics and sizing.

        `used` counts slots ever claimed (it only grows); `active` counts buckets not full now,
        the number that matters against `capacity`; `evictions` counts non-full buckets dropped
        for lack of room, each a possible excess of up to one burst. Scans the whole table, so
        it is for a metrics scrape, not the request path.
        """
        cdef uint64_t now
        cdef uint64_t i, used = 0, active = 0
        self._now(&now)
        for i in range((self._bucket_mask + 1) * FG_BUCKET_SLOTS):
            if fg_load(&self._slots[i].key) != 0:
                used += 1
                if fg_load(&self._slots[i].tat) > now:
                    active += 1
        return {
            "capacity": (self._bucket_mask + 1) * FG_BUCKET_SLOTS,
            "used": used,
            "active": active,
            "evictions": fg_load(&self._header.evictions),
        }
