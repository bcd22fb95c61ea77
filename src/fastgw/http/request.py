"""The per-request state shared by the client protocol and the upstream connection it is bound to.
One object per request, with slots; created in `on_message_begin`."""
from __future__ import annotations

from time import monotonic
from typing import Any


class Request:
    __slots__ = (
        "url", "method", "version", "path", "query", "headers", "host", "host_count", "cl",
        "chunked", "te", "expect", "xff", "rid_in", "conn_drop", "keep_alive", "upgrade",
        "nheaders", "head_size", "raw_head", "head_done", "body", "body_len", "body_done",
        "plan", "rid", "t0", "start", "status", "sent", "upstream", "pool", "resp_started", "resp_chunked",
        "resp_close", "resp_nobody", "req_sent", "attempts", "head", "continue_sent", "finished",
        "ua", "referer", "resp_chunked_up", "resp_cl_up", "resp_extra",
    )

    def __init__(self, now: float) -> None:
        self.url = b""
        self.method = b""
        self.version = ""
        self.path = b""
        self.query = b""
        self.headers: list[tuple[bytes, bytes, bytes]] = []
        self.host: bytes | None = None
        self.host_count = 0
        self.cl = -1
        self.chunked = False
        self.te: list[bytes] | None = None
        self.expect: bytes | None = None
        self.xff: list[bytes] | None = None
        self.rid_in: bytes | None = None
        self.conn_drop: set[bytes] | None = None
        self.keep_alive = True
        self.upgrade = False
        self.nheaders = 0
        self.head_size = 0
        self.raw_head = 0
        self.head_done = False
        self.body: list[bytes] | None = None
        self.body_len = 0
        self.body_done = False
        self.plan: Any = None
        self.rid = b""
        self.t0 = monotonic()
        self.start = now
        self.status = 0
        self.sent = 0
        self.upstream = ""
        self.pool: Any = None
        self.resp_started = False
        self.resp_chunked = False
        self.resp_close = False
        self.resp_nobody = False
        self.req_sent = False
        self.attempts = 0
        self.head = b""
        self.continue_sent = False
        self.finished = False
        self.ua: bytes | None = None
        self.referer: bytes | None = None
        self.resp_chunked_up = False
        self.resp_cl_up = False
        self.resp_extra = b""
        """Header lines request filters add to the response (e.g. RateLimit-*), rendered."""
