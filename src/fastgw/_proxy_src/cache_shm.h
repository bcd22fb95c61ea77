/* The response cache's shared-memory layout and its C primitives (cachestore.pyx holds the
 * algorithms; this header what Cython cannot express: the process-shared robust mutex, memory
 * fences, relaxed atomic loads, and the bounded copy out of a block chain).
 *
 * The mapping (created by the master before forking, `cache_size` bytes in all):
 *
 *   header | stat rows | index slots | entry records | next[] per block | claims | blocks
 *
 * - Blocks: FGC_BLOCK bytes each. An entry's bytes (key, rendered header lines, body) are a
 *   chain of blocks linked through next[]; free blocks are a list through the same array, plus a
 *   high-water mark (`fresh_block`) below which every block has been used once, so a new mapping
 *   is never written to before it is needed.
 * - Entry records: fixed 128-byte records; FREE, WRITING (owned by one writer process, never
 *   indexed), READY (indexed, immutable until freed).
 * - Index: open addressing, linear probing; a slot is one 64-bit word (hash tag << 32 | entry+1)
 *   so a lock-free reader loads it in one go.
 *
 * Safety (the argument in full is in docs/caching.md, "How the shared store stays safe"):
 * - Every change of the index, the lists and the entry states happens under one robust,
 *   process-shared mutex. A process that dies holding it makes the next locker get EOWNERDEAD,
 *   which rebuilds every derived structure from the entry records (cachestore.pyx: _recover).
 * - Readers take no lock. A READY entry never changes in place: it is written whole while
 *   WRITING, then published (state store-release, then the index slot). Freeing an entry first
 *   bumps its `seq` and only then lets its blocks be reused, so a reader that saw the same even
 *   `seq` before and after copying knows nothing it copied was overwritten (a seqlock whose
 *   writers are the block's next owners).
 */
#ifndef FASTGW_CACHE_SHM_H
#define FASTGW_CACHE_SHM_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define FGC_MAGIC 0x3145484341434746ULL /* "FGCACHE1" little-endian */
#define FGC_VERSION 1ULL
#define FGC_BLOCK 512u
#define FGC_NONE 0xffffffffu
#define FGC_STAT_ROWS 64u
#define FGC_STATS 8u

enum { FGC_FREE = 0, FGC_WRITING = 1, FGC_READY = 2 };

typedef struct {
    uint32_t seq;       /* +1 whenever the entry stops being READY (freed) */
    uint32_t state;     /* FGC_FREE / FGC_WRITING / FGC_READY */
    uint64_t hash;
    uint32_t first;     /* block chain */
    uint32_t last;
    uint32_t nblocks;
    uint32_t key_len;   /* bytes: key, then header lines, then body */
    uint32_t head_len;
    uint32_t body_len;
    uint32_t prev;      /* LRU list (READY) or writing list (WRITING); FGC_NONE ends */
    uint32_t next;
    int32_t pid;        /* the writer, while WRITING */
    uint32_t flags;
    uint32_t status;
    uint32_t nvary;     /* a Vary marker: how many names its header lines hold */
    int64_t stored_ns;  /* CLOCK_MONOTONIC when the response (or its 304) arrived */
    int64_t age_ns;     /* corrected initial age at stored_ns */
    int64_t lifetime_ns;
    int64_t swr_ns;     /* stale-while-revalidate window */
    int64_t sie_ns;     /* stale-if-error window */
    uint64_t epoch;     /* a Vary marker's epoch (its variants' keys carry it) */
    uint64_t used_ms;   /* last hit, stamped by readers without the lock */
    uint64_t lru_ms;    /* when it was last moved to the LRU head */
} fgc_entry;

typedef struct {
    uint64_t hash;      /* 0: free */
    uint32_t token;
    int32_t pid;
    int64_t deadline_ns;
    uint64_t pad;
} fgc_claim;

typedef struct {
    uint64_t magic;
    uint64_t version;
    uint64_t size;
    uint64_t seed;
    uint64_t nslots;
    uint64_t nentries;
    uint64_t nblocks;
    uint64_t nclaims;
    uint64_t off_stats;
    uint64_t off_slots;
    uint64_t off_entries;
    uint64_t off_next;
    uint64_t off_claims;
    uint64_t off_blocks;
    uint64_t reserved0[2];
    /* under the lock from here */
    uint32_t free_entry;
    uint32_t fresh_entry;
    uint32_t free_block;
    uint32_t fresh_block;
    uint32_t lru_head;
    uint32_t lru_tail;
    uint32_t writing_head;
    uint32_t pad0;
    uint64_t free_blocks;   /* on the free list (not counting those above fresh_block) */
    uint64_t free_entries;
    uint64_t ready;         /* READY entries */
    uint64_t writing;
    uint64_t ready_bytes;   /* key + header lines + body of READY entries */
    uint64_t epoch;
    uint64_t token;
    uint64_t evictions;
    uint64_t purged;
    uint64_t invalidated;
    uint64_t recoveries;
    uint64_t dead_writes;
    uint64_t claim_gen;     /* atomic: +1 at every claim release */
    uint64_t reserved1[7];
    pthread_mutex_t lock __attribute__((aligned(64)));
} fgc_header;

