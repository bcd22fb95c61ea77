"""A fastgw under test, started as `fastgw run -c FILE` in its own process group, following the
`fastgw run` contract: the master prints `fastgw: master <pid> ready: generation N, workers
<pid>,...` on stderr once every worker of generation N listens; SIGTERM stops it gracefully."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from fastgw.loadtest.procs import Server, taskset

READY = re.compile(r"fastgw: master (\d+) ready: generation (\d+), workers ([\d,]+)")
READY_TIMEOUT_S = 30.0


def ready_pattern(generation: int) -> re.Pattern[str]:
    return re.compile(rf"fastgw: master (\d+) ready: generation {generation}, workers ([\d,]+)")


def start(
    config: Path, log: Path, cpus: Sequence[int] | None = None, timeout: float = READY_TIMEOUT_S, name: str = "fastgw"
) -> Server:
    """Started and serving generation 1, or ServerError with the end of its log."""
    argv = taskset(cpus, [sys.executable, "-m", "fastgw", "run", "-c", str(config)])
    server = Server(name, argv, log)
    server.wait_line(ready_pattern(1), timeout)
    return server
