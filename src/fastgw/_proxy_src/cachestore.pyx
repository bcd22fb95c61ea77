# The response cache's shared store (see cachestore.pxd for the call order and cache_shm.h for
# the layout and the primitives).
#
# Why one lock for writers and none for readers: a hit must cost no more than a few loads and
# the copy of its bytes, and must never wait for a writer; writers (a store, an eviction, a
# purge) are rarer and their critical sections are a few list and index updates (the bytes of a
# response are copied outside the lock, into blocks no one else owns yet). nginx takes its cache
# zone's mutex on every lookup; here a hit only try-locks, at most every STORE_BUMP_MS per entry,
# to move it up the LRU list.
#
# Why recovery drops every stored response: a process that dies holding the lock may have left
# any list or index half-updated, and rebuilding them from records that may themselves be
# half-written would need a proof for every intermediate state. Dropping every READY entry (each
# with a bumped seq, so no reader keeps a copy) and rebuilding the free lists around the chains of
# writers that are still alive is short, obviously right, and costs only misses after an event
# that needs a process to die inside a critical section of microseconds.

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport ESRCH, errno
from libc.string cimport memcmp, memset
from posix.signal cimport kill
from posix.unistd cimport getpid

import os as _cs_os

cdef uint64_t _CS_TAG = 0xffffffff00000000ULL
cdef enum:
    _CS_CLAIMS = 1024               # collapse claims: concurrent fills, per host
    _CS_CLAIM_WINDOW = 8            # slots a key's claim may take
    _CS_ENTRY_BYTES = 2048          # cache_size per entry record: the index holds one per 2 KiB
    _CS_MIN_ENTRIES = 16


cdef inline uint64_t _cs_align(uint64_t v, uint64_t a) noexcept:
    return (v + a - 1) & ~(a - 1)


cdef inline uint64_t _cs_pow2(uint64_t n) noexcept:
    cdef uint64_t p = 1
    while p < n:
        p <<= 1
    return p


