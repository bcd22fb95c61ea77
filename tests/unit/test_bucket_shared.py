"""The shared bucket table (DESIGN §2, §8): a limit holds for the whole host, whatever the
number of workers.

The cross-process tests use real forked processes on a real MAP_SHARED mapping, as the master and
its workers do. The sharpest one uses a limit of 1/hour with a large burst: during the test no
token is added, so exactly `burst` decisions per key must be allowed however the workers
interleave; one more would be a double-spent token, one fewer a lost update (the burst is large so
that the race lasts long enough for all four workers to take part). Every child loop is bounded by
count and time, and every child is reaped (killed after a timeout).
"""
from __future__ import annotations

import contextlib
import json
import mmap
import os
import select
import signal
import time
import traceback
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgw._core as core

S = 1_000_000_000
MS = 1_000_000
CHILD_TIMEOUT = 30.0


class FakeClock:
    def __init__(self, now: int = 1_000 * S) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def shared_table(capacity: int, clock: Callable[[], int] | None = None
                 ) -> tuple[mmap.mmap, core.BucketTable]:
    buf = mmap.mmap(-1, core.BucketTable.size_for(capacity), flags=mmap.MAP_SHARED)
    return buf, core.BucketTable(buf, capacity, init=True, clock=clock)


class Children:
    """Forked children that run `work(index)` after a common start signal and send back its
    JSON result; the parent always reaps them, killing any still alive at the end."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.pipes: dict[int, int] = {}
        self.gate_r, self.gate_w = os.pipe()

    def spawn(self, count: int, work: Callable[[int], object]) -> None:
        for index in range(count):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.close(r)
                    os.read(self.gate_r, 1)
                    os.write(w, json.dumps(work(index)).encode())
                    code = 0
                except BaseException:  # noqa: BLE001 - shown, then the exit code says it
                    traceback.print_exc()
                finally:
                    os._exit(code)
            os.close(w)
            self.pids.append(pid)
            self.pipes[pid] = r

    def start(self) -> None:
        os.write(self.gate_w, b"x" * len(self.pids))

    def results(self, pids: list[int] | None = None) -> dict[int, object]:
        """Each child's result, once all of `pids` have closed their pipe (bounded wait)."""
        pending = {self.pipes[p]: p for p in (pids or self.pids)}
        data: dict[int, bytes] = {fd: b"" for fd in pending}
        deadline = time.monotonic() + CHILD_TIMEOUT
        while pending:
            left = deadline - time.monotonic()
            assert left > 0, "children did not finish in time"
            ready, _, _ = select.select(list(pending), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    data[fd] += chunk
                else:
                    del pending[fd]
        out = {}
        for fd, raw in data.items():
            pid = {v: k for k, v in self.pipes.items()}[fd]
            assert raw, f"child {pid} failed"
            out[pid] = json.loads(raw)
        return out

    def reap(self) -> dict[int, int]:
        """Wait status of every child; any child still running after the timeout is killed."""
        statuses = {}
        deadline = time.monotonic() + CHILD_TIMEOUT
        for pid in self.pids:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = status
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    statuses[pid] = os.waitpid(pid, 0)[1]
                    break
                time.sleep(0.005)
        return statuses

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for fd in [self.gate_r, self.gate_w, *self.pipes.values()]:
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()


def exited_ok(statuses: dict[int, int]) -> bool:
    return all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses.values())


# --- across processes -------------------------------------------------------------------------

def drain(table: core.BucketTable, keys: list[int], limit: core.Limit, index: int,
          record: Callable[[int], None]) -> None:
    """Consume round-robin over `keys` until all are refused 3000 times in a row (the buckets
    are empty), within 1e7 attempts and 20 s."""
    refused_in_a_row = 0
    deadline = time.monotonic() + 20
    for i in range(10_000_000):
        k = (i + index) % len(keys)
        if table.consume(keys[k], limit):
            record(k)
            refused_in_a_row = 0
        else:
            refused_in_a_row += 1
            if refused_in_a_row > 3000:
                return
        if i % 4096 == 0 and time.monotonic() > deadline:
            return


def test_no_token_is_lost_or_double_spent_across_processes() -> None:
    burst = 100_000
    buf, table = shared_table(1024)
    limit = core.Limit(1 / 3600, burst)
    keys = [table.key_hash(b"api", k) for k in (b"alice", b"bob", b"carol")]

    def hammer(index: int) -> list[int]:
        mine = core.BucketTable(buf, 1024, init=False)
        allowed = [0, 0, 0]

        def record(k: int) -> None:
            allowed[k] += 1

        drain(mine, keys, limit, index, record)
        return allowed

    with children() as kids:
        kids.spawn(4, hammer)
        kids.start()
        results = list(kids.results().values())
        assert exited_ok(kids.reap())
    per_key = [sum(r[k] for r in results) for k in range(3)]
    assert per_key == [burst] * 3
    assert all(sum(r[k] > 0 for r in results) >= 2 for k in range(3)), (
        "at least two children must have won tokens of each key, or the test did not race")
    for key in keys:
        assert not table.consume(key, limit)
        assert table.remaining == 0
    assert table.stats()["used"] == 3


