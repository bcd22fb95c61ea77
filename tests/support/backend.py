"""A real HTTP/1.1 backend for end-to-end tests: `python -m tests.support.backend --port 0`.

It prints `PORT <n>` on stdout once listening. One process serves every test; the behaviour is
chosen by the request path (see `_ROUTES`), and includes the broken upstream behaviours a gateway
must survive (resets, garbage, bad framing, unrequested 101, bytes after a response). Two paths
change behaviour on command, for tests of health checks and failover: `/healthz` answers the
status set by `/control/health/{code}`, and `/app` behaves as set by `/control/app/{mode}` (see
`_app`); `/stats` counts both. Responses
are written byte by byte as specified here, never through an HTTP library, so that a test knows
exactly what the gateway received. Requests are parsed by httptools (strict llhttp), so a request
the gateway should not have forwarded shows up in `/stats` either as a request (`requests` counts
heads, `completed` requests received in full) or as a parse error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl

import httptools
import uvloop

_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
_WRITE_PIECE = 64 * 1024
_MAX_GENERATED = 256 * 1024 * 1024

#: The bytes sent after a complete response by `/extra-bytes`: shaped like a second response so
#: that a gateway which relays them, or reuses the connection, hands the client a visible
#: `X-Smuggled` response.
EXTRA_BYTES = b"HTTP/1.1 200 OK\r\nX-Smuggled: 1\r\nContent-Length: 8\r\n\r\nsmuggled"
GARBAGE = b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n"


def body_bytes(n: int) -> bytes:
    """The deterministic body of `/bytes/{n}`, `/chunked/{n}/{k}` and `/close-delimited/{n}`."""
    return (_PATTERN * (n // len(_PATTERN) + 1))[:n]


@dataclass
class _Stats:
    connections: int = 0
    requests: int = 0
    completed: int = 0
    parse_errors: int = 0
    health_probes: int = 0
    app: int = 0
    app_posts: int = 0
    paths: dict[str, int] = field(default_factory=dict)
    """Request heads received per path under `/count/`: a test that must prove a request never
    reached the backend sends it to a path of its own there."""
    cache: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per path under `/cache/`: `requests` (every method), `conditional` (with If-None-Match or
    If-Modified-Since) and `not_modified` (answered 304)."""


@dataclass
class _Request:
    method: str = ""
    target: bytes = b""
    version: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body_length: int = 0
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    body: bytearray = field(default_factory=bytearray)
    """The body itself, kept only under `/bridge/` (the WebSocket bridge's calls), up to 2 MiB."""
    chunks: int = 0
    keep_alive: bool = True
    expect_continue: bool = False
    continue_sent: bool = False
    headers_done: bool = False
    answered: bool = False
    """Answered before its body was read (`/early/`): not answered again once complete."""

    @property
    def path(self) -> str:
        return self.target.split(b"?", 1)[0].decode("latin-1")

    @property
    def query(self) -> str:
        return self.target.partition(b"?")[2].decode("latin-1")


class _Reset(Exception):
    """Raised by a handler to end the connection with an RST instead of a FIN."""


class _Close(Exception):
    """Raised by a handler that has closed its response by closing the connection."""