cdef inline uint32_t _cs_blocks_for(uint64_t n) noexcept:
    return <uint32_t>((n + FGC_BLOCK - 1) // FGC_BLOCK) if n else 1


def cache_layout(uint64_t size):
    """How a mapping of `size` bytes is divided: blocks, entry records, index slots, claims, and
    each part's offset. Everything, metadata included, fits in `size`."""
    if sizeof(fgc_entry) != 128 or sizeof(fgc_claim) != 32:
        raise RuntimeError("cache_shm.h: unexpected record sizes")
    cdef uint64_t hdr = _cs_align(sizeof(fgc_header), 64)
    cdef uint64_t stats = FGC_STAT_ROWS * 64
    cdef uint64_t fixed = hdr + stats + _CS_CLAIMS * 32 + 4096 * 2
    if size < fixed + 64 * FGC_BLOCK:
        raise ValueError(f"a cache of {size} bytes is too small")
    cdef uint64_t b = (size - fixed) // (FGC_BLOCK + 4 + 128 * FGC_BLOCK // _CS_ENTRY_BYTES + 16)
    cdef uint64_t e, s, off_slots, off_entries, off_next, off_claims, off_blocks
    while b > 16:
        e = max(<uint64_t>_CS_MIN_ENTRIES, b * FGC_BLOCK // _CS_ENTRY_BYTES)
        s = _cs_pow2(2 * e)
        off_slots = hdr + stats
        off_entries = _cs_align(off_slots + s * 8, 64)
        off_next = _cs_align(off_entries + e * 128, 64)
        off_claims = _cs_align(off_next + b * 4, 64)
        off_blocks = _cs_align(off_claims + _CS_CLAIMS * 32, 4096)
        if off_blocks + b * FGC_BLOCK <= size and b < FGC_NONE and e < FGC_NONE:
            return {"nblocks": b, "nentries": e, "nslots": s, "nclaims": <uint64_t>_CS_CLAIMS,
                    "off_stats": hdr, "off_slots": off_slots, "off_entries": off_entries, "off_next": off_next,
                    "off_claims": off_claims, "off_blocks": off_blocks, "block_size": FGC_BLOCK}
        b -= max(<uint64_t>1, b // 64)
    raise ValueError(f"a cache of {size} bytes is too small")


cdef inline bint _cs_alive(int pid) noexcept:
    if pid <= 0:
        return False
    if kill(pid, 0) == 0:
        return True
    return errno != ESRCH


cdef void _cs_write_chain(CacheStore store, uint32_t first, bytes data) noexcept:
    """Writes `data` into a chain this process owns (starting at `first`)."""
    cdef const char* p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t left = PyBytes_GET_SIZE(data), n
    cdef uint32_t b = first
    while left > 0:
        n = left if left < FGC_BLOCK else FGC_BLOCK
        memcpy(store.blocks + <uint64_t>b * FGC_BLOCK, p, n)
        p += n
        left -= n
        if left:
            b = store.nxt[b]


cdef class CacheStore:
    """The host's response cache in a shared mapping (mmap or any writable buffer of the size
    given to `cache_layout`). `init=True` formats it (the master, once, before forking); every
    other process attaches with `init=False`. `row` is the stat row this process counts into
    (a worker's slot; the master uses the last), `clock` (tests) returns CLOCK_MONOTONIC ns."""

    def __init__(self, buffer, bint init=False, int row=0, clock=None):
        PyObject_GetBuffer(buffer, &self._view, PyBUF_WRITABLE)
        self._has_view = True
        cdef uint64_t size = <uint64_t>self._view.len
        cdef char* base = <char*>self._view.buf
        cdef fgc_header* h = <fgc_header*>base
        if (<uintptr_t>base) % 4096:
            raise ValueError("the cache buffer must be page-aligned (use an mmap)")
        if init:
            lay = cache_layout(size)
            memset(base, 0, lay["off_slots"])
            memset(base + <uint64_t>lay["off_slots"], 0, <uint64_t>lay["nslots"] * 8)
            memset(base + <uint64_t>lay["off_claims"], 0, <uint64_t>lay["nclaims"] * 32)
            h.version = FGC_VERSION
            h.size = size
            h.seed = int.from_bytes(_cs_os.urandom(8), "little")
            h.nslots = lay["nslots"]
            h.nentries = lay["nentries"]
            h.nblocks = lay["nblocks"]
            h.nclaims = lay["nclaims"]
            h.off_stats = lay["off_stats"]
            h.off_slots = lay["off_slots"]
            h.off_entries = lay["off_entries"]
            h.off_next = lay["off_next"]
            h.off_claims = lay["off_claims"]
            h.off_blocks = lay["off_blocks"]
            h.free_entry = FGC_NONE
            h.free_block = FGC_NONE
            h.lru_head = FGC_NONE
            h.lru_tail = FGC_NONE
            h.writing_head = FGC_NONE
            r = fgc_mutex_init(&h.lock)
            if r:
                raise OSError(-r, "cannot create the cache's process-shared mutex")
            fgc_store64(&h.magic, FGC_MAGIC)
        elif fgc_load64(&h.magic) != FGC_MAGIC or h.version != FGC_VERSION or h.size != size:
            raise ValueError("the buffer does not hold a formatted cache of this size")
        self.h = h
        self.rows = <fgc_stats*>(base + h.off_stats)
        self.row = &self.rows[row % FGC_STAT_ROWS]
        self.slots = <uint64_t*>(base + h.off_slots)
        self.entries = <fgc_entry*>(base + h.off_entries)
        self.nxt = <uint32_t*>(base + h.off_next)
        self.claims = <fgc_claim*>(base + h.off_claims)
        self.blocks = base + h.off_blocks
        self.mask = h.nslots - 1
        self.claim_mask = h.nclaims - 1
        self.seed = h.seed
        self.pid = getpid()
        self._clock = clock

    def __dealloc__(self):
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False

    @property
    def size(self):
        return self.h.size

    cdef int64_t now_ns(self) except? -1:
        if self._clock is None:
            return <int64_t>fg_now_ns()
        return <int64_t>self._clock()

    cdef void count(self, int stat) noexcept:
        fgc_add64(&self.row.v[stat], 1)

    cdef uint64_t hash_key(self, const char* key, Py_ssize_t n) noexcept:
        cdef uint64_t hv = fg_hash(<const unsigned char*>key, n, self.seed)
        return hv if hv else 1

    # ---- reading, lock-free -------------------------------------------------------------------

    cdef bint find(self, uint64_t hash, const char* key, Py_ssize_t n, EntrySnap* out) noexcept:
        """The READY entry of `key` (with `hash`), snapshotted into `out`; False when there is none
        (or it changed while being looked at: a miss is always a safe answer)."""
        cdef uint64_t pos = hash & self.mask, v, probes = 0, tag = hash & _CS_TAG
        cdef uint32_t idx, seq
        cdef fgc_entry* e
        cdef uint64_t nentries = self.h.nentries
        while probes <= self.mask:
            v = fgc_load64(&self.slots[pos])
            if v == 0:
                return False
            if (v & _CS_TAG) == tag:
                idx = <uint32_t>(v & 0xffffffffULL) - 1
                if idx < nentries:
                    e = &self.entries[idx]
                    seq = fgc_load32(&e.seq)
                    if fgc_load32(&e.state) == FGC_READY and e.hash == hash and e.key_len == <uint32_t>n:
                        out.idx = idx
                        out.seq = seq
                        out.first = e.first
                        out.nblocks = e.nblocks
                        out.key_len = e.key_len
                        out.head_len = e.head_len
                        out.body_len = e.body_len
                        out.flags = e.flags
                        out.status = e.status
                        out.nvary = e.nvary
                        out.stored_ns = e.stored_ns
                        out.age_ns = e.age_ns
                        out.lifetime_ns = e.lifetime_ns
                        out.swr_ns = e.swr_ns
                        out.sie_ns = e.sie_ns
                        out.epoch = e.epoch
                        if (<uint64_t>out.key_len + out.head_len + out.body_len
                                <= <uint64_t>out.nblocks * FGC_BLOCK <= self.h.nblocks * FGC_BLOCK) \
                                and fgc_compare(self.nxt, self.blocks, self.h.nblocks, out.first, out.nblocks,
                                                key, n) == 0 \
                                and self.valid(out):
                            return True
            pos = (pos + 1) & self.mask
            probes += 1
        return False

    cdef int copy_head(self, EntrySnap* s, char* dst) noexcept:
        return fgc_copy(self.nxt, self.blocks, self.h.nblocks, s.first, s.nblocks, s.key_len, dst, s.head_len)

    cdef int copy_body(self, EntrySnap* s, char* dst) noexcept:
        return fgc_copy(self.nxt, self.blocks, self.h.nblocks, s.first, s.nblocks,
                        <uint64_t>s.key_len + s.head_len, dst, s.body_len)

    cdef bint valid(self, EntrySnap* s) noexcept:
        """Whether nothing read of the entry since `find` can have been overwritten."""
        fgc_fence_acquire()
        return fgc_load32(&self.entries[s.idx].seq) == s.seq

    cdef bytes head_bytes(self, EntrySnap* s):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, s.head_len)
        if self.copy_head(s, PyBytes_AS_STRING(out)) < 0:
            return None
        return out

    cdef bytes body_bytes(self, EntrySnap* s):
        cdef bytes out = PyBytes_FromStringAndSize(NULL, s.body_len)
        if self.copy_body(s, PyBytes_AS_STRING(out)) < 0:
            return None
        return out

    cdef int touch(self, EntrySnap* s, int64_t now) except -1:
        """Records a hit: stamps the entry, and moves it to the LRU head when it has not been
        moved for STORE_BUMP_MS and the lock is free (a hit never waits for it)."""
        cdef fgc_entry* e = &self.entries[s.idx]
        cdef uint64_t ms = <uint64_t>(now // 1000000)
        fgc_store64_relaxed(&e.used_ms, ms)
        if ms < e.lru_ms + STORE_BUMP_MS:
            return 0
        cdef int r = fgc_trylock(&self.h.lock)
        if r == 2 or r < 0:
            return 0
        if r == 1:
            self._recover()
            fgc_consistent(&self.h.lock)
        elif e.seq == s.seq and e.state == FGC_READY:
            self._lru_unlink(s.idx)
            self._lru_push(s.idx, ms)
        fgc_unlock(&self.h.lock)
        return 0

    # ---- the lock and recovery ----------------------------------------------------------------

    cdef int _lock(self) except -1:
        cdef int r = fgc_lock(&self.h.lock)
        if r == 0:
            return 0
        if r == 1:
            self._recover()
            fgc_consistent(&self.h.lock)
            return 0
        raise OSError(-r, "cannot take the cache lock")

    cdef void _unlock(self) noexcept:
        fgc_unlock(&self.h.lock)

    cdef void _recover(self) noexcept:
        """The previous owner of the lock died holding it: every READY entry is dropped (its seq
        bumped first), live writers keep their chains, and the lists and the index are rebuilt
        around them. Idempotent: a recovery cut short by another death is simply redone."""
        cdef fgc_header* h = self.h
        cdef uint64_t nblocks = h.nblocks, i
        cdef uint32_t idx, b, hops
        cdef fgc_entry* e
        cdef unsigned char* owned = <unsigned char*>PyMem_Malloc(nblocks // 8 + 1)
        if owned != NULL:
            memset(owned, 0, nblocks // 8 + 1)
        h.lru_head = FGC_NONE
        h.lru_tail = FGC_NONE
        h.writing_head = FGC_NONE
        h.free_entry = FGC_NONE
        h.free_entries = 0
        h.ready = 0
        h.ready_bytes = 0
        h.writing = 0
        for i in range(h.nslots):
            fgc_store64(&self.slots[i], 0)
        for i in range(h.nclaims):
            self.claims[i].hash = 0
        fgc_add64(&h.claim_gen, 1)
        for idx in range(h.fresh_entry):
            e = &self.entries[idx]
            if e.state == FGC_WRITING and _cs_alive(e.pid) and e.nblocks:
                # a live writer (this process or another): its chain is its own, touched by no
                # other process, and it goes on writing into it after we return
                b = e.first
                hops = 0
                while b < nblocks and hops < e.nblocks:
                    if owned != NULL:
                        owned[b >> 3] |= <unsigned char>(1 << (b & 7))
                    hops += 1
                    if hops < e.nblocks:
                        b = self.nxt[b]
                e.prev = FGC_NONE
                e.next = h.writing_head
                if h.writing_head != FGC_NONE:
                    self.entries[h.writing_head].prev = idx
                h.writing_head = idx
                h.writing += 1
                continue
            if e.state == FGC_READY:
                fgc_store32(&e.seq, e.seq + 1)
            elif e.state == FGC_WRITING:
                h.dead_writes += 1
            fgc_fence_release()
            fgc_store32(&e.state, FGC_FREE)
            e.nblocks = 0
            e.first = FGC_NONE
            e.last = FGC_NONE
            e.next = h.free_entry
            h.free_entry = idx
            h.free_entries += 1
        h.free_block = FGC_NONE
        h.free_blocks = 0
        if owned != NULL:
            i = h.fresh_block
            while i > 0:
                i -= 1
                if not (owned[i >> 3] & (1 << (i & 7))):
                    self.nxt[i] = h.free_block
                    h.free_block = <uint32_t>i
                    h.free_blocks += 1
            PyMem_Free(owned)
        # (without the scratch bitmap the used blocks stay lost until the next recovery: safe)
        h.recoveries += 1

    # ---- allocation (under the lock) ----------------------------------------------------------

    cdef uint32_t _alloc_entry(self) noexcept:
        cdef fgc_header* h = self.h
        cdef uint32_t idx
        while True:
            if h.free_entry != FGC_NONE:
                idx = h.free_entry
                h.free_entry = self.entries[idx].next
                h.free_entries -= 1
                return idx
            if h.fresh_entry < h.nentries:
                idx = h.fresh_entry
                h.fresh_entry += 1
                return idx
            if not self._evict_one() and not self._reap_dead_writers_locked():
                return FGC_NONE

    cdef int _alloc_blocks(self, uint32_t n, uint32_t* first, uint32_t* last) noexcept:
        cdef fgc_header* h = self.h
        cdef uint32_t b, prev = FGC_NONE, i
        if n > h.nblocks:
            return -1
        while h.free_blocks + (h.nblocks - h.fresh_block) < n:
            if not self._evict_one() and not self._reap_dead_writers_locked():
                return -1
        first[0] = FGC_NONE
        for i in range(n):
            if h.free_block != FGC_NONE:
                b = h.free_block
                h.free_block = self.nxt[b]
                h.free_blocks -= 1
            else:
                b = h.fresh_block
                h.fresh_block += 1
            if prev == FGC_NONE:
                first[0] = b
            else:
                self.nxt[prev] = b
            prev = b
        self.nxt[prev] = FGC_NONE
        last[0] = prev
        return 0

    cdef bint _evict_one(self) noexcept:
        """Frees the least recently used READY entry; one used since it was last moved gets a
        second chance at the head instead. False when nothing is left to evict."""
        cdef fgc_header* h = self.h
        cdef uint32_t idx
        cdef fgc_entry* e
        cdef uint64_t chances = h.ready + 1
        while h.lru_tail != FGC_NONE:
            idx = h.lru_tail
            e = &self.entries[idx]
            if e.used_ms > e.lru_ms and chances:
                chances -= 1
                self._lru_unlink(idx)
                self._lru_push(idx, e.used_ms)
                continue
            self._free_entry(idx)
            h.evictions += 1
            return True
        return False

    cdef void _free_entry(self, uint32_t idx) noexcept:
        cdef fgc_header* h = self.h
        cdef fgc_entry* e = &self.entries[idx]
        cdef int64_t pos
        if e.state == FGC_READY:
            pos = self._slot_of(idx)
            if pos >= 0:
                self._slot_delete(<uint64_t>pos)
            self._lru_unlink(idx)
            h.ready -= 1
            h.ready_bytes -= <uint64_t>e.key_len + e.head_len + e.body_len
            fgc_store32(&e.seq, e.seq + 1)
        elif e.state == FGC_WRITING:
            self._writing_unlink(idx)
            h.writing -= 1
        else:
            return
        # readers saw the new seq before any block of the entry gets a new owner
        fgc_fence_release()
        fgc_store32(&e.state, FGC_FREE)
        if e.nblocks:
            self.nxt[e.last] = h.free_block
            h.free_block = e.first
            h.free_blocks += e.nblocks
        e.nblocks = 0
        e.first = FGC_NONE
        e.last = FGC_NONE
        e.next = h.free_entry
        h.free_entry = idx
        h.free_entries += 1

    cdef void _lru_unlink(self, uint32_t idx) noexcept:
        cdef fgc_entry* e = &self.entries[idx]
        if e.prev != FGC_NONE:
            self.entries[e.prev].next = e.next
        else:
            self.h.lru_head = e.next
        if e.next != FGC_NONE:
            self.entries[e.next].prev = e.prev
        else:
            self.h.lru_tail = e.prev
        e.prev = FGC_NONE
        e.next = FGC_NONE

    cdef void _lru_push(self, uint32_t idx, uint64_t now_ms) noexcept:
        cdef fgc_entry* e = &self.entries[idx]
        e.lru_ms = now_ms
        e.prev = FGC_NONE
        e.next = self.h.lru_head
        if self.h.lru_head != FGC_NONE:
            self.entries[self.h.lru_head].prev = idx
        else:
            self.h.lru_tail = idx
        self.h.lru_head = idx

    cdef void _writing_unlink(self, uint32_t idx) noexcept:
        cdef fgc_entry* e = &self.entries[idx]
        if e.prev != FGC_NONE:
            self.entries[e.prev].next = e.next
        else:
            self.h.writing_head = e.next
        if e.next != FGC_NONE:
            self.entries[e.next].prev = e.prev
        e.prev = FGC_NONE
        e.next = FGC_NONE

    # ---- the index (under the lock) -----------------------------------------------------------

    cdef int64_t _slot_of(self, uint32_t idx) noexcept:
        cdef uint64_t pos = self.entries[idx].hash & self.mask, v, probes = 0
        while probes <= self.mask:
            v = self.slots[pos]
            if v == 0:
                return -1
            if (v & 0xffffffffULL) == <uint64_t>idx + 1:
                return <int64_t>pos
            pos = (pos + 1) & self.mask
            probes += 1
        return -1

    cdef void _slot_delete(self, uint64_t pos) noexcept:
        """Linear-probing deletion by backward shift (no tombstones). A reader probing at the same
        time may miss an entry that is being moved: a miss, never a wrong entry."""
        cdef uint64_t i = pos, j = pos, home, v
        while True:
            j = (j + 1) & self.mask
            v = self.slots[j]
            if v == 0:
                break
            home = self.entries[<uint32_t>(v & 0xffffffffULL) - 1].hash & self.mask
            if (i <= j and i < home <= j) or (i > j and (home > i or home <= j)):
                continue
            fgc_store64(&self.slots[i], v)
            i = j
        fgc_store64(&self.slots[i], 0)

    cdef void _slot_insert(self, uint32_t idx) noexcept:
        cdef uint64_t hv = self.entries[idx].hash
        cdef uint64_t pos = hv & self.mask
        while self.slots[pos] != 0:
            pos = (pos + 1) & self.mask
        fgc_store64(&self.slots[pos], (hv & _CS_TAG) | (<uint64_t>idx + 1))

    cdef int _key_equal_locked(self, uint32_t idx, const char* key, Py_ssize_t n) noexcept:
        cdef fgc_entry* e = &self.entries[idx]
        return e.key_len == <uint32_t>n and fgc_compare(self.nxt, self.blocks, self.h.nblocks, e.first, e.nblocks,
                                                        key, n) == 0

    cdef int _remove_key_locked(self, uint64_t hash, const char* key, Py_ssize_t n, uint32_t keep) noexcept:
        """Frees every READY entry of `key` but `keep`; the number freed."""
        cdef uint64_t pos, v, probes
        cdef uint32_t idx
        cdef int removed = 0
        cdef bint again = True
        while again:
            again = False
            pos = hash & self.mask
            probes = 0
            while probes <= self.mask:
                v = self.slots[pos]
                if v == 0:
                    break
                idx = <uint32_t>(v & 0xffffffffULL) - 1
                if idx != keep and (v & _CS_TAG) == (hash & _CS_TAG) and self.entries[idx].hash == hash \
                        and self._key_equal_locked(idx, key, n):
                    self._free_entry(idx)
                    removed += 1
                    again = True        # the deletion shifted the slots: probe again
                    break
                pos = (pos + 1) & self.mask
                probes += 1
        return removed

    cdef int _reap_dead_writers_locked(self) noexcept:
        """Frees WRITING entries whose writer process is gone; the number freed."""
        cdef uint32_t idx = self.h.writing_head, nxt_idx
        cdef int freed = 0
        while idx != FGC_NONE:
            nxt_idx = self.entries[idx].next
            if not _cs_alive(self.entries[idx].pid):
                self._free_entry(idx)
                self.h.dead_writes += 1
                freed += 1
            idx = nxt_idx
        return freed

    # ---- writing ------------------------------------------------------------------------------

    cdef CacheWrite begin_meta(self, uint64_t hash, bytes key, bytes head, Py_ssize_t body_hint,
                               Py_ssize_t limit, EntryMeta* meta):
        """Starts storing a response: an entry with room for the key, the header lines and (when
        `body_hint` >= 0) that many body bytes. None when it cannot get room."""
        cdef uint64_t need = <uint64_t>PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(head)
        if 0 <= body_hint <= limit:
            need += <uint64_t>body_hint
        cdef uint32_t n = _cs_blocks_for(need), first, last, idx
        cdef fgc_entry* e
        if n > self.h.nblocks // 2:
            return None
        self._lock()
        idx = self._alloc_entry()
        if idx == FGC_NONE:
            self._unlock()
            return None
        if self._alloc_blocks(n, &first, &last) < 0:
            e = &self.entries[idx]
            e.next = self.h.free_entry
            self.h.free_entry = idx
            self.h.free_entries += 1
            self._unlock()
            return None
        e = &self.entries[idx]
        e.hash = hash
        e.first = first
        e.last = last
        e.nblocks = n
        e.key_len = <uint32_t>PyBytes_GET_SIZE(key)
        e.head_len = <uint32_t>PyBytes_GET_SIZE(head)
        e.body_len = 0
        e.pid = self.pid
        e.flags = meta.flags
        e.status = meta.status
        e.nvary = meta.nvary
        e.stored_ns = meta.stored_ns
        e.age_ns = meta.age_ns
        e.lifetime_ns = meta.lifetime_ns
        e.swr_ns = meta.swr_ns
        e.sie_ns = meta.sie_ns
        e.epoch = meta.epoch
        e.used_ms = 0
        e.prev = FGC_NONE
        e.next = self.h.writing_head
        if self.h.writing_head != FGC_NONE:
            self.entries[self.h.writing_head].prev = idx
        self.h.writing_head = idx
        self.h.writing += 1
        fgc_store32(&e.state, FGC_WRITING)
        self._unlock()
        fgc_fence_release()
        cdef CacheWrite w = CacheWrite.__new__(CacheWrite)
        w.store = self
        w.key = key
        w.idx = idx
        w.seq = e.seq
        w.cur = first
        w.cur_off = 0
        w.tail = last
        w.nblocks = n
        w.cap = <uint64_t>n * FGC_BLOCK
        w.limit = <uint64_t>limit if limit >= 0 else 0
        w.key_len = e.key_len
        w.head_len = e.head_len
        w._write(PyBytes_AS_STRING(key), w.key_len)
        w._write(PyBytes_AS_STRING(head), w.head_len)
        return w

    cdef uint64_t marker(self, uint64_t hash, bytes key, bytes names, uint32_t nvary) except? 0:
        """The epoch of the Vary marker stored under `key` for these `names` (the header lines a
        marker holds), creating or replacing it; 0 when there is no room."""
        cdef uint32_t idx, first, last
        cdef uint64_t pos, v, probes = 0, epoch
        cdef fgc_entry* e
        cdef Py_ssize_t kn = PyBytes_GET_SIZE(key), nn = PyBytes_GET_SIZE(names)
        cdef bytes blob = key + names
        self._lock()
        try:
            pos = hash & self.mask
            while probes <= self.mask:
                v = self.slots[pos]
                if v == 0:
                    break
                idx = <uint32_t>(v & 0xffffffffULL) - 1
                e = &self.entries[idx]
                if e.hash == hash and e.flags & EF_MARKER and e.head_len == <uint32_t>nn \
                        and self._key_equal_locked(idx, PyBytes_AS_STRING(key), kn):
                    cur = PyBytes_FromStringAndSize(NULL, kn + nn)
                    fgc_copy(self.nxt, self.blocks, self.h.nblocks, e.first, e.nblocks, 0, PyBytes_AS_STRING(cur),
                             kn + nn)
                    if cur == blob:
                        return e.epoch
                pos = (pos + 1) & self.mask
                probes += 1
            idx = self._alloc_entry()
            if idx == FGC_NONE:
                return 0
            if self._alloc_blocks(_cs_blocks_for(kn + nn), &first, &last) < 0:
                e = &self.entries[idx]
                e.next = self.h.free_entry
                self.h.free_entry = idx
                self.h.free_entries += 1
                return 0
            fgc_fence_release()
            _cs_write_chain(self, first, blob)
            self.h.epoch += 1
            epoch = self.h.epoch
            e = &self.entries[idx]
            e.hash = hash
            e.first = first
            e.last = last
            e.nblocks = _cs_blocks_for(kn + nn)
            e.key_len = <uint32_t>kn
            e.head_len = <uint32_t>nn
            e.body_len = 0
            e.flags = EF_MARKER
            e.status = 0
            e.nvary = nvary
            e.stored_ns = self.now_ns()
            e.age_ns = 0
            e.lifetime_ns = 0
            e.swr_ns = 0
            e.sie_ns = 0
            e.epoch = epoch
            e.used_ms = 0
            self._remove_key_locked(hash, PyBytes_AS_STRING(key), kn, idx)
            fgc_store32(&e.state, FGC_READY)
            self._slot_insert(idx)
            self._lru_push(idx, <uint64_t>(e.stored_ns // 1000000))
            self.h.ready += 1
            self.h.ready_bytes += <uint64_t>kn + nn
            return epoch
        finally:
            self._unlock()

    cdef int remove_key(self, uint64_t hash, bytes key) except -1:
        """Invalidation: frees the entry of `key` (a response or a Vary marker, whose variants
        then cannot be found again); the number freed."""
        self._lock()
        cdef int n = self._remove_key_locked(hash, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), FGC_NONE)
        self.h.invalidated += n
        self._unlock()
        return n

    # ---- collapsing ---------------------------------------------------------------------------

    cdef int claim(self, uint64_t hash, int64_t timeout_ns, uint32_t* slot, uint32_t* token) except -1:
        """Claims the fetch of `hash` for `timeout_ns`: CLAIM_OWNER (fetch it; `slot`/`token`
        identify the claim), CLAIM_WAIT (another request fetches it; poll claim_held with
        `slot`/`token`), CLAIM_NONE (no slot free: fetch without collapsing)."""
        cdef int64_t now = self.now_ns()
        cdef uint64_t pos = hash & self.claim_mask, i
        cdef uint32_t free_slot = FGC_NONE
        cdef fgc_claim* c
        self._lock()
        for i in range(_CS_CLAIM_WINDOW):
            c = &self.claims[(pos + i) & self.claim_mask]
            if c.hash == hash and c.deadline_ns > now:
                slot[0] = <uint32_t>((pos + i) & self.claim_mask)
                token[0] = c.token
                self._unlock()
                return CLAIM_WAIT
            if free_slot == FGC_NONE and (c.hash == 0 or c.deadline_ns <= now):
                free_slot = <uint32_t>((pos + i) & self.claim_mask)
        if free_slot == FGC_NONE:
            self._unlock()
            return CLAIM_NONE
        self.h.token += 1
        c = &self.claims[free_slot]
        c.token = <uint32_t>self.h.token or 1
        c.pid = self.pid
        c.deadline_ns = now + timeout_ns
        c.hash = hash
        slot[0] = free_slot
        token[0] = c.token
        self._unlock()
        return CLAIM_OWNER

    cdef bint claim_held(self, uint32_t slot, uint64_t hash, uint32_t token) noexcept:
        """Lock-free: whether the claim is still held (a torn read only delays or hastens a
        waiter's next look, which is always safe)."""
        cdef fgc_claim* c = &self.claims[slot & self.claim_mask]
        cdef int64_t now
        if c.hash != hash or c.token != token:
            return False
        try:
            now = self.now_ns()
        except Exception:
            return False
        return c.deadline_ns > now

    cdef void _release_claim_locked(self, uint32_t slot, uint32_t token) noexcept:
        cdef fgc_claim* c = &self.claims[slot & self.claim_mask]
        if c.token == token and c.hash != 0:
            c.hash = 0
            fgc_add64(&self.h.claim_gen, 1)

    cdef void release_claim(self, uint32_t slot, uint32_t token) noexcept:
        if fgc_lock(&self.h.lock) == 1:
            self._recover()
            fgc_consistent(&self.h.lock)
        self._release_claim_locked(slot, token)
        self._unlock()

    # ---- Python API: the master, tests, tools -------------------------------------------------

    def key_hash(self, bytes key not None):
        return self.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))

    def lookup(self, bytes key not None, bint touch=True):
        """(metadata dict, header lines, body) of the READY entry of `key`, or None."""
        cdef EntrySnap s
        cdef uint64_t hv = self.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        if not self.find(hv, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), &s):
            return None
        head = self.head_bytes(&s)
        body = self.body_bytes(&s)
        if head is None or body is None or not self.valid(&s):
            return None
        if touch:
            self.touch(&s, self.now_ns())
        meta = {"status": s.status, "flags": s.flags, "nvary": s.nvary, "stored_ns": s.stored_ns,
                "age_ns": s.age_ns, "lifetime_ns": s.lifetime_ns, "swr_ns": s.swr_ns, "sie_ns": s.sie_ns,
                "epoch": s.epoch}
        return meta, head, body

    def writer(self, bytes key not None, bytes head=b"", *, Py_ssize_t body_hint=-1, Py_ssize_t limit=1 << 30,
               int status=200, uint32_t flags=0, int64_t lifetime_ns=0, int64_t age_ns=0, int64_t swr_ns=0,
               int64_t sie_ns=0, int64_t stored_ns=-1):
        """A CacheWrite for `key` (tests and tools), or None without room."""
        cdef EntryMeta m
        m.flags = flags
        m.status = status
        m.nvary = 0
        m.stored_ns = stored_ns if stored_ns >= 0 else self.now_ns()
        m.age_ns = age_ns
        m.lifetime_ns = lifetime_ns
        m.swr_ns = swr_ns
        m.sie_ns = sie_ns
        m.epoch = 0
        return self.begin_meta(self.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)), key, head, body_hint,
                               limit, &m)

    def put(self, bytes key not None, bytes head=b"", bytes body=b"", **meta):
        """Stores a whole response at once (tests and tools); whether it was stored."""
        w = self.writer(key, head, body_hint=len(body), **meta)
        if w is None:
            return False
        w.write(body)
        return w.commit()

    def remove(self, bytes key not None):
        return self.remove_key(self.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)), key)

    def purge(self, bytes key=None, bytes prefix=None):
        """Frees the entries of `key` (exactly, with its Vary variants) or of every key starting
        with `prefix`; the number freed. Scans every entry under the lock: for the admin API."""
        if (key is None) == (prefix is None):
            raise ValueError("purge needs exactly one of key or prefix")
        cdef bytes variant = key + b"\n" if key is not None else None
        cdef uint32_t idx
        cdef fgc_entry* e
        cdef int freed = 0
        self._lock()
        try:
            for idx in range(self.h.fresh_entry):
                e = &self.entries[idx]
                if e.state != FGC_READY:
                    continue
                k = PyBytes_FromStringAndSize(NULL, e.key_len)
                if fgc_copy(self.nxt, self.blocks, self.h.nblocks, e.first, e.nblocks, 0, PyBytes_AS_STRING(k),
                            e.key_len) < 0:
                    continue
                if (key is not None and (k == key or k.startswith(variant))) or \
                        (prefix is not None and k.startswith(prefix)):
                    self._free_entry(idx)
                    freed += 1
            self.h.purged += freed
        finally:
            self._unlock()
        return freed

    def keys(self, int limit=100):
        """Up to `limit` keys, most recently used first (Vary variants included)."""
        out = []
        cdef uint32_t idx
        cdef fgc_entry* e
        self._lock()
        try:
            idx = self.h.lru_head
            while idx != FGC_NONE and len(out) < limit:
                e = &self.entries[idx]
                k = PyBytes_FromStringAndSize(NULL, e.key_len)
                if fgc_copy(self.nxt, self.blocks, self.h.nblocks, e.first, e.nblocks, 0, PyBytes_AS_STRING(k),
                            e.key_len) == 0:
                    out.append(k)
                idx = e.next
        finally:
            self._unlock()
        return out

    def release_dead(self, int pid):
        """The master, after reaping worker `pid`: frees its unfinished writes and its claims
        (they would otherwise wait for the next recovery, or their deadline). The number freed."""
        cdef uint32_t idx, nxt_idx, i
        cdef int freed = 0
        self._lock()
        idx = self.h.writing_head
        while idx != FGC_NONE:
            nxt_idx = self.entries[idx].next
            if self.entries[idx].pid == pid:
                self._free_entry(idx)
                freed += 1
            idx = nxt_idx
        self.h.dead_writes += freed
        for i in range(self.h.nclaims):
            if self.claims[i].hash != 0 and self.claims[i].pid == pid:
                self._release_claim_locked(i, self.claims[i].token)
        self._unlock()
        return freed

    def try_claim(self, bytes key not None, double timeout):
        """(outcome, slot, token) of claim() for `key`: tests."""
        cdef uint32_t slot = 0, token = 0
        cdef int r = self.claim(self.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)),
                                <int64_t>(timeout * 1e9), &slot, &token)
        return ("owner", "wait", "none")[r], slot, token

    def claim_is_held(self, bytes key not None, uint32_t slot, uint32_t token):
        return self.claim_held(slot, self.hash_key(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)), token)

    def claim_release(self, uint32_t slot, uint32_t token):
        self.release_claim(slot, token)

    def debug_lock(self):
        """Takes the lock and keeps it: for tests of a process that dies holding it."""
        self._lock()

    def stats(self):
        """Occupancy and counters (the per-process counters summed over every stat row)."""
        cdef fgc_header* h = self.h
        cdef uint64_t sums[8]
        cdef uint32_t r, k
        for k in range(8):
            sums[k] = 0
        for r in range(FGC_STAT_ROWS):
            for k in range(8):
                sums[k] += fgc_load64(&self.rows[r].v[k])
        self._lock()
        try:
            used_blocks = h.fresh_block - h.free_blocks
            out = {
                "capacity": h.size,
                "blocks": h.nblocks,
                "block_size": FGC_BLOCK,
                "used_blocks": used_blocks,
                "size": used_blocks * FGC_BLOCK,
                "object_bytes": h.ready_bytes,
                "entries": h.ready,
                "max_entries": h.nentries,
                "writing": h.writing,
                "evictions": h.evictions,
                "purged": h.purged,
                "invalidated": h.invalidated,
                "recoveries": h.recoveries,
                "dead_writes": h.dead_writes,
            }
        finally:
            self._unlock()
        names = ("hits", "misses", "stale", "revalidated", "stores", "store_aborts", "collapsed", "bypass")
        for k in range(8):
            out[names[k]] = sums[k]
        lookups = sums[ST_HITS] + sums[ST_STALE] + sums[ST_MISSES]
        out["hit_ratio"] = round((sums[ST_HITS] + sums[ST_STALE]) / lookups, 4) if lookups else 0.0
        return out

    def check(self):
        """Verifies every invariant of the store under the lock (tests): lists, index, block
        ownership. Raises AssertionError naming the first one broken; returns the counts."""
        cdef fgc_header* h = self.h
        cdef uint32_t idx, b, hops, prev
        cdef uint64_t i, v, ready = 0, writing = 0, owned_count = 0, free_count = 0, rb = 0
        cdef fgc_entry* e
        owner = {}
        self._lock()
        try:
            prev = FGC_NONE
            idx = h.lru_head
            while idx != FGC_NONE:
                e = &self.entries[idx]
                assert e.state == FGC_READY, f"entry {idx} in the LRU list is not READY"
                assert e.prev == prev, f"entry {idx}: LRU prev link"
                assert self._slot_of(idx) >= 0, f"READY entry {idx} is not in the index"
                ready += 1
                rb += <uint64_t>e.key_len + e.head_len + e.body_len
                prev = idx
                idx = e.next
            assert h.lru_tail == prev, "LRU tail"
            assert ready == h.ready, f"LRU holds {ready} entries, the header counts {h.ready}"
            assert rb == h.ready_bytes, "ready_bytes"
            idx = h.writing_head
            while idx != FGC_NONE:
                assert self.entries[idx].state == FGC_WRITING, f"entry {idx} in the writing list is not WRITING"
                writing += 1
                idx = self.entries[idx].next
            assert writing == h.writing, "writing count"
            for i in range(h.nslots):
                v = self.slots[i]
                if v:
                    idx = <uint32_t>(v & 0xffffffffULL) - 1
                    assert self.entries[idx].state == FGC_READY, f"slot {i} points to a non-READY entry"
            for idx in range(h.fresh_entry):
                e = &self.entries[idx]
                if e.state == FGC_FREE:
                    continue
                b = e.first
                hops = 0
                while hops < e.nblocks:
                    assert b < h.fresh_block, f"entry {idx}: block {b} out of range"
                    assert b not in owner, f"block {b} owned by entries {owner[b]} and {idx}"
                    owner[b] = idx
                    owned_count += 1
                    hops += 1
                    if hops < e.nblocks:
                        b = self.nxt[b]
                assert b == e.last, f"entry {idx}: last block"
            b = h.free_block
            while b != FGC_NONE:
                assert b not in owner, f"free block {b} is owned by entry {owner.get(b)}"
                owner[b] = -1
                free_count += 1
                b = self.nxt[b]
            assert free_count == h.free_blocks, "free block count"
            assert owned_count + free_count == h.fresh_block, \
                f"{h.fresh_block - owned_count - free_count} blocks are neither owned nor free"
        finally:
            self._unlock()
        return {"ready": ready, "writing": writing, "owned_blocks": owned_count, "free_blocks": free_count}


