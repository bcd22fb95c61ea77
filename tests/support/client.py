"""Raw-socket HTTP/1.1 clients for end-to-end tests.

Tests need to send exact bytes (hostile requests) and to see exactly what came back: every
response with its 1xx, whether the peer closed or reset the connection, and bytes that are not a
response at all. Client libraries hide all of that, so responses are framed here: each head is
validated by httptools' strict (llhttp) response parser, and bodies are framed by this module,
because httptools can neither be told that a response answers a HEAD request nor report where a
message ends in the byte stream.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Self

import httptools

LOOPBACK = "127.0.0.1"
_MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]+")

Headers = Iterable[tuple[str, str]] | Mapping[str, str]


class ProtocolError(Exception):
    """The peer sent bytes that are not a well-formed HTTP/1.1 response."""


class IncompleteResponse(ProtocolError):
    """The connection ended inside a response; `response` holds its head and the body bytes
    that did arrive (raw, still chunk-framed for chunked bodies), or None if the head was cut."""

    def __init__(self, message: str, response: Response | None) -> None:
        super().__init__(message)
        self.response = response


class ConnectionClosed(Exception):
    """The peer closed the connection (or reset it) before any byte of the awaited response."""


@dataclass
class Response:
    status: int
    reason: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    chunked: bool = False
    chunks: int = 0
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[Response] = field(default_factory=list)

    def header_values(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == key]

    def header(self, name: str) -> str | None:
        """The header's single value; a repeated header raises, because every header a test
        asks about (X-Request-ID, Content-Length, ...) must appear at most once."""
        values = self.header_values(name)
        if len(values) > 1:
            raise ProtocolError(f"{name} appears {len(values)} times: {values}")
        return values[0] if values else None

    def connection_tokens(self) -> set[str]:
        return {t.strip().lower() for v in self.header_values("connection") for t in v.split(",")}

    @property
    def keep_alive(self) -> bool:
        """Whether the server lets the client reuse the connection after this response."""
        if self.status == 101:
            return False
        tokens = self.connection_tokens()
        if self.version == "1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def json(self) -> Any:
        return json.loads(self.body)

    def summary(self) -> str:
        informational = "".join(f"[{m.status}] " for m in self.informational)
        return f"{informational}HTTP/{self.version} {self.status} headers={self.headers!r} body={self.body[:300]!r}"


class _HeadCollector:
    """httptools callbacks for one response head."""

    def __init__(self) -> None:
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


def _parse_head(head: bytes) -> Response:
    collector = _HeadCollector()
    parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass  # a 101: the head is complete, what follows is not HTTP
    except httptools.HttpParserError as exc:
        raise ProtocolError(f"malformed response head ({exc}): {head[:300]!r}") from exc
    if not collector.complete:
        raise ProtocolError(f"response head not complete: {head[:300]!r}")
    return Response(
        status=parser.get_status_code(),
        reason=collector.reason,
        version=parser.get_http_version(),
        headers=collector.headers,
    )


def _framing(resp: Response, head_request: bool) -> tuple[str, int]:
    """How the body of `resp` is delimited (RFC 9112 §6.3): "none", "length", "chunked" or
    "close". Ambiguous framing is a protocol error, since a proxy must never send it."""
    if resp.status < 200 or resp.status in (204, 304) or head_request:
        return "none", 0
    te = resp.header_values("transfer-encoding")
    cl = resp.header_values("content-length")
    if te:
        if cl:
            raise ProtocolError(f"response has both Transfer-Encoding and Content-Length: {resp.headers!r}")
        codings = [c.strip().lower() for c in ",".join(te).split(",")]
        return ("chunked", 0) if codings[-1] == "chunked" else ("close", 0)
    if cl:
        if len(cl) != 1 or not _DIGITS.fullmatch(cl[0]):
            raise ProtocolError(f"bad Content-Length in response: {cl!r}")
        return "length", int(cl[0])
    return "close", 0


def _parse_chunked(buf: bytearray, pos: int) -> tuple[bytes, int, list[tuple[bytes, bytes]], int] | None:
    """Strictly decode a chunked body starting at `pos`: (body, chunk count, trailers, end)
    or None if more bytes are needed."""
    body = bytearray()
    chunks = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > _MAX_CHUNK_LINE:
                raise ProtocolError(f"chunk size line too long: {bytes(buf[pos : pos + 100])!r}")
            return None
        size_field = bytes(buf[pos:eol]).split(b";", 1)[0]
        if not _CHUNK_SIZE.fullmatch(size_field):
            raise ProtocolError(f"bad chunk size line: {bytes(buf[pos:eol])!r}")
        size = int(size_field, 16)
        start = eol + 2
        if size == 0:
            return _parse_trailers(buf, start, bytes(body), chunks)
        if len(buf) < start + size + 2:
            return None
        if buf[start + size : start + size + 2] != b"\r\n":
            raise ProtocolError("chunk data not followed by CRLF")
        body += buf[start : start + size]
        chunks += 1
        pos = start + size + 2


def _parse_trailers(
    buf: bytearray, pos: int, body: bytes, chunks: int
) -> tuple[bytes, int, list[tuple[bytes, bytes]], int] | None:
    trailers: list[tuple[bytes, bytes]] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        if eol == pos:
            return body, chunks, trailers, eol + 2
        name, sep, value = bytes(buf[pos:eol]).partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"bad trailer line: {bytes(buf[pos:eol])!r}")
        trailers.append((name, value.strip()))
        pos = eol + 2


class ResponseReader:
    """Sans-IO framer of a byte stream into responses; feed it bytes and EOF, ask for messages.

    After a 101 it stops: what follows is not HTTP, and stays in `buffered`."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._head: tuple[Response, int] | None = None
        self._informational: list[Response] = []
        self.upgraded = False

    @property
    def buffered(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def feed_eof(self) -> None:
        self._eof = True

    def next_message(self, head_request: bool = False) -> Response | None:
        """The next complete message, 1xx included; None when more bytes are needed (or after
        a 101, or at a clean EOF between messages)."""
        if self.upgraded:
            return None
        if self._head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise ProtocolError(f"no end of response head in {len(self._buf)} bytes")
                if self._eof and self._buf:
                    raise IncompleteResponse(
                        f"connection ended inside a response head: {bytes(self._buf[:300])!r}", None
                    )
                return None
            self._head = (_parse_head(bytes(self._buf[: end + 4])), end + 4)
        resp, start = self._head
        kind, length = _framing(resp, head_request)
        if kind == "none":
            end = start
        elif kind == "length":
            if len(self._buf) < start + length:
                self._fail_if_eof(resp, start, f"body shorter than Content-Length {length}")
                return None
            resp.body = bytes(self._buf[start : start + length])
            end = start + length
        elif kind == "chunked":
            parsed = _parse_chunked(self._buf, start)
            if parsed is None:
                self._fail_if_eof(resp, start, "chunked body not terminated")
                return None
            resp.body, resp.chunks, resp.trailers, end = parsed
            resp.chunked = True
        else:
            if not self._eof:
                return None
            resp.body = bytes(self._buf[start:])
            end = len(self._buf)
        del self._buf[:end]
        self._head = None
        self.upgraded = resp.status == 101
        return resp

    def _fail_if_eof(self, resp: Response, start: int, what: str) -> None:
        if self._eof:
            resp.body = bytes(self._buf[start:])
            raise IncompleteResponse(f"connection ended: {what} ({len(resp.body)} body bytes)", resp)

    def next_response(self, head_request: bool = False) -> Response | None:
        """The next final response (or 101), with the 1xx responses before it attached."""
        while (msg := self.next_message(head_request)) is not None:
            if msg.status < 200 and msg.status != 101:
                self._informational.append(msg)
                continue
            msg.informational, self._informational = self._informational, []
            return msg
        return None


def build_request(
    method: str,
    target: str,
    headers: Headers = (),
    body: bytes = b"",
    *,
    host: str | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """Request bytes; adds Host (when `host` is given and `headers` has none) and Content-Length
    (when there is a body and no framing header)."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    names = {n.lower() for n, _ in items}
    if host is not None and "host" not in names:
        items.insert(0, ("Host", host))
    if body and not names & {"content-length", "transfer-encoding"}:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in items) + "\r\n"
    return head.encode("latin-1") + body


@dataclass
class RawResponse:
    """Everything one raw exchange produced. `responses` are the final responses (or 101) in
    order, each with its 1xx; `closed` means the server closed or reset the connection
    (`reset` for the latter); `error` describes bytes that were not a valid response, with
    `partial` holding a response cut short by the close."""

    responses: list[Response]
    closed: bool
    reset: bool
    timed_out: bool
    error: str | None
    partial: Response | None
    unparsed: bytes
    elapsed: float

    @property
    def status(self) -> int | None:
        return self.responses[0].status if self.responses else None

    def summary(self) -> str:
        parts = [r.summary() for r in self.responses]
        parts.append(
            f"closed={self.closed} reset={self.reset} timed_out={self.timed_out} "
            f"error={self.error!r} unparsed={self.unparsed[:200]!r} elapsed={self.elapsed:.2f}s"
        )
        return "\n".join(parts)


def raw_request(
    port: int,
    data: bytes,
    timeout: float = 5.0,
    *,
    responses: int | None = None,
    head_request: bool = False,
    host: str = LOOPBACK,
    shutdown: bool = False,
) -> RawResponse:
    """Send `data` on a new connection and read until the server closes it or `timeout`
    elapses, or, with `responses=N`, until N final responses have arrived. With `shutdown`, the
    client half-closes (SHUT_WR) after sending."""
    start = time.monotonic()
    deadline = start + timeout
    reader = ResponseReader()
    got: list[Response] = []
    closed = reset = timed_out = False
    error: str | None = None
    partial: Response | None = None
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading all of it; read what it sent
        while not closed and (responses is None or len(got) < responses):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                timed_out = True
                break
            except ConnectionResetError:
                chunk, reset = b"", True
            if chunk:
                reader.feed(chunk)
            else:
                closed = True
                reader.feed_eof()
            try:
                while (resp := reader.next_response(head_request)) is not None:
                    got.append(resp)
            except IncompleteResponse as exc:
                error, partial = str(exc), exc.response
                break
            except ProtocolError as exc:
                error = str(exc)
                break
    return RawResponse(got, closed, reset, timed_out, error, partial, reader.buffered, time.monotonic() - start)


class Conn:
    """A client connection kept open across requests (keep-alive, pipelining, 100-continue)."""

    def __init__(self, port: int, *, timeout: float = 5.0, host: str = LOOPBACK) -> None:
        self.port = port
        self.timeout = timeout
        self.closed = False
        self.reset = False
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._reader = ResponseReader()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def request(self, method: str = "GET", target: str = "/", headers: Headers = (), body: bytes = b"") -> Response:
        self.send(build_request(method, target, headers, body, host=f"{LOOPBACK}:{self.port}"))
        return self.read_response(head_request=method == "HEAD")

    def read_response(self, head_request: bool = False, *, skip_informational: bool = True) -> Response:
        """The next final response (1xx attached), or with `skip_informational=False` the next
        message of any kind. Raises ConnectionClosed, IncompleteResponse, ProtocolError or
        TimeoutError."""
        deadline = time.monotonic() + self.timeout
        while True:
            if skip_informational:
                msg = self._reader.next_response(head_request)
            else:
                msg = self._reader.next_message(head_request)
            if msg is not None:
                return msg
            if self.closed:
                raise ConnectionClosed(f"server {'reset' if self.reset else 'closed'} the connection")
            self._recv(deadline)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """True once the server closes (or resets) the connection, False if it is still open
        after `timeout`; bytes arriving meanwhile are a protocol error."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed:
            try:
                self._recv(deadline)
            except TimeoutError:
                return False
            if self._reader.buffered:
                raise ProtocolError(f"unexpected bytes while waiting for close: {self._reader.buffered[:200]!r}")
        return True

    def _recv(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"nothing complete within {self.timeout}s; buffered {self._reader.buffered[:300]!r}")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise TimeoutError(
                f"nothing complete within {self.timeout}s; buffered {self._reader.buffered[:300]!r}"
            ) from None
        except ConnectionResetError:
            chunk, self.reset = b"", True
        if chunk:
            self._reader.feed(chunk)
        else:
            self.closed = True
            self._reader.feed_eof()


def http_get(port: int, path: str, headers: Headers = (), *, timeout: float = 5.0) -> Response:
    with Conn(port, timeout=timeout) as conn:
        return conn.request("GET", path, headers)


# --- bounded load -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    """`retried_stale` counts requests that hit the keep-alive close race (EOF or reset before
    any response byte on a reused idle connection) and were sent again once on a new
    connection; the retry's own outcome is counted in `ok` or `failed`."""

    ok: int = 0
    failed: int = 0
    retried_stale: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def fail(self, what: str) -> None:
        self.failed += 1
        if len(self.failures) < 100:
            self.failures.append(what)


class _StaleConnection(Exception):
    """No response byte arrived before EOF/reset: the only case a request may be retried."""


class _AsyncConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.responses = 0
        self.parser = ResponseReader()

    def close(self) -> None:
        self.writer.transport.abort()

    async def exchange(self, request: bytes, timeout: float) -> Response:
        got_bytes = False
        try:
            self.writer.write(request)
            await self.writer.drain()
            async with asyncio.timeout(timeout):
                while (resp := self.parser.next_response()) is None:
                    chunk = await self.reader.read(65536)
                    if chunk:
                        got_bytes = True
                        self.parser.feed(chunk)
                        continue
                    if not got_bytes:
                        raise _StaleConnection("EOF before any response byte")
                    self.parser.feed_eof()
                    if (resp := self.parser.next_response()) is None:
                        raise IncompleteResponse("connection ended after 1xx responses only", None)
                    break
        except ConnectionError as exc:
            if not got_bytes:
                raise _StaleConnection(f"{type(exc).__name__} before any response byte") from exc
            raise
        self.responses += 1
        return resp


async def _load(
    port: int,
    path: str,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    keepalive: bool,
    timeout: float,
    expect_status: int,
    stop: threading.Event | None,
    tls: ssl.SSLContext | None = None,
) -> LoadResult:
    result = LoadResult()
    start = time.monotonic()
    deadline = start + duration_s
    issued = 0
    connection = b"" if keepalive else b"Connection: close\r\n"
    request = f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n".encode() + connection + b"\r\n"

    def may_issue() -> bool:
        nonlocal issued
        if issued >= max_requests or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            return False
        issued += 1
        return True

    async def one(conn: _AsyncConn | None) -> _AsyncConn | None:
        """Run one request; returns the connection to reuse, if any."""
        for attempt in (0, 1):
            fresh = conn is None or conn.responses == 0
            try:
                if conn is None:
                    async with asyncio.timeout(timeout):
                        conn = _AsyncConn(*await asyncio.open_connection(
                            LOOPBACK, port, ssl=tls, server_hostname="localhost" if tls is not None else None
                        ))
                resp = await conn.exchange(request, timeout)
            except _StaleConnection as exc:
                assert conn is not None
                conn.close()
                conn = None
                if keepalive and not fresh and attempt == 0:
                    result.retried_stale += 1
                    continue
                result.fail(f"{exc} on a {'fresh' if fresh else 'reused'} connection")
                return None
            except (OSError, TimeoutError, ProtocolError) as exc:
                if conn is not None:
                    conn.close()
                result.fail(f"{type(exc).__name__}: {exc}")
                return None
            result.statuses[resp.status] += 1
            if resp.status == expect_status:
                result.ok += 1
            else:
                result.fail(f"status {resp.status}: {resp.body[:200]!r}")
            if keepalive and resp.keep_alive:
                return conn
            conn.close()
            return None
        raise AssertionError("unreachable: the second attempt always returns")

    async def worker() -> None:
        conn: _AsyncConn | None = None
        while may_issue():
            conn = await one(conn)
        if conn is not None:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.monotonic() - start
    return result


def run_load(
    port: int,
    path: str,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    keepalive: bool,
    timeout: float = 5.0,
    expect_status: int = 200,
    stop: threading.Event | None = None,
    tls: ssl.SSLContext | None = None,
) -> LoadResult:
    """GET `path` from `concurrency` connections until `max_requests` were issued, `duration_s`
    elapsed or `stop` is set; at most `duration_s + 2 * timeout` in all.

    With keepalive=False every request has its own connection and nothing is retried; with
    keepalive=True connections are reused and only the RFC 9112 §9.3.1 stale-connection case is
    retried (once, counted in `retried_stale`). With `tls`, connections are TLS (SNI and checked
    name `localhost`)."""
    return asyncio.run(
        _load(
            port,
            path,
            concurrency=concurrency,
            duration_s=duration_s,
            max_requests=max_requests,
            keepalive=keepalive,
            timeout=timeout,
            expect_status=expect_status,
            stop=stop,
            tls=tls,
        )
    )


def start_load(port: int, path: str, **kwargs: Any) -> Future[LoadResult]:
    """`run_load` in a background thread, for driving traffic while a test reloads or kills
    processes; collect it with `.result(timeout)`."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run_load")
    future = executor.submit(run_load, port, path, **kwargs)
    executor.shutdown(wait=False)
    return future
