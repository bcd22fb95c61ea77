"""Logging: the access log (one record per request, written in batches) and the process log.

The access log is buffered in memory and flushed by the worker's sweeper (every tick) or when the
buffer grows, so a request costs one list append, not a system call.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.config.model import AccessLog

if TYPE_CHECKING:
    from fastgw._core import Request
    from fastgw.http.protocol import ClientProtocol

_FLUSH_AT = 64 * 1024


def process_log(message: str) -> None:
    """The master's and workers' own messages, on stderr, one line each (the format tests and
    operators rely on: `fastgw: ...`)."""
    sys.stderr.write(f"fastgw: {message}\n")
    sys.stderr.flush()


class AccessLogWriter:
    __slots__ = ("path", "format", "fd", "buf", "size", "now_text")

    def __init__(self, config: AccessLog) -> None:
        self.path = config.path
        self.format = config.format
        self.fd = -1
        self.buf: list[bytes] = []
        self.size = 0
        self.now_text = ""
        self.open()

    def open(self) -> None:
        path = self.path
        if path is None:
            self.fd = -1
        elif path == "stdout":
            self.fd = 1
        elif path == "stderr":
            self.fd = 2
        else:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def reopen(self) -> None:
        """USR1 (logrotate): write what is buffered to the old file, then open the path anew."""
        self.flush()
        if self.fd > 2:
            os.close(self.fd)
        self.open()

    def tick(self, wall: float) -> None:
        self.now_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + ".%03dZ" % (wall % 1 * 1000)
        if self.buf:
            self.flush()

    def write(self, proto: ClientProtocol, req: Request, duration: float) -> None:
        if self.fd < 0:
            return
        if self.format == "json":
            line = orjson.dumps(
                {
                    "ts": self.now_text,
                    "remote": proto.peer.decode(),
                    "method": req.method.decode("latin-1"),
                    "uri": req.url.decode("latin-1"),
                    "status": req.status,
                    "bytes": req.sent,
                    "duration_ms": round(duration * 1000, 3),
                    "upstream": req.upstream,
                    "request_id": req.rid.decode("latin-1"),
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
        else:
            line = b'%s - - [%s] "%s %s HTTP/%s" %d %d "%s" "%s"\n' % (
                proto.peer,
                self.now_text.encode(),
                req.method,
                req.url,
                req.version.encode(),
                req.status,
                req.sent,
                req.referer or b"-",
                req.ua or b"-",
            )
        self.buf.append(line)
        self.size += len(line)
        if self.size > _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self.buf or self.fd < 0:
            return
        data = b"".join(self.buf)
        self.buf = []
        self.size = 0
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as exc:
                process_log(f"access log write failed: {exc}")
                return
            view = view[n:]


def log_exception(where: str, exc: BaseException | Any) -> None:
    import traceback

    text = "".join(traceback.format_exception(exc)) if isinstance(exc, BaseException) else repr(exc)
    process_log(f"internal error in {where}: {text.rstrip()}")