def test_rate_holds_for_the_whole_host() -> None:
    """Real clock: over a window of w seconds the host allows burst + rate * w, not per worker.
    GCRA makes the upper bound exact; the lower one only assumes the hammering is continuous
    enough that the bucket never sits full for burst/rate = 200 ms."""
    rate, burst = 2000, 400
    buf, table = shared_table(64)
    limit = core.Limit(rate, burst)
    key = table.key_hash(b"api", b"everyone")

    def hammer(index: int) -> dict[str, int]:
        mine = core.BucketTable(buf, 64, init=False)
        allowed = 0
        first = time.monotonic_ns()
        stop = first + 500 * MS
        for i in range(20_000_000):
            allowed += mine.consume(key, limit)
            if i % 256 == 0 and time.monotonic_ns() > stop:
                break
        return {"allowed": allowed, "first": first, "last": time.monotonic_ns()}

    with children() as kids:
        kids.spawn(4, hammer)
        start = time.monotonic_ns()
        kids.start()
        results = list(kids.results().values())
        assert exited_ok(kids.reap())
    total = sum(r["allowed"] for r in results)
    first = min(r["first"] for r in results)
    upper = burst + rate * (max(r["last"] for r in results) - start) // S
    lower = burst + rate * (min(r["last"] for r in results) - first) / S
    assert lower * 0.98 - 2 <= total <= upper
    assert lower > 1.5 * burst, "the window was too short to measure the rate"


def test_a_worker_killed_mid_decision_leaves_the_table_consistent() -> None:
    """SIGKILL can land anywhere, including inside consume(). Each child counts its own allowed
    decisions in shared memory right after each one, so the victim's count can lag its decisions
    by at most the one it was killed in."""
    burst = 300_000
    buf, table = shared_table(1024)
    limit = core.Limit(1 / 3600, burst)
    keys = [table.key_hash(b"api", k) for k in (b"a", b"b", b"c")]
    counts_buf = mmap.mmap(-1, 8 * 3 * 4, flags=mmap.MAP_SHARED)
    counts = memoryview(counts_buf).cast("Q")

    def hammer(index: int) -> str:
        mine = core.BucketTable(buf, 1024, init=False)

        def record(k: int) -> None:
            counts[index * 3 + k] += 1

        drain(mine, keys, limit, index, record)
        return "done"

    try:
        with children() as kids:
            kids.spawn(4, hammer)
            victim, survivors = kids.pids[0], kids.pids[1:]
            kids.start()
            deadline = time.monotonic() + CHILD_TIMEOUT
            while sum(counts[0:3]) < 10_000 and time.monotonic() < deadline:
                time.sleep(0.0002)
            os.kill(victim, signal.SIGKILL)
            assert set(kids.results(survivors).values()) == {"done"}
            statuses = kids.reap()
        assert os.WIFSIGNALED(statuses[victim]), "the victim finished before it was killed"
        assert all(os.WIFEXITED(statuses[p]) and os.WEXITSTATUS(statuses[p]) == 0
                   for p in survivors)
        per_key = [sum(counts[c * 3 + k] for c in range(4)) for k in range(3)]
        assert all(burst - 1 <= n <= burst for n in per_key), per_key
        assert sum(per_key) >= 3 * burst - 1
        for key in keys:
            assert not table.consume(key, limit)
        assert table.consume(table.key_hash(b"api", b"new"), limit)
        assert table.stats()["used"] == 4
    finally:
        counts.release()


# --- formatting and attaching -----------------------------------------------------------------

def test_size_and_capacity_rounding() -> None:
    assert core.BucketTable.size_for(1000) == 64 + 1024 * 16
    assert core.BucketTable.size_for(1) == 64 + 8 * 16
    assert core.BucketTable.size_for(1024) == 64 + 1024 * 16
    for bad in (0, -1, 2**32 + 1):
        with pytest.raises(ValueError):
            core.BucketTable.size_for(bad)
    _, table = shared_table(1000)
    assert table.capacity == 1024


def test_attach_validates_the_buffer() -> None:
    buf, table = shared_table(64)
    with pytest.raises(ValueError, match="capacity"):
        core.BucketTable(buf, 128, init=False)
    with pytest.raises(ValueError, match="capacity"):
        core.BucketTable(buf, 32, init=False)
    blank = mmap.mmap(-1, core.BucketTable.size_for(64))
    with pytest.raises(ValueError, match="not a formatted"):
        core.BucketTable(blank, 64, init=False)
    with pytest.raises(ValueError, match="bytes"):
        core.BucketTable(mmap.mmap(-1, 100), 64, init=True)
    with pytest.raises((TypeError, BufferError)):
        core.BucketTable(bytes(core.BucketTable.size_for(64)), 64, init=True)
    big = mmap.mmap(-1, core.BucketTable.size_for(64) + 64)
    with pytest.raises(ValueError, match="aligned"):
        core.BucketTable(memoryview(big)[8:], 64, init=True)
    with pytest.raises(TypeError):
        core.BucketTable(buf, 64)
    with pytest.raises(BufferError):
        buf.close()  # the table holds the buffer: unmapping it under a worker is impossible
    del table
    buf.close()