@cython.final
cdef class CacheWrite:
    """One response being stored (see cachestore.pxd): the body is appended as it streams to the
    client, then committed (published, replacing the key's previous entry) or aborted."""

    cdef int _write(self, const char* p, uint64_t n) except -1:
        cdef CacheStore s = self.store
        cdef uint64_t room
        while n:
            if self.cur_off == FGC_BLOCK:
                self.cur = s.nxt[self.cur]
                self.cur_off = 0
            room = FGC_BLOCK - self.cur_off
            if room > n:
                room = n
            memcpy(s.blocks + <uint64_t>self.cur * FGC_BLOCK + self.cur_off, p, room)
            self.cur_off += <uint32_t>room
            self.used += room
            p += room
            n -= room
        return 0

    cdef int append(self, const char* p, Py_ssize_t n) except -1:
        """Adds body bytes; 1 (and the write aborted) when they go past the limit or no room can
        be found, else 0."""
        cdef CacheStore s = self.store
        cdef uint32_t more, first, last
        cdef fgc_entry* e
        if self.done:
            return 1
        if self.body + <uint64_t>n > self.limit:
            self.abort()
            return 1
        if self.used + <uint64_t>n > self.cap:
            more = _cs_blocks_for(self.used + <uint64_t>n - self.cap)
            s._lock()
            e = &s.entries[self.idx]
            if e.state != FGC_WRITING or e.seq != self.seq or e.pid != s.pid \
                    or s._alloc_blocks(more, &first, &last) < 0:
                s._unlock()
                self.abort()
                return 1
            s.nxt[self.tail] = first
            e.last = last
            e.nblocks += more
            s._unlock()
            fgc_fence_release()
            self.tail = last
            self.nblocks += more
            self.cap += <uint64_t>more * FGC_BLOCK
        self._write(p, n)
        self.body += <uint64_t>n
        return 0

    def write(self, bytes data not None):
        """append() for Python callers: whether the bytes were taken."""
        return self.append(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) == 0

    @property
    def body_bytes(self):
        return self.body

    cpdef bint commit(self) except -1:
        """Publishes the entry, replacing any earlier one of its key, and releases the claim it
        carries; False when it was given up meanwhile."""
        if self.done:
            return False
        self.done = True
        cdef CacheStore s = self.store
        cdef fgc_entry* e
        cdef uint32_t keep, b, rest, i
        s._lock()
        e = &s.entries[self.idx]
        if e.state != FGC_WRITING or e.seq != self.seq or e.pid != s.pid:
            if self.has_claim:
                s._release_claim_locked(self.claim_slot, self.claim_token)
            s._unlock()
            return False
        keep = _cs_blocks_for(self.used)
        if keep < e.nblocks:
            # blocks reserved for a body that turned out shorter go back to the free list
            b = e.first
            for i in range(keep - 1):
                b = s.nxt[b]
            rest = s.nxt[b]
            s.nxt[e.last] = s.h.free_block
            s.h.free_block = rest
            s.h.free_blocks += e.nblocks - keep
            s.nxt[b] = FGC_NONE
            e.last = b
            e.nblocks = keep
        e.body_len = <uint32_t>self.body
        s._writing_unlink(self.idx)
        s.h.writing -= 1
        s._remove_key_locked(e.hash, PyBytes_AS_STRING(self.key), PyBytes_GET_SIZE(self.key), self.idx)
        fgc_store32(&e.state, FGC_READY)
        s._slot_insert(self.idx)
        s._lru_push(self.idx, <uint64_t>(s.now_ns() // 1000000))
        s.h.ready += 1
        s.h.ready_bytes += self.used
        if self.has_claim:
            self.has_claim = False
            s._release_claim_locked(self.claim_slot, self.claim_token)
        s._unlock()
        s.count(ST_STORES)
        return True

    cpdef abort(self):
        """Gives the entry's room back (and releases the claim it carries)."""
        if self.done:
            return
        self.done = True
        cdef CacheStore s = self.store
        cdef fgc_entry* e
        if fgc_lock(&s.h.lock) == 1:
            s._recover()
            fgc_consistent(&s.h.lock)
        e = &s.entries[self.idx]
        if e.state == FGC_WRITING and e.seq == self.seq and e.pid == s.pid:
            s._free_entry(self.idx)
        if self.has_claim:
            self.has_claim = False
            s._release_claim_locked(self.claim_slot, self.claim_token)
        s._unlock()
        s.count(ST_STORE_ABORTS)

    def __dealloc__(self):
        if not self.done and self.store is not None:
            self.abort()
