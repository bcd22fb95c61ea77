"""The open-file limit (issue 14): the master raises its soft RLIMIT_NOFILE to the hard limit
before forking, so a worker can hold tens of thousands of connections without the user raising
it first, logs what it got, and warns when that is low. Started here with a low soft limit
(and a low hard one), as a shell with `ulimit -n 1024` would start it."""

from __future__ import annotations

import re
import resource
from collections.abc import Callable
from pathlib import Path

import pytest

from fastgw.server.fdlimit import CLIENTS_WANTED, RESERVED
from tests.support.procs import Backend, Gateway, gateway_config

pytestmark = pytest.mark.e2e


def limits(soft: int, hard: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return preexec


def open_files(pid: int) -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of a running process, as the kernel reports it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


def test_the_soft_limit_is_raised_to_the_hard_one_and_workers_inherit_it(backend: Backend, tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with Gateway(gateway_config(backend.port, workers=2), tmp_path, preexec=limits(1024, hard)) as g:
        for pid in (g.master_pid, *g.workers):
            soft_now, hard_now = open_files(pid)
            assert soft_now == hard_now >= hard, (pid, soft_now, hard_now)
        g.wait_line(rf"fastgw: open-file limit {soft_now} \(raised from 1024\): a worker holds about "
                    rf"{(soft_now - RESERVED) // 2:,} client connections each with an upstream connection$")


def test_a_low_hard_limit_is_warned_about(backend: Backend, tmp_path: Path) -> None:
    config = gateway_config(backend.port, workers=1, upstreams={"backend": {"max_connections": 100}})
    with Gateway(config, tmp_path, preexec=limits(512, 4096)) as g:
        soft_now, _ = open_files(g.workers[0])
        clients = soft_now - RESERVED - 100
        line = g.wait_line(r"fastgw: open-file limit (\d+) \(raised from 512\): a worker holds about ([\d,]+) client "
                           r"connections besides at most 100 upstream connections \(max_connections\)$")
        assert int(line.group(1)) == soft_now and line.group(2) == f"{clients:,}"
        warned = any(re.search(r"fastgw: warning: the open-file limit \d+ .* is low", x) for x in g.lines)
        # Unprivileged (the usual case), the hard limit stays 4096 and the warning says so; a
        # process that may raise its hard limit (CAP_SYS_RESOURCE) raises it and has no need to.
        assert warned == (clients < CLIENTS_WANTED)
        if soft_now == 4096:
            g.wait_line(r"fastgw: warning: the open-file limit 4096 is the most this user may have \(the hard "
                        r"limit\), and it is low: past about 3,932 client connections per worker, new connections "
                        r"fail \(EMFILE\)\. Raise the hard limit: systemd LimitNOFILE=1048576")