def test_attached_tables_share_state_and_seed() -> None:
    clock = FakeClock()
    buf, master = shared_table(64, clock)
    worker = core.BucketTable(buf, 64, init=False, clock=clock)
    assert worker.seed == master.seed
    limit = core.Limit(1, 3)
    key = worker.key_hash(b"l", b"k")
    assert master.consume(key, limit, 2)
    assert worker.consume(key, limit) and worker.remaining == 0
    assert not master.consume(key, limit)
    _, other = shared_table(64)
    assert other.seed != master.seed, "each format draws a new secret seed"


# --- eviction policy (fake clock, capacity 8: every key's window is the whole table) --------

def test_full_buckets_are_reused_before_any_is_evicted() -> None:
    clock = FakeClock()
    _, table = shared_table(8, clock)
    limit = core.Limit(1, 2)  # T = 1 s, tau = 2 s
    for key in range(1, 9):
        assert table.consume(key, limit)
    assert table.stats() == {"capacity": 8, "used": 8, "active": 8, "evictions": 0}
    clock.now += 1 * S
    assert table.consume(3, limit, 2) and table.remaining == 0
    clock.now += 1 * S  # every bucket but key 3's is full
    assert table.stats()["active"] == 1
    for key in range(100, 107):  # seven new keys take the seven full slots
        assert table.consume(key, limit)
        assert table.remaining == 1
    assert table.stats() == {"capacity": 8, "used": 8, "active": 8, "evictions": 0}
    assert table.consume(3, limit) and table.remaining == 0, "key 3 kept its bucket"
    assert not table.consume(3, limit)


def test_with_no_full_bucket_the_closest_to_full_is_evicted() -> None:
    clock = FakeClock()
    _, table = shared_table(8, clock)
    limit = core.Limit(1, 2)
    for key in range(1, 9):  # key k is full again at t0 + k*100ms + 1s
        assert table.consume(key, limit)
        clock.now += 100 * MS
    assert table.stats()["active"] == 8
    assert table.consume(50, limit)
    assert table.stats() == {"capacity": 8, "used": 8, "active": 8, "evictions": 1}
    # Key 1 was the one evicted: it comes back to a fresh, full bucket (the documented excess).
    assert table.consume(1, limit) and table.remaining == 1
    assert table.stats()["evictions"] == 2
    # Key 2 was then the closest to full and went; keys 3..8 kept their state.
    for key in range(3, 9):
        assert table.consume(key, limit) and table.remaining == 0
    assert table.stats()["evictions"] == 2


def test_a_refused_new_key_takes_no_slot() -> None:
    _, table = shared_table(8, FakeClock())
    assert not table.consume(7, core.Limit(1, 2), 3)
    assert table.stats()["used"] == 0


# --- occupancy (fake clock that never moves: every key stays live) -------------------------

def fill_live(capacity: int, share: float, seed: int = 0) -> tuple[core.BucketTable, list[int]]:
    _, table = shared_table(capacity, FakeClock())
    limit = core.Limit(1, 2)
    keys = [table.key_hash(b"occupancy", b"%d-%d" % (seed, i))
            for i in range(int(capacity * share))]
    for key in keys:
        assert table.consume(key, limit)
    return table, keys


def test_three_quarters_of_the_table_hold_live_keys_without_eviction() -> None:
    # Layout version 1 (one window of 8 slots per key) evicted 4.2e-2 live keys per new key here.
    table, keys = fill_live(65536, 0.75)
    assert table.stats() == {"capacity": 65536, "used": len(keys), "active": len(keys),
                             "evictions": 0}
    limit = core.Limit(1, 2)
    for key in keys:  # every key kept its state: its second token is its last
        assert table.consume(key, limit) and table.remaining == 0


def test_past_capacity_every_decision_still_finds_its_key_or_evicts_one() -> None:
    table, keys = fill_live(4096, 1.25, seed=1)
    stats = table.stats()
    assert stats["used"] == stats["active"] == 4096
    assert stats["evictions"] == len(keys) - 4096, "each key past capacity evicts exactly one"


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 2**20), st.floats(0.05, 0.75))
def test_every_placed_key_is_found_again(seed: int, share: float) -> None:
    table, keys = fill_live(1024, share, seed)
    assert table.stats()["evictions"] == 0
    limit = core.Limit(1, 2)
    for key in keys:
        assert table.consume(key, limit) and table.remaining == 0
