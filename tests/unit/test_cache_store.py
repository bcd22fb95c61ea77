"""The cache's shared store (`fastgw._proxy.CacheStore`, cache_shm.h): its invariants after every
kind of operation (`check()` verifies lists, index and block ownership), LRU by bytes, writers
streaming and giving up, collapse claims, and what processes that die leave behind: a writer
killed mid-write leaves an unpublished entry its reaper frees; a process killed holding the lock
makes the next locker recover; readers racing writers in other processes never get bytes that
were not stored together."""
from __future__ import annotations

import hashlib
import mmap
import os
import random
import signal
import time

import pytest

from fastgw._proxy import CacheStore, cache_layout

MiB = 1024 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns

    def advance(self, ms: float) -> None:
        self.ns += int(ms * 1e6)


def new_store(size: int = MiB, clock: FakeClock | None = None) -> tuple[mmap.mmap, CacheStore]:
    buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
    return buf, CacheStore(buf, init=True, clock=clock)


def body_for(key: bytes, version: int, size: int) -> bytes:
    seed = hashlib.sha256(key + b"/%d" % version).digest()
    return (seed * (size // len(seed) + 1))[:size]


def test_layout_fits_and_scales() -> None:
    for size in (MiB, 8 * MiB, 64 * MiB):
        lay = cache_layout(size)
        assert lay["off_blocks"] + lay["nblocks"] * lay["block_size"] <= size
        assert lay["nslots"] >= 2 * lay["nentries"] and lay["nslots"] & (lay["nslots"] - 1) == 0
        assert lay["nblocks"] * lay["block_size"] > size * 0.85  # metadata stays small
    with pytest.raises(ValueError):
        cache_layout(4096)


def test_put_lookup_replace_remove() -> None:
    _, store = new_store()
    assert store.lookup(b"k") is None
    assert store.put(b"k", b"a: 1\r\n", b"one", status=203, lifetime_ns=5)
    meta, head, body = store.lookup(b"k")
    assert (meta["status"], meta["lifetime_ns"], head, body) == (203, 5, b"a: 1\r\n", b"one")
    assert store.put(b"k", b"a: 2\r\n", b"two" * 1000)
    assert store.lookup(b"k")[1:] == (b"a: 2\r\n", b"two" * 1000)
    assert store.stats()["entries"] == 1
    assert store.remove(b"k") == 1 and store.lookup(b"k") is None and store.remove(b"k") == 0
    assert store.check()["ready"] == 0


def test_attached_views_share_entries() -> None:
    buf, store = new_store()
    other = CacheStore(buf, init=False, row=3)
    store.put(b"k", b"", b"shared")
    assert other.lookup(b"k")[2] == b"shared"
    assert other.stats()["stores"] == 1
    with pytest.raises(ValueError):
        CacheStore(mmap.mmap(-1, MiB, flags=mmap.MAP_SHARED), init=False)


def test_purge_exact_key_with_variants_and_prefix() -> None:
    _, store = new_store()
    for key in (b"GET http://a/x", b"GET http://a/x\n7\naccept:en\n", b"GET http://a/xy", b"GET http://b/x"):
        store.put(key, b"", b"v")
    assert store.purge(key=b"GET http://a/x") == 2
    assert store.lookup(b"GET http://a/xy") is not None
    assert store.purge(prefix=b"GET http://a/") == 1
    assert [k for k in store.keys(10)] == [b"GET http://b/x"]
    store.check()


def test_lru_by_bytes_evicts_the_least_recently_used() -> None:
    clock = FakeClock()
    _, store = new_store(MiB, clock)
    keys = [b"key-%d" % i for i in range(40)]
    for key in keys:  # 40 x 20 KB = 800 KB: fits in the ~880 KB of blocks
        clock.advance(100)
        assert store.put(key, b"", body_for(key, 0, 20_000))
    assert store.stats()["evictions"] == 0
    clock.advance(100)
    assert store.lookup(keys[0]) is not None  # used: now the most recent
    for i in range(5):  # 5 x 20 KB more: evicts the oldest unused ones
        clock.advance(100)
        assert store.put(b"new-%d" % i, b"", body_for(b"new", i, 20_000))
    assert store.lookup(keys[0]) is not None and store.lookup(keys[1]) is None
    stats = store.stats()
    assert stats["evictions"] >= 1 and stats["size"] <= stats["capacity"]
    # one large object evicts as many small ones as it needs
    assert store.put(b"large", b"", body_for(b"large", 0, 300_000))
    assert store.lookup(b"large")[2] == body_for(b"large", 0, 300_000)
    assert store.stats()["object_bytes"] <= store.stats()["capacity"]
    store.check()


def test_many_small_objects_are_bounded_by_entries_too() -> None:
    _, store = new_store()
    for i in range(5000):
        assert store.put(b"k%d" % i, b"", b"x")
    stats = store.stats()
    assert stats["entries"] == stats["max_entries"] and stats["evictions"] == 5000 - stats["max_entries"]
    assert store.lookup(b"k4999") is not None and store.lookup(b"k0") is None
    store.check()


def test_streaming_write_commit_abort_and_limits() -> None:
    _, store = new_store()
    w = store.writer(b"s", b"h: 1\r\n")
    for _ in range(10):
        assert w.write(b"x" * 3000)
    assert store.lookup(b"s") is None and store.stats()["writing"] == 1  # never visible half-written
    assert w.commit() and not w.commit()
    assert store.lookup(b"s")[2] == b"x" * 30000
    w = store.writer(b"s", b"", limit=1000)
    assert w.write(b"y" * 800) and not w.write(b"y" * 800) and w.done  # over max_object: aborted
    assert store.lookup(b"s")[2] == b"x" * 30000  # the earlier entry stays
    w = store.writer(b"t", b"", body_hint=10_000)
    w.write(b"z" * 10)  # shorter than announced: the spare blocks go back
    assert w.commit() and store.lookup(b"t")[2] == b"z" * 10
    w = store.writer(b"u", b"")
    w.write(b"u" * 5000)
    del w  # dropped unfinished: aborts itself
    assert store.lookup(b"u") is None and store.stats()["writing"] == 0
    assert store.check()["writing"] == 0


def test_a_writer_killed_mid_write_is_freed_by_its_reaper() -> None:
    buf, store = new_store()
    pid = os.fork()
    if pid == 0:
        child = CacheStore(buf, init=False)
        w = child.writer(b"half", b"h: 1\r\n")
        w.write(b"a" * 20_000)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert store.lookup(b"half") is None and store.stats()["writing"] == 1
    assert store.release_dead(pid) == 1
    stats = store.stats()
    assert (stats["writing"], stats["dead_writes"], stats["used_blocks"]) == (0, 1, 0)
    store.check()


def test_dead_writers_are_reaped_when_room_runs_out() -> None:
    """Without the master (release_dead), an allocation that finds no room frees the WRITING
    entries of processes that are gone."""
    buf, store = new_store()
    pid = os.fork()
    if pid == 0:
        child = CacheStore(buf, init=False)
        w = child.writer(b"hog", b"")
        w.write(b"a" * 700_000)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert store.put(b"big", b"", b"b" * 400_000)
    assert store.stats()["dead_writes"] == 1 and store.lookup(b"big") is not None
    store.check()


def test_a_process_killed_holding_the_lock_makes_the_next_locker_recover() -> None:
    buf, store = new_store()
    for i in range(50):
        store.put(b"k%d" % i, b"", b"v" * 3000)
    pid = os.fork()
    if pid == 0:
        CacheStore(buf, init=False).debug_lock()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert store.put(b"after", b"", b"fresh")  # takes the lock: EOWNERDEAD, recovery
    stats = store.stats()
    assert stats["recoveries"] == 1 and stats["entries"] == 1 and stats["used_blocks"] == 1
    assert store.lookup(b"k0") is None and store.lookup(b"after")[2] == b"fresh"
    store.check()


def test_recovery_keeps_the_chains_of_live_writers() -> None:
    buf, store = new_store()
    w = store.writer(b"mine", b"")
    w.write(b"m" * 50_000)
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        other = CacheStore(buf, init=False)
        w2 = other.writer(b"theirs", b"")
        w2.write(b"t" * 40_000)
        os.write(wfd, b"x")
        other.debug_lock()
        os.kill(os.getpid(), signal.SIGKILL)
    os.read(r, 1)
    os.waitpid(pid, 0)
    for i in range(200):  # recovery, then pressure: our chain must not be handed out
        store.put(b"p%d" % i, b"", b"p" * 4000)
    assert w.write(b"m" * 10_000) and w.commit()
    assert store.lookup(b"mine")[2] == b"m" * 60_000
    assert store.stats()["recoveries"] == 1
    store.check()


def test_claims() -> None:
    clock = FakeClock()
    buf, store = new_store(clock=clock)
    outcome, slot, token = store.try_claim(b"k", 1.0)
    assert outcome == "owner" and store.claim_is_held(b"k", slot, token)
    assert store.try_claim(b"k", 1.0) == ("wait", slot, token)
    assert store.try_claim(b"other", 1.0)[0] == "owner"
    store.claim_release(slot, token)
    assert not store.claim_is_held(b"k", slot, token)
    outcome, slot, token = store.try_claim(b"k", 1.0)
    clock.advance(1001)  # past its deadline: no longer held, and claimable again
    assert not store.claim_is_held(b"k", slot, token) and store.try_claim(b"k", 1.0)[0] == "owner"
    # a writer carrying a claim releases it when it commits
    w = store.writer(b"k2", b"")
    assert w is not None
    pid = os.fork()
    if pid == 0:
        CacheStore(buf, init=False, clock=clock).try_claim(b"dead", 60.0)
        os._exit(0)
    os.waitpid(pid, 0)
    assert store.try_claim(b"dead", 1.0)[0] == "wait"
    store.release_dead(pid)
    assert store.try_claim(b"dead", 1.0)[0] == "owner"
    w.abort()


def _hammer(buf: mmap.mmap, seed: int, seconds: float, keys: list[bytes]) -> int:
    """Random puts, streamed writes (some abandoned), removes and reads; every read body must be
    the one its header line names. Returns the number of reads checked."""
    store = CacheStore(buf, init=False, row=seed)
    rng = random.Random(seed)
    checked = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.35:
            version = rng.randrange(1 << 30)
            size = rng.choice((0, 100, 3000, 20_000, 70_000))
            head = b"v: %d %d\r\n" % (version, size)
            w = store.writer(key, head, body_hint=rng.choice((-1, size)))
            if w is None:
                continue
            body = body_for(key, version, size)
            for i in range(0, size, 7000):
                if not w.write(body[i : i + 7000]):
                    break
            if rng.random() < 0.1:
                w.abort()
            else:
                w.commit()
        elif op < 0.4:
            store.remove(key)
        else:
            found = store.lookup(key)
            if found is None:
                continue
            _, head, body = found
            version, size = (int(x) for x in head[3:-2].split())
            assert body == body_for(key, version, size), f"torn read of {key!r}"
            checked += 1
    return checked


@pytest.mark.timeout(60)
def test_concurrent_processes_never_read_torn_entries() -> None:
    buf, store = new_store(2 * MiB)
    keys = [b"key-%d" % i for i in range(40)]
    children = []
    for seed in range(4):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if _hammer(buf, seed + 1, 1.5, keys) > 0 else 2
            finally:
                os._exit(code)
        children.append(pid)
    checked = _hammer(buf, 99, 1.5, keys)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert checked > 0
    counts = store.check()
    assert counts["writing"] == 0 and store.stats()["stores"] > 100
