"""Where each process of a case runs: which CPUs the proxy under test gets, which ones wrk and
the built-in backend share.

Why pin: on a small machine the proxy, the load generator and the backend fight over the same
cores, and the proxy's throughput then measures the scheduler as much as the proxy. Giving the
proxy its own cores (one per worker) and the rest to wrk + backend makes runs repeatable and
makes `direct` (wrk + backend alone on their cores) the ceiling of the same layout. When there are
not more CPUs than workers (2 workers on 2 cores), nothing can be isolated: the case runs
unpinned and is reported as oversubscribed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fastgw.loadtest.cpu import tree_pids
from fastgw.loadtest.procs import cpu_list, taskset

__all__ = ["Placement", "cpu_list", "plan", "set_tree_affinity", "taskset"]


@dataclass(frozen=True)
class Placement:
    #: CPUs of the proxy under test; None when unpinned.
    proxy: tuple[int, ...] | None
    #: CPUs shared by wrk and the built-in backend; None when unpinned.
    load: tuple[int, ...] | None
    #: wrk threads and built-in backend workers that fit the load CPUs.
    wrk_threads: int
    note: str

    @property
    def pinned(self) -> bool:
        return self.proxy is not None


def plan(cpus: Sequence[int], workers: int, pin: bool) -> Placement:
    cpus = sorted(cpus)
    spare = max(1, len(cpus) - workers)
    if not pin:
        return Placement(None, None, spare, f"unpinned by request ({len(cpus)} CPUs, {workers} proxy workers)")
    if len(cpus) <= workers:
        return Placement(
            None,
            None,
            spare,
            f"unpinned: {workers} proxy workers on {len(cpus)} CPUs leave none for wrk and the backend, "
            "so the machine is oversubscribed (proxy, wrk and backend share every CPU)",
        )
    proxy, load = tuple(cpus[:workers]), tuple(cpus[workers:])
    return Placement(
        proxy,
        load,
        len(load),
        f"proxy on CPU {cpu_list(proxy)}; wrk + backend on CPU {cpu_list(load)}",
    )


def set_tree_affinity(root: int, cpus: tuple[int, ...] | None, proc: Path = Path("/proc")) -> None:
    """Move every thread of every process of a running tree to `cpus` (None: all CPUs we may
    use). Lets one backend serve every case of a run, each case placing it differently;
    sched_setaffinity acts on a single thread, hence the walk over /proc/<pid>/task."""
    target = set(cpus) if cpus is not None else os.sched_getaffinity(0)
    for pid in tree_pids(root, proc):
        try:
            tids = [int(t) for t in os.listdir(proc / str(pid) / "task")]
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, target)
