"""Checks of a valid config against the host it is about to run on: the directories of the files
the gateway writes, and the hosts of the addresses it listens on.

`fastgw check`, `fastgw run` and a reload in the master run them (`load(path, host_checks=True)`),
so that what would otherwise fail after the fork, or as a traceback, is reported before anything
starts, as a config problem with its line. They answer for this host and this user: the same file
may be fine where the directories exist, which is why `fastgw reload` does not run them itself
and leaves them to the master.
"""

from __future__ import annotations

import errno
import os
import pwd
import socket

from .model import Address, Config
from .report import Report

__all__ = ["check_host"]


def check_host(report: Report, config: Config) -> None:
    """Records a problem for every file the gateway could not write and every listen or admin
    address it could not bind on this host."""
    if config.pidfile is not None:
        _writable(report, ("pidfile",), config.pidfile, "the pidfile", replaced=True)
    log = config.access_log.path
    if log is not None and log not in ("stdout", "stderr"):
        _writable(report, ("access_log", "path"), log, "the access log", replaced=False)
    for index, listener in enumerate(config.listen):
        _bindable(report, ("listen", index, "address"), listener.address)
    if config.admin is not None:
        _bindable(report, ("admin", "address"), config.admin.address)


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _writable(report: Report, path: tuple[str | int, ...], file: str, what: str, *, replaced: bool) -> None:
    """`file` can be created or appended to (`replaced`: written anew through a temporary file
    in its directory, so only the directory matters)."""
    directory = os.path.dirname(file) or "."
    if not os.path.exists(directory):
        report.error(path, f"directory {directory} does not exist (for {what}, {file})")
    elif not os.path.isdir(directory):
        report.error(path, f"{directory} is not a directory (for {what}, {file})")
    elif os.path.isdir(file):
        report.error(path, f"{file} is a directory, not a file")
    elif os.path.exists(file) and not replaced:
        if not os.access(file, os.W_OK):
            report.error(path, f"{file} is not writable by this user, {_user()}")
    elif not os.access(directory, os.W_OK | os.X_OK):
        report.error(path, f"directory {directory} is not writable by this user, {_user()} (for {what})")


def _bindable(report: Report, path: tuple[str | int, ...], address: Address) -> None:
    """The host resolves, and to addresses of this machine (a bind on port 0 tells, without
    touching the port itself, which a running gateway may hold)."""
    # The family the gateway binds with (fastgw.server.sockets): IPv6 for IPv6 literals only.
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(address.host, None, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        report.error(path, f"cannot resolve host {address.host!r}: {exc.strerror}")
        return
    for _, _, _, _, sockaddr in infos:
        ip = str(sockaddr[0])
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((ip, 0, *sockaddr[2:]))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                report.error(path, f"{ip} is not an address of this host")
            elif exc.errno == errno.EAFNOSUPPORT:
                report.error(path, f"{ip}: this host has no IPv6")
            else:
                report.error(path, f"cannot bind {ip}: {exc.strerror}")
            return
