"""Rate-limit decision cost: `python -m bench.micro.bench_bucket`.

Times 1e6 decisions per case, best of 3 runs, on the C clock (CLOCK_MONOTONIC read from C, as in
the gateway). Every call from Python pays the interpreter's call overhead, so each row also shows
the cost net of a "call floor": the same loop calling a builtin C method that does next to
nothing with the same number of arguments (`int.bit_length`, `dict.get`). The net figure is close
to what a caller in Cython pays. The last column is that cost measured directly: the same loops
written in Cython against `cimport fastgw._core` (compiled on the fly into a temporary
directory; skipped if that fails), which is how the gateway's hot path calls the core.
"""

from __future__ import annotations

import array
import importlib.util
import mmap
import os
import sys
import tempfile
import time
from collections.abc import Callable
from types import ModuleType

import fastgw
import fastgw._core as core
import fastgw._pycore.bucket as pycore

N = 1_000_000
REPEAT = 5
DISTINCT = 10_000

CYTHON_LOOPS = """
# cython: language_level=3, boundscheck=False, wraparound=False
from fastgw._core cimport BucketTable, Limit, TokenBucket
from libc.stdint cimport uint64_t

def local(TokenBucket bucket, long n):
    cdef long i
    for i in range(n):
        bucket.consume(1)

def table_hot(BucketTable table, Limit limit, uint64_t key, long n):
    cdef long i
    for i in range(n):
        table.consume(key, limit, 1)

def table_keys(BucketTable table, Limit limit, const uint64_t[::1] keys, long n):
    cdef long i
    cdef Py_ssize_t m = keys.shape[0]
    for i in range(n):
        table.consume(keys[i % m], limit, 1)
"""


def build_cython_loops(workdir: str) -> ModuleType:
    """Compile CYTHON_LOOPS against the installed core's .pxd files, as a cimporting user would."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    src = os.path.dirname(os.path.dirname(os.path.abspath(fastgw.__file__)))
    pyx = os.path.join(workdir, "bench_bucket_loops.pyx")
    with open(pyx, "w") as f:
        f.write(CYTHON_LOOPS)
    ext = Extension(
        "bench_bucket_loops", [pyx], extra_compile_args=["-O2"], include_dirs=[os.path.join(src, "fastgw", "_core_src")]
    )
    dist = Distribution({"ext_modules": cythonize([ext], include_path=[src], quiet=True)})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = cmd.build_temp = workdir
    cmd.ensure_finalized()
    cmd.run()
    spec = importlib.util.spec_from_file_location("bench_bucket_loops", cmd.get_ext_fullpath("bench_bucket_loops"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_ns_per_call(loop: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter_ns()
        loop()
        best = min(best, (time.perf_counter_ns() - start) / N)
    return best


def cases(
    loops: ModuleType | None,
) -> list[tuple[str, Callable[[], None], Callable[[], None], Callable[[], None] | None]]:
    """(name, timed loop, its call-floor loop with the same shape, the loop in Cython)."""
    nothing: dict = {}
    floor0 = (0).bit_length
    floor2 = nothing.get
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
            floor0()

    def loop_hot() -> None:
        take = table.consume
        for _ in range(N):
            take(hot, limit)

    def floor_hot() -> None:
        for _ in range(N):
            floor2(hot, limit)

    def loop_spread() -> None:
        take = table.consume
        for k in keys:
            take(k, limit)

    def floor_spread() -> None:
        for k in keys:
            floor2(k, limit)

    def loop_hash() -> None:
        key_hash = table.key_hash
        for k in ids:
            key_hash(b"api", k)

    def floor_hash() -> None:
        for k in ids:
            floor2(b"api", k)

    def loop_model() -> None:
        take = model.consume
        for _ in range(N):
            take()

    def loop_model_table() -> None:
        take = model_table.consume
        for k in keys:
            take(k, model_limit)

    c_local = c_hot = c_spread = None
    if loops is not None:
        c_keys = array.array("Q", keys[:DISTINCT])

        def c_local() -> None:
            loops.local(local, N)

        def c_hot() -> None:
            loops.table_hot(table, limit, hot, N)

        def c_spread() -> None:
            loops.table_keys(table, limit, c_keys, N)

    return [
        ("core TokenBucket.consume()", loop_local, floor_local, c_local),
        ("core BucketTable.consume, 1 hot key", loop_hot, floor_hot, c_hot),
        (f"core BucketTable.consume, {DISTINCT} keys", loop_spread, floor_spread, c_spread),
        ("core BucketTable.key_hash(limit, ip)", loop_hash, floor_hash, None),
        ("pycore TokenBucket.consume()", loop_model, floor_local, None),
        (f"pycore BucketTable.consume, {DISTINCT} keys", loop_model_table, floor_spread, None),
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
    with tempfile.TemporaryDirectory(prefix="bench_bucket_") as workdir:
        try:
            loops: ModuleType | None = build_cython_loops(workdir)
        except Exception as exc:  # noqa: BLE001 - any build failure: the other columns stand
            print(f"Cython loops not built ({exc!r}): that column is skipped", file=sys.stderr)
            loops = None
        print(f"{N:,} decisions per case, best of {REPEAT}; CPUs: {os.cpu_count()}")
        print(f"{'case (ns per decision)':<44} {'Python call':>11} {'net of floor':>12} {'from Cython':>11}")
        for name, loop, floor, c_loop in cases(loops):
            total = best_ns_per_call(loop)
            base = best_ns_per_call(floor)
            direct = f"{best_ns_per_call(c_loop):>11.1f}" if c_loop else f"{'-':>11}"
            print(f"{name:<44} {total:>11.1f} {total - base:>12.1f} {direct}")
    for workers in (1, 2):
        name = f"core BucketTable.consume, 1 key, {workers} procs"
        print(f"{name:<44} {contended(workers):>11.1f}   (wall time / decisions of all procs)")


if __name__ == "__main__":
    main()