class _Connection:
    """One client connection: parse requests (pipelined ones queue up) and answer them in order."""

    def __init__(self, server: Backend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.parser = httptools.HttpRequestParser(self)
        self.current: _Request | None = None
        self.done: deque[_Request] = deque()
        self.early: _Request | None = None
        self.head_request = False
        self.keep_alive = True
        self.version = "1.1"

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.current = _Request()

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        req = self.current
        (req.trailers if req.headers_done else req.headers).append((name, value))

    def on_headers_complete(self) -> None:
        req = self.current
        assert req is not None
        req.headers_done = True
        req.method = self.parser.get_method().decode("latin-1")
        req.version = self.parser.get_http_version()
        # after an upgrade request the parser stops, so the connection ends with its response
        req.keep_alive = self.parser.should_keep_alive() and not self.parser.should_upgrade()
        req.expect_continue = any(
            n.lower() == b"expect" and v.strip().lower() == b"100-continue" for n, v in req.headers
        )
        if not req.path.startswith("/stats"):
            self.server.stats.requests += 1
        if req.path.startswith("/count/"):
            paths = self.server.stats.paths
            paths[req.path] = paths.get(req.path, 0) + 1
        if req.path.startswith("/early/"):
            self.early = req

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body_length += len(body)
        self.current.sha256.update(body)
        if self.current.target.startswith(b"/bridge/") and len(self.current.body) < 2 * 1024 * 1024:
            self.current.body += body

    def on_chunk_header(self) -> None:
        assert self.current is not None
        self.current.chunks += 1

    def on_message_complete(self) -> None:
        assert self.current is not None
        if not self.current.path.startswith("/stats"):
            self.server.stats.completed += 1
        self.done.append(self.current)
        self.current = None

    # serving
    async def serve(self) -> None:
        try:
            await self._serve()
        except _Reset:
            self._reset()
            return
        except ConnectionError:
            self.writer.transport.abort()
            return
        except _Close:
            pass
        self.writer.close()

    async def _serve(self) -> None:
        while True:
            if self.early is not None:
                req, self.early = self.early, None
                await _early(self, req)
            while self.done:
                req = self.done.popleft()
                if not req.answered and not await self._respond(req):
                    return
            if self.current is not None and self.current.expect_continue and not self.current.continue_sent:
                self._send_continue(self.current)
            data = await self.reader.read(65536)
            if not data:
                return
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                pass  # the upgrade request is complete and not keep-alive: answered, then closed
            except httptools.HttpParserError as exc:
                self.server.stats.parse_errors += 1
                while self.done:
                    await self._respond(self.done.popleft())
                body = json.dumps({"backend_parse_error": str(exc)}).encode()
                self._write_head(400, [(b"Content-Type", b"application/json")], len(body), close=True)
                self.writer.write(body)
                return

    def _send_continue(self, req: _Request) -> None:
        self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        req.continue_sent = True

    async def _respond(self, req: _Request) -> bool:
        """Answer `req`; False when the connection must be closed afterwards."""
        if req.expect_continue and not req.continue_sent:
            self._send_continue(req)
        self.head_request = req.method == "HEAD"
        self.keep_alive = req.keep_alive
        self.version = req.version
        segments = req.path.strip("/").split("/")
        handler = _ROUTES.get(segments[0])
        if handler is None:
            await self.send(404, [], json.dumps({"no_such_path": req.path}).encode())
        else:
            try:
                await handler(self, req, segments[1:])
            except (ValueError, IndexError) as exc:
                await self.send(400, [], json.dumps({"bad_path_argument": str(exc)}).encode())
        await self.writer.drain()
        return self.keep_alive

    def _write_head(
        self, status: int, headers: list[tuple[bytes, bytes]], length: int | None, *, close: bool = False
    ) -> None:
        """Write a response head; `length` None means chunked, -1 means close-delimited."""
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b"Unknown"
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        out += [b"%s: %s\r\n" % (n, v) for n, v in headers]
        if length is None:
            out.append(b"Transfer-Encoding: chunked\r\n")
        elif length >= 0 and status not in (204, 304) and status >= 200:
            out.append(b"Content-Length: %d\r\n" % length)
        if close or length == -1 or not self.keep_alive:
            self.keep_alive = False
            out.append(b"Connection: close\r\n")
        elif self.version == "1.0":
            out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        self.writer.write(b"".join(out))

    async def send(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, content_type: bytes = b"application/json"
    ) -> None:
        if body:
            headers = [(b"Content-Type", content_type), *headers]
        self._write_head(status, headers, len(body))
        await self.write_body(body)

    async def write_body(self, data: bytes) -> None:
        if self.head_request:
            return
        for i in range(0, len(data), _WRITE_PIECE):
            self.writer.write(data[i : i + _WRITE_PIECE])
            await self.writer.drain()

    def _reset(self) -> None:
        """Close with RST: SO_LINGER with a zero timeout makes close() abort the connection."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Handler = Callable[[_Connection, _Request, list[str]], Awaitable[None]]


def _size(arg: str) -> int:
    n = int(arg)
    if not 0 <= n <= _MAX_GENERATED:
        raise ValueError(f"size out of range: {n}")
    return n


async def _echo(conn: _Connection, req: _Request, args: list[str]) -> None:
    body = {
        "method": req.method,
        "target": req.target.decode("latin-1"),
        "version": req.version,
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in req.headers],
        "trailers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in req.trailers],
        "body_length": req.body_length,
        "body_sha256": req.sha256.hexdigest(),
        "chunked": req.chunks > 0,
        "chunks": max(req.chunks - 1, 0),  # httptools reports the last (zero) chunk too
        "backend": conn.server.name,
    }
    await conn.send(200, [], json.dumps(body).encode())


async def _status(conn: _Connection, req: _Request, args: list[str]) -> None:
    code = int(args[0])
    if not 200 <= code <= 599:
        raise ValueError(f"status out of range: {code}")
    body = b"" if code in (204, 304) else json.dumps({"status": code}).encode()
    await conn.send(code, [], body)


async def _bytes(conn: _Connection, req: _Request, args: list[str]) -> None:
    await conn.send(200, [], body_bytes(_size(args[0])), content_type=b"application/octet-stream")


async def _chunked(conn: _Connection, req: _Request, args: list[str]) -> None:
    n, k = _size(args[0]), int(args[1])
    if not 1 <= k <= max(n, 1):
        raise ValueError(f"chunk count out of range: {k}")
    data = body_bytes(n)
    bounds = [n * i // k for i in range(k + 1)]
    conn._write_head(200, [(b"Content-Type", b"application/octet-stream")], None)
    for lo, hi in itertools.pairwise(bounds):
        await conn.write_body(b"%x\r\n%s\r\n" % (hi - lo, data[lo:hi]))
    await conn.write_body(b"0\r\n\r\n")


async def _close_delimited(conn: _Connection, req: _Request, args: list[str]) -> None:
    conn._write_head(200, [(b"Content-Type", b"application/octet-stream")], -1)
    await conn.write_body(body_bytes(_size(args[0])))


async def _early(conn: _Connection, req: _Request) -> None:
    """`/early/{status}/{then}`: answered as soon as the head is in, before the body is read (as
    a server refusing an upload does), with `{"early": status, "received": bytes of body read}`.
    Then, by `then`: `drain` reads the rest of the body and drops it, and the connection stays
    open; `linger` closes the way nginx or Go do (shuts down sending, reads and drops what comes
    until the peer closes, at most 30 s); `close` closes at once (the kernel resets the
    connection, as the upload was not read); `stall` stops reading for 30 s, then closes."""
    args = req.path.split("/")[2:]
    if len(args) != 2 or not args[0].isdigit() or not 200 <= int(args[0]) <= 599 \
            or args[1] not in ("drain", "linger", "close", "stall"):
        raise _Close
    status, then = int(args[0]), args[1]
    req.answered = True
    conn.keep_alive = then == "drain"
    body = json.dumps({"early": status, "received": req.body_length}).encode()
    conn._write_head(status, [(b"Content-Type", b"application/json")], len(body))
    conn.writer.write(body)
    await conn.writer.drain()
    if then == "drain":
        return
    if then == "linger":
        conn.writer.write_eof()
        try:
            async with asyncio.timeout(30):
                while await conn.reader.read(65536):
                    pass
        except TimeoutError:
            pass
    elif then == "stall":
        await asyncio.sleep(30)
    raise _Close


async def _sleep(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`/sleep/{ms}` and `/slow-head/{ms}`: nothing is sent before the delay ends."""
    ms = int(args[0])
    await asyncio.sleep(ms / 1000)
    await conn.send(200, [], json.dumps({"slept_ms": ms}).encode())


async def _slow_body(conn: _Connection, req: _Request, args: list[str]) -> None:
    ms = int(args[0])
    data = body_bytes(2048)
    conn._write_head(200, [(b"Content-Type", b"application/octet-stream")], len(data))
    await conn.write_body(data[:1024])
    await asyncio.sleep(ms / 1000)
    await conn.write_body(data[1024:])


async def _reset_before_head(conn: _Connection, req: _Request, args: list[str]) -> None:
    raise _Reset


async def _reset_mid_body(conn: _Connection, req: _Request, args: list[str]) -> None:
    data = body_bytes(4096)
    conn._write_head(200, [(b"Content-Type", b"application/octet-stream")], len(data))
    await conn.write_body(data[:1000])
    raise _Reset


async def _garbage(conn: _Connection, req: _Request, args: list[str]) -> None:
    conn.writer.write(GARBAGE)
    await conn.writer.drain()
    raise _Close


async def _bad_length(conn: _Connection, req: _Request, args: list[str]) -> None:
    conn._write_head(200, [(b"Content-Type", b"text/plain")], 100)
    conn.writer.write(b"only ten b")
    await conn.writer.drain()
    raise _Close


async def _early_hints(conn: _Connection, req: _Request, args: list[str]) -> None:
    conn.writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    await conn.send(200, [], json.dumps({"early_hints": True}).encode())


async def _unasked_continue(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`100 Continue` whether or not the client asked for it, then the response."""
    conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await conn.send(200, [], json.dumps({"unasked_continue": True}).encode())


async def _switch_protocols(conn: _Connection, req: _Request, args: list[str]) -> None:
    conn.writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: fastgw-test\r\n\r\n"
        b"bytes of another protocol"
    )
    await conn.writer.drain()
    raise _Close


async def _extra_bytes(conn: _Connection, req: _Request, args: list[str]) -> None:
    """A complete response and, in the same write, bytes shaped like a second one. One write, so
    that they reach the gateway with the response, or at least before it can reuse the
    connection: bytes that come after a reuse are indistinguishable from the answer to the next
    request, for any proxy."""
    conn.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\ncomplete" + EXTRA_BYTES)
    await conn.writer.drain()


async def _headers(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`/headers?set=Name:Value&set=...`: those headers, verbatim, before Content-Length; a set
    `Connection: close` is honoured by closing after the response."""
    extra = []
    for key, value in parse_qsl(req.query, keep_blank_values=True, encoding="latin-1"):
        if key == "set":
            name, sep, val = value.partition(":")
            if not sep:
                raise ValueError(f"set= needs Name:Value, got {value!r}")
            extra.append((name.encode("latin-1"), val.encode("latin-1")))
    await conn.send(200, extra, b"ok", content_type=b"text/plain")
    if any(n.lower() == b"connection" and b"close" in v.lower() for n, v in extra):
        await conn.writer.drain()
        raise _Close


async def _head_test(conn: _Connection, req: _Request, args: list[str]) -> None:
    await conn.send(200, [(b"X-Head-Test", b"1")], body_bytes(1234), content_type=b"text/plain")


async def _no_content(conn: _Connection, req: _Request, args: list[str]) -> None:
    await conn.send(204, [], b"")


async def _not_modified(conn: _Connection, req: _Request, args: list[str]) -> None:
    await conn.send(304, [(b"ETag", b'"v1"')], b"")


async def _pid(conn: _Connection, req: _Request, args: list[str]) -> None:
    await conn.send(200, [], json.dumps({"name": conn.server.name, "pid": os.getpid()}).encode())


async def _stats(conn: _Connection, req: _Request, args: list[str]) -> None:
    s = conn.server.stats
    body = {
        "requests": s.requests,
        "completed": s.completed,
        "connections": s.connections,
        "parse_errors": s.parse_errors,
        "health_probes": s.health_probes,
        "app": s.app,
        "app_posts": s.app_posts,
        "paths": s.paths,
        "cache": s.cache,
    }
    await conn.send(200, [], json.dumps(body).encode())


async def _healthz(conn: _Connection, req: _Request, args: list[str]) -> None:
    server = conn.server
    server.stats.health_probes += 1
    await conn.send(server.health_status, [], json.dumps({"health": server.health_status}).encode())


_APP_MODE = re.compile(r"ok|reset|status-[2-5][0-9][0-9]|sleep-[0-9]{1,5}")


async def _control(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`/control/health/{code}` sets what `/healthz` answers; `/control/app/{mode}` how `/app`
    behaves: `ok`, `status-{code}`, `reset` (RST once the request was read) or `sleep-{ms}`;
    `/control/stall/{ms}` answers, then blocks the whole backend for that long (up to 5 s): a
    server too busy to accept, whose listen backlog fills with what arrives meanwhile."""
    what, value = args[0], args[1]
    if what == "stall" and value.isdigit() and int(value) <= 5000:
        await conn.send(200, [], json.dumps({what: int(value)}).encode())
        time.sleep(int(value) / 1000)
        return
    if what == "health":
        code = int(value)
        if not 200 <= code <= 599:
            raise ValueError(f"status out of range: {code}")
        conn.server.health_status = code
    elif what == "app" and _APP_MODE.fullmatch(value):
        conn.server.app_mode = value
    else:
        raise ValueError(f"unknown control {what}/{value}")
    await conn.send(200, [], json.dumps({what: value}).encode())


async def _app(conn: _Connection, req: _Request, args: list[str]) -> None:
    """The application endpoint of failover tests: answers with the backend's name, unless
    `/control/app` said otherwise; every request it receives in full is counted."""
    server = conn.server
    server.stats.app += 1
    if req.method == "POST":
        server.stats.app_posts += 1
    mode = server.app_mode
    if mode == "reset":
        raise _Reset
    if mode.startswith("status-"):
        code = int(mode[7:])
        await conn.send(code, [], json.dumps({"name": server.name, "status": code}).encode())
        return
    if mode.startswith("sleep-"):
        await asyncio.sleep(int(mode[6:]) / 1000)
    await conn.send(200, [], json.dumps({"name": server.name, "method": req.method}).encode())


async def _cache(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`/cache/{id}?...`: a response shaped by the query, for cache tests; every request is counted
    per path in `/stats` (`cache`). Parameters: `cc` (Cache-Control), `etag`, `lm`
    (Last-Modified), `expires`, `vary` (a request header name: sent as Vary, and its value echoed
    in the body), `status`, `size` (a body of that many bytes instead of the JSON one), `delay`
    (ms before the head), `status_after` (the status of the path's later requests), `stall` (ms
    between the first half of the body and the rest; with `stall_first` only for the path's first
    request), `chunked` (chunked framing),
    `cookie` (Set-Cookie), `location` / `content_location`, `cc304` (the Cache-Control of a 304),
    `set=Name:Value` (more headers). A request whose If-None-Match matches `etag`, or whose
    If-Modified-Since is not before `lm`, gets 304 with the validators and `cc304` or `cc`."""
    stats = conn.server.stats.cache.setdefault(req.path, {"requests": 0, "conditional": 0, "not_modified": 0})
    stats["requests"] += 1
    params = parse_qs(req.query, keep_blank_values=True, encoding="latin-1")

    def arg(name: str) -> str | None:
        return params[name][0] if name in params else None

    def header(name: bytes) -> bytes | None:
        for n, v in req.headers:
            if n.lower() == name:
                return v
        return None

    if arg("delay"):
        await asyncio.sleep(int(arg("delay") or 0) / 1000)
    headers: list[tuple[bytes, bytes]] = []
    for name, value in (("Cache-Control", "cc"), ("ETag", "etag"), ("Last-Modified", "lm"), ("Expires", "expires"),
                        ("Vary", "vary"), ("Set-Cookie", "cookie"), ("Location", "location"),
                        ("Content-Location", "content_location")):
        if arg(value) is not None:
            headers.append((name.encode(), (arg(value) or "").encode("latin-1")))
    for extra in params.get("set", []):
        name, _, value = extra.partition(":")
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    inm, ims = header(b"if-none-match"), header(b"if-modified-since")
    if inm is not None or ims is not None:
        stats["conditional"] += 1
    etag, lm = arg("etag"), arg("lm")
    not_modified = (inm is not None and etag is not None and etag.encode() in [t.strip() for t in inm.split(b",")]) or (
        inm is None and ims is not None and lm is not None and ims.decode("latin-1") == lm)
    if not_modified and req.method in ("GET", "HEAD"):
        stats["not_modified"] += 1
        keep = [(n, v) for n, v in headers if n in (b"ETag", b"Last-Modified", b"Vary", b"Expires")]
        cc = arg("cc304") if arg("cc304") is not None else arg("cc")
        if cc is not None:
            keep.append((b"Cache-Control", cc.encode("latin-1")))
        conn._write_head(304, keep, 0)
        return
    vary = arg("vary")
    echoed = header(vary.lower().encode("latin-1")) if vary else None
    status = int(arg("status") or 200)
    if arg("status_after") and stats["requests"] > 1:
        status = int(arg("status_after") or 200)
    if arg("size") is not None:
        body = body_bytes(_size(arg("size") or "0"))
        headers.append((b"Content-Type", b"application/octet-stream"))
    else:
        body = json.dumps({"path": req.path, "n": stats["requests"], "method": req.method,
                           "vary": echoed.decode("latin-1") if echoed is not None else None}).encode()
        headers.append((b"Content-Type", b"application/json"))
    chunked = arg("chunked") is not None
    conn._write_head(status, headers, None if chunked else len(body))
    pieces = [body[: len(body) // 2], body[len(body) // 2 :]] if len(body) > 1 else [body]
    for i, piece in enumerate(pieces):
        if i and arg("stall") and (arg("stall_first") is None or stats["requests"] == 1):
            await asyncio.sleep(int(arg("stall") or 0) / 1000)
        await conn.write_body(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked and piece else piece)
    if chunked:
        await conn.write_body(b"0\r\n\r\n")


async def _close_silently(conn: _Connection, req: _Request, args: list[str]) -> None:
    """A complete keep-alive response, then a close without `Connection: close`: the server
    side of the keep-alive race that clients must survive (RFC 9112 §9.3.1)."""
    await conn.send(200, [], b"ok", content_type=b"text/plain")
    await conn.writer.drain()
    raise _Close


async def _json(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`/json/...?k=v&...`: a JSON object of the path, each query parameter (first value) and
    the request headers (lower-case names); for tests that merge or pick JSON fields."""
    body: dict[str, object] = {"path": req.path}
    for key, value in parse_qsl(req.query, keep_blank_values=True):
        body.setdefault(key, value)
    body["headers"] = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in req.headers}
    await conn.send(200, [], json.dumps(body).encode())


async def _json_list(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`/json-list/{n}`: a JSON list of n objects `{"id": i, "name": "item-i", "secret": "s-i"}`."""
    n = int(args[0])
    if not 0 <= n <= 10000:
        raise ValueError(f"count out of range: {n}")
    items = [{"id": i, "name": f"item-{i}", "secret": f"s-{i}"} for i in range(n)]
    await conn.send(200, [], json.dumps(items).encode())


async def _text(conn: _Connection, req: _Request, args: list[str]) -> None:
    """`/text/{n}?type=T&chunks=K&status=S&set=Name:Value...`: the `body_bytes(n)` body with
    Content-Type T (default text/plain), chunked in K pieces (0, the default: Content-Length),
    status S (default 200) and the extra headers; for compression tests."""
    n = _size(args[0])
    query = parse_qsl(req.query, keep_blank_values=True, encoding="latin-1")
    ctype, chunks, status = b"text/plain", 0, 200
    extra = [(b"Content-Type", ctype)]
    for key, value in query:
        if key == "type":
            extra[0] = (b"Content-Type", value.encode("latin-1"))
        elif key == "chunks":
            chunks = int(value)
        elif key == "status":
            status = int(value)
        elif key == "set":
            name, _, val = value.partition(":")
            extra.append((name.encode("latin-1"), val.encode("latin-1")))
    data = body_bytes(n)
    if not chunks:
        conn._write_head(status, extra, len(data))
        await conn.write_body(data)
        return
    conn._write_head(status, extra, None)
    bounds = [n * i // chunks for i in range(chunks + 1)]
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            await conn.write_body(b"%x\r\n%s\r\n" % (hi - lo, data[lo:hi]))
    await conn.write_body(b"0\r\n\r\n")


async def _bridge(conn: _Connection, req: _Request, args: list[str]) -> None:
    """The HTTP side of the WebSocket bridge (docs/configuration.md#websocket): every call is
    recorded per connection id (`X-Connection-Id`) with its route key, request id, headers and
    body. `/bridge/connect` answers 200, or the status in `?refuse=N`; `/bridge/disconnect` 204;
    `/bridge/message` by the message: `status:N` answers N, `sleep:MS` answers after MS, `empty`
    204, `bytes:N` N bytes of application/octet-stream, `reset` resets the connection, a binary
    message (application/octet-stream) is echoed as binary, anything else gets a JSON echo
    (`echo`, `connection_id`, `route_key`, `request_id`, `content_type`, `headers`).
    `GET /bridge/events?id=ID&kind=K&wait=MS` lists the calls recorded for ID, after waiting up to
    MS for one of kind K."""
    kind = args[0] if args else ""
    server = conn.server
    query = dict(parse_qsl(req.query, keep_blank_values=True))
    if kind == "events":
        await server.wait_bridge_event(query.get("id", ""), query.get("kind"), int(query.get("wait", "0")) / 1000)
        await conn.send(200, [], json.dumps(server.bridge_events.get(query.get("id", ""), [])).encode())
        return
    headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in req.headers}
    cid = headers.get("x-connection-id", "")
    body = bytes(req.body)
    text = body.decode("utf-8", "replace")
    server.record_bridge_event(cid, {
        "kind": kind, "route_key": headers.get("x-route-key"), "request_id": headers.get("x-request-id"),
        "query": req.query, "body": text, "headers": headers,
    })
    if kind == "connect":
        if "refuse" in query:
            await conn.send(int(query["refuse"]), [], b'{"refused": true}')
        else:
            await conn.send(200, [], b"")
        return
    if kind != "message":
        await conn.send(204, [], b"")
        return
    ctype = headers.get("content-type", "")
    if ctype == "application/octet-stream":
        await conn.send(200, [], body, content_type=b"application/octet-stream")
        return
    command, _, arg = text.partition(":")
    if command == "status":
        await conn.send(int(arg), [], json.dumps({"status": int(arg)}).encode())
        return
    if command == "empty":
        await conn.send(204, [], b"")
        return
    if command == "bytes":
        await conn.send(200, [], body_bytes(_size(arg)), content_type=b"application/octet-stream")
        return
    if command == "reset":
        raise _Reset
    if command == "sleep":
        await asyncio.sleep(int(arg) / 1000)
    answer = {"echo": text, "connection_id": cid, "route_key": headers.get("x-route-key"),
              "request_id": headers.get("x-request-id"), "content_type": ctype, "headers": headers}
    await conn.send(200, [], json.dumps(answer).encode())


_ROUTES: dict[str, Handler] = {
    "echo": _echo,
    "status": _status,
    "bytes": _bytes,
    "chunked": _chunked,
    "close-delimited": _close_delimited,
    "slow-head": _sleep,
    "sleep": _sleep,
    "slow-body": _slow_body,
    "reset-before-head": _reset_before_head,
    "reset-mid-body": _reset_mid_body,
    "garbage": _garbage,
    "bad-length": _bad_length,
    "early-hints": _early_hints,
    "unasked-continue": _unasked_continue,
    "count": _echo,
    "switch-protocols": _switch_protocols,
    "extra-bytes": _extra_bytes,
    "headers": _headers,
    "head-test": _head_test,
    "204": _no_content,
    "304": _not_modified,
    "pid": _pid,
    "stats": _stats,
    "close-silently": _close_silently,
    "cache": _cache,
    "healthz": _healthz,
    "control": _control,
    "app": _app,
    "json": _json,
    "json-list": _json_list,
    "text": _text,
    "bridge": _bridge,
}


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = _Stats()
        self.health_status = 200
        self.app_mode = "ok"
        self.bridge_events: dict[str, list[dict[str, object]]] = {}
        self._bridge_changed: asyncio.Event | None = None

    def record_bridge_event(self, cid: str, event: dict[str, object]) -> None:
        self.bridge_events.setdefault(cid, []).append(event)
        if self._bridge_changed is not None:
            self._bridge_changed.set()
            self._bridge_changed = None

    async def wait_bridge_event(self, cid: str, kind: str | None, timeout: float) -> None:
        """Until connection `cid` has a call of `kind` recorded, or `timeout` passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while kind is not None and not any(e["kind"] == kind for e in self.bridge_events.get(cid, [])):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if self._bridge_changed is None:
                self._bridge_changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._bridge_changed.wait(), remaining)
            except TimeoutError:
                return

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        await _Connection(self, reader, writer).serve()

    async def run(self, host: str, port: int, backlog: int) -> None:
        server = await asyncio.start_server(self._on_client, host, port, backlog=backlog)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default="backend")
    ap.add_argument("--backlog", type=int, default=1024, help="listen backlog (default 1024)")
    args = ap.parse_args()
    uvloop.run(Backend(args.name).run(args.host, args.port, args.backlog))


if __name__ == "__main__":
    main()
