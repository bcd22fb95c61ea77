"""The open-file limit (RLIMIT_NOFILE), raised by the master before it forks so that workers and
helpers inherit it.

Every client connection is a file descriptor, and so is every upstream connection: a worker
proxying 10,000 keep-alive clients holds up to 20,000. Linux starts a process with a soft limit of
1024 (for the sake of select(), which fastgw never uses) under a hard limit the administrator sets
(systemd's default 524288, Docker's 1048576); past the soft limit, accepts and upstream connects
fail with EMFILE. So, as Go's runtime and HAProxy do, the master raises the soft limit to the hard
one, and as root the hard one too (nginx's `worker_rlimit_nofile`), up to CEILING; the load tools
(fastgw.loadtest, bench/) use the same function for themselves and the servers they start.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

from fastgw.config.model import Config

CEILING = 1 << 20
"""The most the master asks for (HAProxy's default `fd-hard-limit`): a container's hard limit
may be a billion, and no worker needs more than a million descriptors."""
RESERVED = 64
"""Descriptors a worker holds besides connections (16 with one listener: listen sockets, logs,
shared memory, pipes, the event loop's own), with room for more listeners."""
CLIENTS_WANTED = 10_000
"""Client connections per worker below which the master warns that the limit is low."""


def raise_nofile(needed: int) -> int:
    """Raise this process's open-file limit to at least `needed` where it can (its children
    inherit it): the soft limit up to the hard one, and the hard one too when privileged (up to
    fs.nr_open). Returns the soft limit now in force, which may still be below `needed`; never
    lowers it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    want = needed
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            nr_open = needed
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, nr_open), min(needed, nr_open)))
            return min(needed, nr_open)
        except (ValueError, OSError):
            want = hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def upstream_cap(config: Config) -> int | None:
    """Upstream connections a worker holds at most: the sum of every target's `max_connections`,
    or None when some target has no cap."""
    total = 0
    for upstream in config.upstreams.values():
        if not upstream.max_connections:
            return None
        total += upstream.max_connections * len(upstream.targets)
    return total


def raise_for_gateway(config: Config) -> list[str]:
    """Raises the limit as far as it goes; the log lines saying what the workers get, with a
    warning when that holds fewer than CLIENTS_WANTED client connections per worker."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limit = raise_nofile(CEILING)
    cap = upstream_cap(config)
    if cap is None:
        clients = (limit - RESERVED) // 2
        how = "each with an upstream connection"
    else:
        clients = limit - RESERVED - cap
        how = f"besides at most {cap:,} upstream connections (max_connections)"
    raised = f"raised from {before}" if limit > before else "unchanged"
    lines = [f"open-file limit {limit} ({raised}): a worker holds about {max(clients, 0):,} client connections {how}"]
    if clients < CLIENTS_WANTED:
        lines.append(
            f"warning: the open-file limit {limit} is the most this user may have (the hard limit), and it is low: "
            f"past about {max(clients, 0):,} client connections per worker, new connections fail (EMFILE). "
            "Raise the hard limit: systemd LimitNOFILE=1048576, docker run --ulimit nofile=1048576:1048576, "
            "or nofile in /etc/security/limits.conf"
        )
    return lines
