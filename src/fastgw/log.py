"""Logging: the access log's file handling and the process log.

Access-log records are rendered and buffered in C (`fastgw._proxy.AccessLog`) and flushed by the
worker's sweeper every tick or when the buffer grows, so a request costs no system call.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from fastgw._proxy import AccessLog as CoreAccessLog
from fastgw._proxy import WallClock
from fastgw.config.model import AccessLog


def _journal_stderr() -> bool:
    """Whether stderr is systemd's journal, which stamps every line itself: systemd sets
    JOURNAL_STREAM to the `DEVICE:INODE` of the stream it connected."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


_STAMP = not _journal_stderr()


def timestamp(wall: float) -> str:
    """`2026-12-05T01:18:52.749Z`: UTC, milliseconds, as in the access log."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + ".%03dZ" % (wall % 1 * 1000)


def process_log(message: str) -> None:
    """The master's, workers' and checker's own messages on stderr, one line each (a message of
    several lines gives several): `TIMESTAMP fastgw: ...`, the format tests and operators rely on;
    without the timestamp when stderr is the journal, which has its own."""
    prefix = f"{timestamp(time.time())} fastgw: " if _STAMP else "fastgw: "
    sys.stderr.write("".join(f"{prefix}{line}\n" for line in message.split("\n")))
    sys.stderr.flush()


class AccessLogWriter:
    """Owns the access log's file descriptor (open, reopen on USR1); the records themselves are
    rendered, stamped (each with its own time, from `clock`) and buffered by the compiled
    `AccessLog`."""

    __slots__ = ("path", "core")

    def __init__(self, config: AccessLog, clock: WallClock | None = None) -> None:
        self.path = config.path
        self.core = CoreAccessLog(self._open(), config.format, clock)
        self.core.on_error = self._write_failed

    def _open(self) -> int:
        path = self.path
        if path is None:
            return -1
        if path == "stdout":
            return 1
        if path == "stderr":
            return 2
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def reopen(self) -> None:
        """USR1 (logrotate): write what is buffered to the old file, then open the path anew."""
        self.core.flush()
        old = self.core.fd
        fd = self._open()
        self.core.set_fd(fd)
        if old > 2 and old != fd:
            os.close(old)

    def tick(self) -> None:
        """Every sweeper tick: write what is buffered."""
        self.core.tick()

    def flush(self) -> None:
        self.core.flush()

    @staticmethod
    def _write_failed(err: int) -> None:
        process_log(f"access log write failed: {os.strerror(err)}")


def log_exception(where: str, exc: BaseException | Any) -> None:
    import traceback

    text = "".join(traceback.format_exception(exc)) if isinstance(exc, BaseException) else repr(exc)
    process_log(f"internal error in {where}: {text.rstrip()}")