/* Per-process counters (a row per worker slot, one cache line each): no line bounces between
 * workers on a hit. Summed by the master. */
typedef struct {
    uint64_t v[FGC_STATS];
} fgc_stats;

static inline uint32_t fgc_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t fgc_load32_relaxed(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t fgc_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fgc_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void fgc_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void fgc_store64_relaxed(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void fgc_add64(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline void fgc_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void fgc_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

/* 0 when locked; 1 when locked after the previous owner died (the caller must repair the state,
 * then call fgc_consistent); 2 (trylock only) when someone else holds it; < 0 an error. */
static inline int fgc_mutex_init(pthread_mutex_t *m) {
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r) return -r;
    if ((r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) == 0)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (r == 0) r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -r;
}

static inline int fgc_lock(pthread_mutex_t *m) {
    int r = pthread_mutex_lock(m);
    if (r == 0) return 0;
    if (r == EOWNERDEAD) return 1;
    return -r;
}

static inline int fgc_trylock(pthread_mutex_t *m) {
    int r = pthread_mutex_trylock(m);
    if (r == 0) return 0;
    if (r == EOWNERDEAD) return 1;
    if (r == EBUSY) return 2;
    return -r;
}

static inline int fgc_consistent(pthread_mutex_t *m) { return -pthread_mutex_consistent(m); }
static inline void fgc_unlock(pthread_mutex_t *m) { pthread_mutex_unlock(m); }

/* Copies `len` bytes from offset `off` of the chain that starts at block `first` and has
 * `nblocks` blocks. Safe to call on a chain that is being freed and reused: every block index is
 * checked and at most `nblocks` links are followed, so garbage is copied at worst (the caller's
 * seq check then discards it), never outside the mapping. Runs of consecutive blocks (the
 * common case: blocks are handed out in order) are copied with one memcpy. 0, or -1 for a
 * broken chain. */
static inline int fgc_copy(const uint32_t *next, const char *blocks, uint64_t total_blocks, uint32_t first,
                           uint32_t nblocks, uint64_t off, char *dst, uint64_t len) {
    uint32_t b = first, hops = 1;
    if (b >= total_blocks || nblocks == 0) return -1;
    while (off >= FGC_BLOCK) {
        if (hops >= nblocks) return -1;
        b = fgc_load32_relaxed(&next[b]);
        if (b >= total_blocks) return -1;
        hops++;
        off -= FGC_BLOCK;
    }
    while (len) {
        uint32_t run_start = b;
        uint64_t run = FGC_BLOCK - off;
        while (run < len) {
            uint32_t n;
            if (hops >= nblocks) return -1;
            n = fgc_load32_relaxed(&next[b]);
            if (n >= total_blocks) return -1;
            hops++;
            if (n != b + 1) {
                memcpy(dst, blocks + (uint64_t)run_start * FGC_BLOCK + off, run);
                dst += run;
                len -= run;
                off = 0;
                b = n;
                run_start = b;
                run = FGC_BLOCK;
                continue;
            }
            b = n;
            run += FGC_BLOCK;
        }
        if (run > len) run = len;
        memcpy(dst, blocks + (uint64_t)run_start * FGC_BLOCK + off, run);
        len -= run;
        dst += run;
    }
    return 0;
}

/* memcmp of `len` bytes at offset 0 of a chain against `key`: 0 equal, else not (or broken). */
static inline int fgc_compare(const uint32_t *next, const char *blocks, uint64_t total_blocks, uint32_t first,
                              uint32_t nblocks, const char *key, uint64_t len) {
    uint32_t b = first, hops = 1;
    if (b >= total_blocks || nblocks == 0) return -1;
    while (len) {
        uint64_t n = len < FGC_BLOCK ? len : FGC_BLOCK;
        if (memcmp(blocks + (uint64_t)b * FGC_BLOCK, key, n) != 0) return 1;
        key += n;
        len -= n;
        if (len) {
            if (hops >= nblocks) return -1;
            b = fgc_load32_relaxed(&next[b]);
            if (b >= total_blocks) return -1;
            hops++;
        }
    }
    return 0;
}

#endif
