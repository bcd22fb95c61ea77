"""Listen sockets, created by the master and inherited by workers.

One SO_REUSEPORT socket per worker slot: the kernel spreads connections over the slots, and since
the master keeps every socket open, a socket's accept queue survives its worker being replaced.

SO_REUSEPORT also lets any other process of the same user join the port, and the kernel would then
split connections between the two silently (a second `fastgw run` with the same `listen`, say).
So before the master's first socket on an address, `probe` binds a plain socket there: it fails
exactly when some other socket listens on an overlapping address, and the error names its holder.
"""
from __future__ import annotations

import errno
import os
import socket

from fastgw.config.model import Address
from fastgw.server.procinfo import describe_holders, holders

BACKLOG = 2048


class ListenError(OSError):
    """An address the gateway cannot listen on; the message says why in words (who holds it)."""

    def __str__(self) -> str:
        return str(self.strerror)


def _explain(address: Address, exc: OSError) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        why = f"address already in use by {describe_holders(address)}"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = "no interface of this host has that address"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    elif isinstance(exc, socket.gaierror):
        why = f"cannot resolve host {address.host!r} ({exc.strerror})"
    else:
        why = exc.strerror or str(exc)
    return ListenError(exc.errno or 0, f"cannot listen on {address}: {why}")


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address.host else socket.AF_INET


def probe(address: Address) -> None:
    """Raises ListenError when another socket listens on `address` (or an address overlapping
    it); call it only for addresses this process does not listen on yet."""
    try:
        with socket.socket(_family(address), socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.host, address.port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            found = holders(address)
            if found and all(h.pid == os.getpid() for h in found):
                return  # our own socket on an overlapping address: reuseport lets both listen
        raise _explain(address, exc) from None


def make_listener(address: Address, backlog: int = BACKLOG) -> socket.socket:
    try:
        return _make_listener(address, backlog)
    except ListenError:
        raise
    except OSError as exc:
        raise _explain(address, exc) from None


def _make_listener(address: Address, backlog: int) -> socket.socket:
    family = _family(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
        sock.setblocking(False)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def make_plain_listener(address: Address, backlog: int = 64) -> socket.socket:
    """A single non-reuseport socket, for the master's own admin listener."""
    family = _family(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise _explain(address, exc) from None
    except BaseException:
        sock.close()
        raise
    return sock
