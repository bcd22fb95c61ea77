"""CPU time spent by a process tree (a proxy's master and all its workers), from /proc.

Why /proc and not getrusage: the proxy is not our child in a way rusage can see while it runs,
and a per-request cost needs the time of exactly the proxy's processes during one wrk run.

The tree's total is the sum over its live processes of utime+stime+cutime+cstime. cutime/cstime
hold the times of children a process has reaped, so a worker that dies and is reaped between two
samples moves its time from its own fields into its parent's, and the total stays continuous; a
worker born between the samples is counted from zero, which is right since all of its time falls
inside the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    #: utime + stime + cutime + cstime, in clock ticks.
    ticks: int


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name is in parentheses and may itself contain
    spaces and parentheses, so the fields are counted from the last `)`."""
    pid = int(text[: text.index(" (")])
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    return ProcStat(pid=pid, ppid=int(fields[1]), ticks=sum(int(f) for f in fields[11:15]))


def _all_stats(proc: Path) -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # the process exited while we walked /proc
    return stats


def tree(root: int, stats: dict[int, ProcStat]) -> list[ProcStat]:
    """`root` and all its live descendants, found by walking parent links (which works on every
    kernel, unlike /proc/<pid>/task/<tid>/children)."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    out: list[ProcStat] = []
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        out.append(stats[pid])
        todo.extend(children.get(pid, ()))
    return out


def tree_ticks(root: int, proc: Path = Path("/proc")) -> int:
    return sum(st.ticks for st in tree(root, _all_stats(proc)))


def tree_pids(root: int, proc: Path = Path("/proc")) -> list[int]:
    return [st.pid for st in tree(root, _all_stats(proc))]


def us_per_request(ticks_before: int, ticks_after: int, requests: int, clk_tck: int = CLK_TCK) -> float | None:
    """CPU microseconds per request; None when there were no requests to share it over."""
    if requests <= 0:
        return None
    return (ticks_after - ticks_before) * 1_000_000 / clk_tck / requests
