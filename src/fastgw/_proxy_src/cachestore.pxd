# The response cache's shared store: one per host, in a mapping the master creates before forking
# (fastgw.cache.shared), attached by every worker (and by the master, for the admin API).
#
# What it holds: entries of (key, rendered header lines, body) with the metadata freshness needs,
# found by the 64-bit seeded hash of the key and then compared byte for byte; LRU by bytes.
# Layout, primitives and the safety argument: cache_shm.h; in full, docs/caching.md.
#
# Call order:
#   reading (a worker, no lock):  find() -> an EntrySnap (validated) -> copy_head()/copy_body()
#       into objects of the caller's -> valid(snap) (nothing it copied was overwritten) ->
#       touch(snap) (LRU)
#   writing (a worker):  begin() -> a CacheWrite, then append()* and exactly one of commit() /
#       abort() (a CacheWrite dropped unfinished aborts itself; a process killed mid-write leaves
#       a WRITING entry the master frees with release_dead(pid), or the next recovery does)
#   collapsing:  claim() -> CLAIM_OWNER (fetch, then release through commit/abort or
#       release_claim) or CLAIM_WAIT (poll claim_held() until False, then find() again)
#   the master:  stats(), purge(), release_dead(pid)

cimport cython
from cpython.buffer cimport Py_buffer
from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef extern from "_proxy_src/cache_shm.h" nogil:
    ctypedef struct fgc_entry:
        uint32_t seq
        uint32_t state
        uint64_t hash
        uint32_t first
        uint32_t last
        uint32_t nblocks
        uint32_t key_len
        uint32_t head_len
        uint32_t body_len
        uint32_t prev
        uint32_t next
        int pid
        uint32_t flags
        uint32_t status
        uint32_t nvary
        int64_t stored_ns
        int64_t age_ns
        int64_t lifetime_ns
        int64_t swr_ns
        int64_t sie_ns
        uint64_t epoch
        uint64_t used_ms
        uint64_t lru_ms
    ctypedef struct fgc_claim:
        uint64_t hash
        uint32_t token
        int pid
        int64_t deadline_ns
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct fgc_header:
        uint64_t magic
        uint64_t version
        uint64_t size
        uint64_t seed
        uint64_t nslots
        uint64_t nentries
        uint64_t nblocks
        uint64_t nclaims
        uint64_t off_stats
        uint64_t off_slots
        uint64_t off_entries
        uint64_t off_next
        uint64_t off_claims
        uint64_t off_blocks
        uint32_t free_entry
        uint32_t fresh_entry
        uint32_t free_block
        uint32_t fresh_block
        uint32_t lru_head
        uint32_t lru_tail
        uint32_t writing_head
        uint64_t free_blocks
        uint64_t free_entries
        uint64_t ready
        uint64_t writing
        uint64_t ready_bytes
        uint64_t epoch
        uint64_t token
        uint64_t evictions
        uint64_t purged
        uint64_t invalidated
        uint64_t recoveries
        uint64_t dead_writes
        uint64_t claim_gen
        pthread_mutex_t lock
    ctypedef struct fgc_stats:
        uint64_t v[8]
    uint64_t FGC_MAGIC
    uint64_t FGC_VERSION
    uint32_t FGC_BLOCK
    uint32_t FGC_NONE
    uint32_t FGC_STAT_ROWS
    int FGC_FREE
    int FGC_WRITING
    int FGC_READY
    uint32_t fgc_load32(const uint32_t *p)
    uint64_t fgc_load64(const uint64_t *p)
    void fgc_store32(uint32_t *p, uint32_t v)
    void fgc_store64(uint64_t *p, uint64_t v)
    void fgc_store64_relaxed(uint64_t *p, uint64_t v)
    void fgc_add64(uint64_t *p, uint64_t v)
    void fgc_fence_acquire()
    void fgc_fence_release()
    int fgc_mutex_init(pthread_mutex_t *m)
    int fgc_lock(pthread_mutex_t *m)
    int fgc_trylock(pthread_mutex_t *m)
    int fgc_consistent(pthread_mutex_t *m)
    void fgc_unlock(pthread_mutex_t *m)
    int fgc_copy(const uint32_t *next, const char *blocks, uint64_t total_blocks, uint32_t first,
                 uint32_t nblocks, uint64_t off, char *dst, uint64_t len)
    int fgc_compare(const uint32_t *next, const char *blocks, uint64_t total_blocks, uint32_t first,
                    uint32_t nblocks, const char *key, uint64_t len)

# Entry flags (fgc_entry.flags).
cdef enum:
    EF_MARKER = 1               # a Vary marker: its header lines are the Vary names
    EF_AUTH_OK = 2              # public or s-maxage: may answer a request with Authorization
    EF_MUST_REVALIDATE = 4      # must-revalidate, proxy-revalidate or s-maxage: never served stale
    EF_NO_CACHE = 8             # never served without revalidation

# Per-process counters (a stat row).
cdef enum:
    ST_HITS = 0
    ST_MISSES = 1
    ST_STALE = 2                # stale responses served (stale-while-revalidate, stale-if-error)
    ST_REVALIDATED = 3          # 304s that refreshed an entry
    ST_STORES = 4
    ST_STORE_ABORTS = 5         # stores given up (too large, no space, response cut short)
    ST_COLLAPSED = 6            # requests that waited for another's fill
    ST_BYPASS = 7

