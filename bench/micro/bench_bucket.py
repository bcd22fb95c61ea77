"""Rate-limit decision cost: `python -m bench.micro.bench_bucket`.

Times 1e6 decisions per case, best of 3 runs, on the C clock (CLOCK_MONOTONIC read from C, as in
the gateway). Every call from Python pays the interpreter's call overhead, so each row also shows
the cost net of a "call floor": the same loop calling a C method that does nothing (`dict.get`
with the same arguments). The net figure is what a caller in Cython would pay.
"""
from __future__ import annotations

import mmap
import os
import time
from typing import Callable

import fastgw._core as core
import fastgw._pycore.bucket as pycore

N = 1_000_000
REPEAT = 3
DISTINCT = 10_000


def best_ns_per_call(loop: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter_ns()
        loop()
        best = min(best, (time.perf_counter_ns() - start) / N)
    return best


def cases() -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    """(name, timed loop, its call-floor loop with the same shape)."""
    nothing: dict = {}
    floor0 = nothing.get
    limit = core.Limit(1e6, 1e6)
    size = core.BucketTable.size_for(65536)
    table = core.BucketTable(mmap.mmap(-1, size, flags=mmap.MAP_SHARED), 65536, init=True)
    hot = table.key_hash(b"api", b"203.0.113.7")
    keys = [table.key_hash(b"api", b"10.0.%d.%d" % divmod(i, 256)) for i in range(DISTINCT)]
    keys *= N // DISTINCT
    ids = [b"10.0.%d.%d" % divmod(i, 256) for i in range(DISTINCT)] * (N // DISTINCT)
    local = core.TokenBucket(1e6, 1e6)
    model = pycore.TokenBucket(1e6, 1e6)
    model_table = pycore.BucketTable()
    model_limit = pycore.Limit(1e6, 1e6)

    def loop_local() -> None:
        take = local.consume
        for _ in range(N):
            take()

    def floor_local() -> None:
        for _ in range(N):
            floor0(None)

    def loop_hot() -> None:
        take = table.consume
        for _ in range(N):
            take(hot, limit)

    def floor_hot() -> None:
        for _ in range(N):
            floor0(hot, limit)

    def loop_spread() -> None:
        take = table.consume
        for k in keys:
            take(k, limit)

    def floor_spread() -> None:
        for k in keys:
            floor0(k, limit)

    def loop_hash() -> None:
        key_hash = table.key_hash
        for k in ids:
            key_hash(b"api", k)

    def floor_hash() -> None:
        for k in ids:
            floor0(b"api", k)

    def loop_model() -> None:
        take = model.consume
        for _ in range(N):
            take()

    def loop_model_table() -> None:
        take = model_table.consume
        for k in keys:
            take(k, model_limit)

    return [
        ("core TokenBucket.consume()", loop_local, floor_local),
        ("core BucketTable.consume, 1 hot key", loop_hot, floor_hot),
        (f"core BucketTable.consume, {DISTINCT} keys", loop_spread, floor_spread),
        ("core BucketTable.key_hash(limit, ip)", loop_hash, floor_hash),
        ("pycore TokenBucket.consume()", loop_model, floor_local),
        (f"pycore BucketTable.consume, {DISTINCT} keys", loop_model_table, floor_spread),
    ]


def contended(workers: int) -> float:
    """ns per decision when `workers` forked processes hammer one key in one shared table (each
    decision is then a cache-line transfer between cores): wall time / total decisions."""
    table_buf = mmap.mmap(-1, core.BucketTable.size_for(64), flags=mmap.MAP_SHARED)
    table = core.BucketTable(table_buf, 64, init=True)
    limit = core.Limit(1e6, 1e6)
    key = table.key_hash(b"api", b"everyone")
    gate_r, gate_w = os.pipe()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                os.read(gate_r, 1)
                take = table.consume
                for _ in range(N):
                    take(key, limit)
            finally:
                os._exit(0)
        pids.append(pid)
    start = time.perf_counter_ns()
    os.write(gate_w, b"x" * workers)
    for pid in pids:
        os.waitpid(pid, 0)
    elapsed = time.perf_counter_ns() - start
    os.close(gate_r)
    os.close(gate_w)
    return elapsed / (N * workers)


def main() -> None:
    print(f"{N:,} decisions per case, best of {REPEAT}; CPUs: {os.cpu_count()}")
    print(f"{'case':<44} {'ns/call':>9} {'net of call floor':>18}")
    for name, loop, floor in cases():
        total = best_ns_per_call(loop)
        base = best_ns_per_call(floor)
        print(f"{name:<44} {total:>9.1f} {total - base:>18.1f}")
    for workers in (1, 2):
        name = f"core BucketTable.consume, 1 key, {workers} procs"
        print(f"{name:<44} {contended(workers):>9.1f} {'(wall / decisions)':>18}")


if __name__ == "__main__":
    main()
