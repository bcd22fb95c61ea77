"""What the operating system says about processes: process titles, whether a pid is a fastgw
master, and which process holds a listen address.

Linux only, read from /proc; every function degrades to "unknown" (None, empty) when /proc does
not tell, so that a message loses detail but never the command its correctness.
"""
from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

import setproctitle

from fastgw.config.model import Address

MASTER_TITLE = "fastgw: master"
"""Prefix of the master's process title; `is_fastgw_master` recognises a master by it."""

_LISTEN = "0A"
"""TCP_LISTEN in the `st` column of /proc/net/tcp."""
_MAX_COMMAND = 200


def set_title(title: str) -> None:
    """The process title `ps` and /proc/PID/cmdline show (also the 15-character `comm`)."""
    setproctitle.setproctitle(title)


def command_of(pid: int) -> str | None:
    """The command line of `pid` (its process title once set), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    words = [w.decode("utf-8", "replace") for w in raw.rstrip(b"\0").split(b"\0")]
    text = " ".join(" ".join(words).split())  # one line, whatever the arguments hold
    if len(text) > _MAX_COMMAND:
        text = text[: _MAX_COMMAND - 3] + "..."
    return text or None


def is_running(pid: int) -> bool:
    """Whether `pid` runs; an exited process its parent has not reaped yet (a zombie) does not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def is_fastgw_master(pid: int) -> bool:
    """Whether `pid` is a running fastgw master: its title starts with `fastgw: master` (set as
    the first thing `fastgw run` does, before it writes its pidfile)."""
    if pid <= 0 or not is_running(pid):
        return False
    command = command_of(pid)
    return command is not None and command.startswith(MASTER_TITLE)


@dataclass(frozen=True, slots=True)
class Holder:
    """A process with a socket listening on an address; `command` is None when unreadable."""

    pid: int
    command: str | None

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})" if self.command else f"pid {self.pid}"


def listening_inodes(address: Address) -> set[int]:
    """Inodes of the sockets that listen on `address` or on a wildcard address covering it (or,
    for a wildcard `address`, on any address of its port)."""
    try:
        wanted = {ipaddress.ip_address(ip) for ip in _resolve(address)}
    except OSError:
        return set()
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10 or cols[3] != _LISTEN:
                continue
            hex_ip, _, hex_port = cols[1].partition(":")
            if int(hex_port, 16) != address.port:
                continue
            ip = _proc_ip(hex_ip)
            if any(_covers(ip, w) or _covers(w, ip) for w in wanted):
                inodes.add(int(cols[9]))
    return inodes


def holders(address: Address, *, exclude_pid: int | None = None) -> list[Holder]:
    """The processes that listen on `address` (see `listening_inodes`), found through their file
    descriptors; processes of other users stay invisible to an unprivileged caller."""
    inodes = listening_inodes(address)
    if not inodes:
        return []
    links = {f"socket:[{inode}]" for inode in inodes}
    found: list[Holder] = []
    try:
        pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        return []
    for pid in pids:
        if pid == exclude_pid:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in links:
                    found.append(Holder(pid, command_of(pid)))
                    break
            except OSError:
                continue
    return found


def describe_holders(address: Address) -> str:
    """`pid 4242 (fastgw: master ...)`, several joined by commas, or a sentence saying the
    holder could not be identified."""
    found = holders(address, exclude_pid=os.getpid())
    pids = {h.pid for h in found}
    # A master's workers inherit its sockets: name the master only.
    found = [h for h in found if _parent_of(h.pid) not in pids]
    if found:
        shown = ", ".join(str(h) for h in found[:3])
        return shown + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    if listening_inodes(address):
        return "a process this user cannot see (another user's, or in another container)"
    return "another socket (none listening now: it may be one being closed)"


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _resolve(address: Address) -> list[str]:
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return sorted({str(info[4][0]) for info in infos})


def _proc_ip(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address column of /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def _covers(
    listener: ipaddress.IPv4Address | ipaddress.IPv6Address, other: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> bool:
    """Whether a socket listening on `listener` takes connections to `other`. A `::` listener is
    counted as dual-stack (whether it is V6ONLY is not in /proc)."""
    if listener == other:
        return True
    if listener.is_unspecified:
        return listener.version == other.version or listener.version == 6
    if isinstance(listener, ipaddress.IPv6Address) and listener.ipv4_mapped is not None:
        return listener.ipv4_mapped == other
    return False