cdef enum:
    CLAIM_OWNER = 0             # this request fetches; others wait for it
    CLAIM_WAIT = 1              # another request is fetching
    CLAIM_NONE = 2              # no claim slot free: fetch without collapsing

cdef enum:
    STORE_BUMP_MS = 50          # a hit moves its entry to the LRU head at most this often


# What a reader learned about an entry: valid while valid(snap) says so.
cdef struct EntrySnap:
    uint32_t idx
    uint32_t seq
    uint32_t first
    uint32_t nblocks
    uint32_t key_len
    uint32_t head_len
    uint32_t body_len
    uint32_t flags
    uint32_t status
    uint32_t nvary
    int64_t stored_ns
    int64_t age_ns
    int64_t lifetime_ns
    int64_t swr_ns
    int64_t sie_ns
    uint64_t epoch


# What a writer states about the response it stores.
cdef struct EntryMeta:
    uint32_t flags
    uint32_t status
    uint32_t nvary
    int64_t stored_ns
    int64_t age_ns
    int64_t lifetime_ns
    int64_t swr_ns
    int64_t sie_ns
    uint64_t epoch


@cython.final
cdef class CacheStore:
    cdef Py_buffer _view
    cdef bint _has_view
    cdef fgc_header* h
    cdef fgc_stats* row                 # this process's counters
    cdef fgc_stats* rows
    cdef uint64_t* slots
    cdef fgc_entry* entries
    cdef uint32_t* nxt
    cdef fgc_claim* claims
    cdef char* blocks
    cdef uint64_t mask
    cdef uint64_t claim_mask
    cdef uint64_t seed
    cdef int pid
    cdef object _clock                  # None: CLOCK_MONOTONIC from C

    cdef int64_t now_ns(self) except? -1
    cdef void count(self, int stat) noexcept
    cdef uint64_t hash_key(self, const char* key, Py_ssize_t n) noexcept
    # reading
    cdef bint find(self, uint64_t hash, const char* key, Py_ssize_t n, EntrySnap* out) noexcept
    cdef int copy_head(self, EntrySnap* s, char* dst) noexcept
    cdef int copy_body(self, EntrySnap* s, char* dst) noexcept
    cdef bint valid(self, EntrySnap* s) noexcept
    cdef int touch(self, EntrySnap* s, int64_t now) except -1
    cdef bytes head_bytes(self, EntrySnap* s)
    cdef bytes body_bytes(self, EntrySnap* s)
    # writing (under the lock unless said)
    cdef int _lock(self) except -1
    cdef void _unlock(self) noexcept
    cdef void _recover(self) noexcept
    cdef uint32_t _alloc_entry(self) noexcept
    cdef int _alloc_blocks(self, uint32_t n, uint32_t* first, uint32_t* last) noexcept
    cdef bint _evict_one(self) noexcept
    cdef void _free_entry(self, uint32_t idx) noexcept
    cdef void _lru_unlink(self, uint32_t idx) noexcept
    cdef void _lru_push(self, uint32_t idx, uint64_t now_ms) noexcept
    cdef void _writing_unlink(self, uint32_t idx) noexcept
    cdef int64_t _slot_of(self, uint32_t idx) noexcept
    cdef void _slot_delete(self, uint64_t pos) noexcept
    cdef void _slot_insert(self, uint32_t idx) noexcept
    cdef int _key_equal_locked(self, uint32_t idx, const char* key, Py_ssize_t n) noexcept
    cdef int _remove_key_locked(self, uint64_t hash, const char* key, Py_ssize_t n, uint32_t keep) noexcept
    cdef int _reap_dead_writers_locked(self) noexcept
    cdef void _release_claim_locked(self, uint32_t slot, uint32_t token) noexcept
    cdef CacheWrite begin_meta(self, uint64_t hash, bytes key, bytes head, Py_ssize_t body_hint,
                               Py_ssize_t limit, EntryMeta* meta)
    cdef uint64_t marker(self, uint64_t hash, bytes key, bytes names, uint32_t nvary) except? 0
    cdef int remove_key(self, uint64_t hash, bytes key) except -1
    # collapsing
    cdef int claim(self, uint64_t hash, int64_t timeout_ns, uint32_t* slot, uint32_t* token) except -1
    cdef bint claim_held(self, uint32_t slot, uint64_t hash, uint32_t token) noexcept
    cdef void release_claim(self, uint32_t slot, uint32_t token) noexcept


@cython.final
cdef class CacheWrite:
    cdef CacheStore store
    cdef bytes key
    cdef uint32_t idx
    cdef uint32_t seq
    cdef uint32_t cur                   # block being filled, and how much of it is
    cdef uint32_t cur_off
    cdef uint32_t tail                  # last block of the chain
    cdef uint32_t nblocks
    cdef uint64_t used                  # bytes written (key + head + body so far)
    cdef uint64_t cap                   # bytes the chain holds
    cdef uint64_t limit                 # most body bytes allowed
    cdef uint64_t body
    cdef uint64_t key_len
    cdef uint64_t head_len
    cdef uint32_t claim_slot
    cdef uint32_t claim_token
    cdef bint has_claim
    cdef public bint done               # committed or aborted
    cdef int _write(self, const char* p, uint64_t n) except -1
    cdef int append(self, const char* p, Py_ssize_t n) except -1
    cpdef bint commit(self) except -1
    cpdef abort(self)
