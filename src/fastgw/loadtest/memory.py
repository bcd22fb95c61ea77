"""Memory of a process tree (a proxy's master and its workers): resident size now, and its peak
over an interval such as one wrk run.

The tree and each process's RSS come from psutil. The peak comes from the kernel: each process's
high-water mark (VmHWM in /proc/PID/status), reset to its current RSS at the start of the interval
by writing `5` to /proc/PID/clear_refs (Linux ≥ 4.0, own processes), so a spike that lasts
microseconds (a whole body buffered and sent at once) is not missed as a sampler would miss it.
The tree's peak is the sum of its processes' peaks: exact for one busy worker beside an idle
master, an upper bound when several workers peak at different moments. Where the mark cannot be
reset (another kernel, another user's process), a thread samples the tree's RSS every 20 ms and
the peak is the largest sample; both are reported, with which one `peak` is.

RSS counts a page shared by a master and its forked workers once per process: compare the
change of RSS between two moments (as the curves do), not the totals of two servers.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_EVERY_S = 0.02


def tree(root: int) -> list[psutil.Process]:
    """`root` and its live descendants; empty when `root` is gone."""
    try:
        proc = psutil.Process(root)
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(root: int) -> int:
    """Bytes resident, summed over the tree."""
    total = 0
    for proc in tree(root):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


def _status_kib(pid: int, field: str, proc_dir: Path) -> int | None:
    try:
        for line in (proc_dir / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak(pid: int, proc_dir: Path = Path("/proc")) -> bool:
    """Reset the process's VmHWM to its current RSS; False when the kernel refuses."""
    try:
        (proc_dir / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_kib(pid: int, proc_dir: Path = Path("/proc")) -> int | None:
    return _status_kib(pid, "VmHWM", proc_dir)


@dataclass(frozen=True)
class Peak:
    #: RSS of the tree when the interval began.
    before: int
    #: The tree's peak RSS over the interval: from the high-water marks when every process's
    #: could be reset, else the largest sample.
    peak: int
    #: "hwm" or "sampled".
    method: str
    #: The largest RSS sample, taken every SAMPLE_EVERY_S seconds.
    sampled: int

    @property
    def growth(self) -> int:
        return self.peak - self.before

    def as_dict(self) -> dict[str, int | str]:
        return {
            "rss_before": self.before,
            "peak_rss": self.peak,
            "peak_method": self.method,
            "sampled_peak_rss": self.sampled,
            "growth": self.growth,
        }


class PeakWatch:
    """`with PeakWatch(pid) as w: ...` then `w.result`: the tree's RSS before and at its peak
    during the block. Processes born during the block (a respawned worker) count from their
    start; processes that exit during it are only in the samples."""

    def __init__(self, root: int, proc_dir: Path = Path("/proc")) -> None:
        self.root = root
        self.proc_dir = proc_dir
        self._stop = threading.Event()
        self._sampled = 0
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.result: Peak | None = None

    def _sample(self) -> None:
        while True:
            self._sampled = max(self._sampled, tree_rss(self.root))
            if self._stop.wait(SAMPLE_EVERY_S):
                return

    def __enter__(self) -> PeakWatch:
        self._pids = [p.pid for p in tree(self.root)]
        self._reset = all([reset_peak(pid, self.proc_dir) for pid in self._pids])
        self._before = tree_rss(self.root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        sampled = max(self._sampled, tree_rss(self.root))
        peaks = [peak_kib(p.pid, self.proc_dir) for p in tree(self.root)]
        if self._reset and peaks and all(k is not None for k in peaks):
            hwm = sum(k for k in peaks if k is not None) * 1024
            self.result = Peak(self._before, max(hwm, sampled), "hwm", sampled)
        else:
            self.result = Peak(self._before, sampled, "sampled", sampled)
