"""Active health checks: HTTP probes of every checked target, run once per host by a process the
master forks for each worker generation, never on a request path.

Each target has its own probe loop. Probes start `interval` apart, give or take a random `jitter`
so that targets (and hosts) do not probe in lockstep. A probe is a `GET path` on a new connection
with `Connection: close`; it succeeds when the status line arrives within `timeout` and its status
is in `expect`. A target's state moves from healthy to unhealthy after `unhealthy_after`
consecutive failures and back after `healthy_after` consecutive successes; a target with no state
yet (new, or whose check changed) takes the verdict of its first probe, which comes within
`jitter` of the checker starting. Results go to the generation's shared health table, where the
workers read them.
"""
from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastgw.config.model import HealthCheck
from fastgw.log import process_log
from fastgw.tls import upstream_context, upstream_server_hostname
from fastgw.upstream.shared import (
    HEALTHY,
    STATE_NAMES,
    UNHEALTHY,
    UNKNOWN,
    HealthEntry,
    HealthRecord,
    HealthTable,
    UpstreamShared,
)

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])[ \r\n]")
_MAX_HEAD = 16 * 1024
_DRAIN = 64 * 1024

Probe = Callable[[HealthEntry], Awaitable[int]]


class HealthMachine:
    """The threshold logic of one target, kept apart from the I/O so it can be tested with any
    sequence of results."""

    __slots__ = ("check", "record")

    def __init__(self, check: HealthCheck, record: HealthRecord) -> None:
        self.check = check
        self.record = record

    def observe(self, ok: bool, status: int, wall: float) -> bool:
        """Takes one probe result; True when the state changed."""
        r = self.record
        successes = r.successes + 1 if ok else 0
        failures = 0 if ok else r.failures + 1
        state = r.state
        if state == UNKNOWN:
            state = HEALTHY if ok else UNHEALTHY
        elif state == HEALTHY and failures >= self.check.unhealthy_after:
            state = UNHEALTHY
        elif state == UNHEALTHY and successes >= self.check.healthy_after:
            state = HEALTHY
        changed = state != r.state
        self.record = HealthRecord(
            state, successes, failures, status, r.probes + 1, wall if changed else r.changed_at, wall
        )
        return changed


def expected(check: HealthCheck, status: int) -> bool:
    return any(low <= status <= high for low, high in check.expect)


async def http_probe(entry: HealthEntry) -> int:
    """The status of one probe's final response; raises OSError, TimeoutError or ValueError when
    there is none. The caller bounds the time."""
    tls: dict[str, Any] = {}
    if entry.tls is not None:
        name = upstream_server_hostname(entry.tls, entry.host_header, entry.address.host)
        tls = {"ssl": upstream_context(entry.tls), "server_hostname": name}
    reader, writer = await asyncio.open_connection(entry.address.host, entry.address.port, limit=_MAX_HEAD, **tls)
    try:
        host = entry.host_header or str(entry.address)
        writer.write(
            f"GET {entry.check.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fastgw-health-check\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            match = _STATUS_LINE.match(head)
            if match is None:
                raise ValueError(f"not an HTTP/1.x response: {head[:40]!r}")
            status = int(match.group(1))
            if status >= 200 or status == 101:
                break
        try:
            # Read what is left (the server closes after it) so the close is a FIN, not an RST.
            async with asyncio.timeout(0.05):
                left = _DRAIN
                while left > 0 and (data := await reader.read(left)):
                    left -= len(data)
        except (OSError, TimeoutError):
            pass
        return status
    except asyncio.IncompleteReadError as exc:
        raise ValueError("connection closed before a complete response head") from exc
    except asyncio.LimitOverrunError as exc:
        raise ValueError("response head too large") from exc
    finally:
        writer.transport.abort()


class HealthChecker:
    def __init__(
        self,
        entries: list[HealthEntry],
        table: HealthTable,
        *,
        probe: Probe = http_probe,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        log: Callable[[str], None] = process_log,
    ) -> None:
        self.entries = entries
        self.table = table
        self.probe = probe
        self.uniform = (rng or random.Random()).uniform
        self.wall = wall
        self.log = log

    async def run(self) -> None:
        await asyncio.gather(*(self._watch(entry) for entry in self.entries))

    def first_delay(self, entry: HealthEntry) -> float:
        """A target without a state is probed within `jitter`; one that kept its state over a
        reload at a random point of its interval, so probes stay spread out."""
        check = entry.check
        if self.table.state(entry.index) == UNKNOWN:
            return self.uniform(0.0, check.jitter)
        return self.uniform(0.0, check.interval)

    def next_delay(self, check: HealthCheck) -> float:
        return check.interval + self.uniform(-check.jitter, check.jitter)

    async def _watch(self, entry: HealthEntry) -> None:
        loop = asyncio.get_running_loop()
        check = entry.check
        machine = HealthMachine(check, self.table.read(entry.index))
        due = loop.time() + self.first_delay(entry)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            started = loop.time()
            await self.check_once(entry, machine)
            due = started + self.next_delay(check)

    async def check_once(self, entry: HealthEntry, machine: HealthMachine) -> None:
        check = entry.check
        why = ""
        try:
            async with asyncio.timeout(check.timeout):
                status = await self.probe(entry)
            ok = expected(check, status)
            if not ok:
                why = f"status {status}"
        except TimeoutError:
            status, ok, why = 0, False, f"no response within {check.timeout:g}s"
        except (OSError, ValueError) as exc:
            status, ok = 0, False
            why = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
        if machine.observe(ok, status, self.wall()):
            state = STATE_NAMES[machine.record.state]
            reason = f" ({why})" if why and machine.record.state == UNHEALTHY else ""
            self.log(f"health check: upstream {entry.upstream} target {entry.address} is {state}{reason}")
        self.table.write(entry.index, machine.record)


async def run_checker(shared: UpstreamShared) -> None:
    """The health checker process's work (`fastgw.server.children` runs it in the process the
    master forks for the generation, and stops it)."""
    assert shared.health is not None
    await HealthChecker(shared.entries, shared.health).run()
