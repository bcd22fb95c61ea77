"""What the figures were measured on, recorded with them: figures without the machine, the
versions and the load on the box at the time cannot be compared with anything."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastgw._version import __version__


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    return list(os.getloadavg())


def _version(get: Callable[[], str]) -> str | None:
    """A tool's version, None when it is not installed (a Locust run needs no wrk)."""
    try:
        return get()
    except (RuntimeError, OSError):
        return None


def describe(tools: Mapping[str, Callable[[], str]] = {}) -> dict[str, Any]:  # noqa: B006 (read only)
    """CPU, memory, governor, kernel, Python and fastgw, plus the version of each of `tools`
    (name -> a function returning it; None when the tool is missing)."""
    mem_kib = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal:")), 0
    )
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").strip() or None
    return {
        "cpu_model": cpu_model(),
        "cpus_online": os.cpu_count(),
        "cpus_usable": sorted(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpufreq_governor": governor,
        "kernel": f"{platform.system()} {platform.release()} {platform.version()}",
        "python": sys.version.split()[0],
        "fastgw": __version__,
        **{name: _version(get) for name, get in tools.items()},
    }
