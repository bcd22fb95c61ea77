/* Shared-memory primitives for the rate-limit table (bucket.pyx).
 *
 * Why a header: the 16-byte compare-and-swap, the monotonic clock and the seeded hash must be
 * plain inlinable C with no Python in sight, and Cython cannot express inline asm.
 *
 * Why a 16-byte CAS: a slot is {key, tat}. Updating only the tat word would let a worker that read
 * the slot as key A write A's decision into the slot after another worker handed it to key B
 * (reclaim or eviction), so B would inherit A's debt. Swapping the pair at once makes every
 * decision, claim and eviction one atomic step that either lands on the exact state it was
 * computed from or fails and is retried; a worker killed at any instant leaves no lock and no
 * half-written slot.
 */
#ifndef FASTGW_BUCKET_ATOMIC_H
#define FASTGW_BUCKET_ATOMIC_H

#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint64_t key; /* 0 = never used; keys are remapped so that no real key is 0 */
    uint64_t tat; /* GCRA theoretical arrival time, CLOCK_MONOTONIC ns; <= now means full */
} __attribute__((aligned(16))) fg_slot;

/* 64 bytes so that the slots after it keep the buffer's 16-byte (in practice page) alignment. */
typedef struct {
    uint64_t magic;
    uint64_t version;
    uint64_t capacity;
    uint64_t seed;
    uint64_t evictions;
    uint64_t reserved[3];
} fg_table_header;

#define FG_TABLE_MAGIC 0x31544b4257474600ULL /* "\0FGWBKT1" little-endian */
#define FG_TABLE_VERSION 2ULL /* 2: 8-slot buckets, 4 candidate buckets per key (1: 8-slot windows) */

/* Slots per bucket: 128 bytes, two cache lines (the slots start 64 bytes into a page-aligned
 * mapping, so every bucket is cache-line aligned). */
#define FG_BUCKET_SLOTS 8

static inline uint64_t fg_load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static inline void fg_store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static inline void fg_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

/* Where `key` is in the bucket starting at `b`, or -1. Unrolled: one load and one compare per
 * slot, which is all a lookup does in the buckets it passes. Relaxed loads: what a caller then
 * does with the slot is a compare-and-swap of the whole pair, which checks what was read. */
static inline int fg_bucket_find(const fg_slot *b, uint64_t key) {
#define FG_FIND_AT(i) \
    if (__atomic_load_n(&b[i].key, __ATOMIC_RELAXED) == key) return i;
    FG_FIND_AT(0) FG_FIND_AT(1) FG_FIND_AT(2) FG_FIND_AT(3)
    FG_FIND_AT(4) FG_FIND_AT(5) FG_FIND_AT(6) FG_FIND_AT(7)
#undef FG_FIND_AT
    return -1;
}

/* If *s == {*key, *tat}, store {nkey, ntat} and return 1; else load the current pair into
 * *key, *tat and return 0. Full barrier either way. */
static inline int fg_cas_slot(fg_slot *s, uint64_t *key, uint64_t *tat, uint64_t nkey,
                              uint64_t ntat) {
#if defined(__x86_64__)
    /* Inline asm rather than __atomic on __int128: GCC routes the latter through libatomic
     * (not linked into the extension) unless built with -mcx16. */
    unsigned char ok;
    __asm__ __volatile__("lock cmpxchg16b %1\n\tsetz %0"
                         : "=q"(ok), "+m"(*s), "+a"(*key), "+d"(*tat)
                         : "b"(nkey), "c"(ntat)
                         : "cc", "memory");
    return ok;
#elif defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
    fg_slot want = {*key, *tat}, repl = {nkey, ntat}, seen;
    unsigned __int128 w, r, old;
    memcpy(&w, &want, 16);
    memcpy(&r, &repl, 16);
    old = __sync_val_compare_and_swap((unsigned __int128 *)s, w, r);
    if (old == w) return 1;
    memcpy(&seen, &old, 16);
    *key = seen.key;
    *tat = seen.tat;
    return 0;
#else
#error "fastgw: the rate-limit table needs a 16-byte compare-and-swap on this architecture"
#endif
}

/* CLOCK_MONOTONIC is one clock for the whole host, so tats written by one worker mean the same
 * instant to every other worker. */
static inline uint64_t fg_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Seeded 64-bit hash in the style of wyhash: each 8-byte word is folded in with a 64x64->128
 * multiply whose halves are xor-ed, which mixes every input bit into every output bit. The seed
 * is secret (random per table), so clients cannot precompute keys that collide in the table.
 * Not a MAC. Mirrored bit for bit by fastgw._pycore.bucket.hash64. */
#define FG_P0 0xa0761d6478bd642fULL
#define FG_P1 0xe7037ed1a0b428dbULL
#define FG_P2 0x8ebc6af09c88c6e3ULL
#define FG_P3 0x589965cc75374cc3ULL

static inline uint64_t fg_mum(uint64_t a, uint64_t b) {
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* The j-th (0..3) candidate bucket of a table key, itself a seeded hash: its low bits, then three
 * remixes of all its bits, so that keys sharing one bucket do not share the others. */
static inline uint64_t fg_bucket_of(uint64_t key, int j, uint64_t bucket_mask) {
    static const uint64_t remix[4] = {0, FG_P1, FG_P2, FG_P3};
    return (j ? fg_mum(key, remix[j]) : key) & bucket_mask;
}

static inline uint64_t fg_read_le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    size_t i;
    for (i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline uint64_t fg_hash(const unsigned char *p, size_t len, uint64_t seed) {
    uint64_t h = seed ^ FG_P0;
    size_t left = len;
    while (left >= 8) {
        h = fg_mum(h ^ fg_read_le(p, 8), FG_P1);
        p += 8;
        left -= 8;
    }
    h = fg_mum(h ^ fg_read_le(p, left), FG_P2 ^ (uint64_t)len);
    return fg_mum(h ^ FG_P3, FG_P1 ^ (h >> 29));
}

#endif
