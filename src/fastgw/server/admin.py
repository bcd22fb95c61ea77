"""The admin API, served by the master on its own listener (loopback by default).

It runs in the master's selector loop, so nothing here may wait on a client: sockets are
non-blocking, a request is read as it arrives and an answer written as far as the client takes it
(the rest when the socket is writable again), and a connection that has not finished its exchange
within EXCHANGE_TIMEOUT is closed by `sweep`, which the master calls every loop turn. At most
MAX_CONNECTIONS are open; a new one beyond that closes the oldest.

With a token configured, every request needs `Authorization: Bearer TOKEN` (else 401), except
`GET /`: the status page is static HTML that holds no data (it asks for the token and sends it
with its own requests to the JSON endpoints).

`/connections/{id}` (POST a message, DELETE to close, GET to describe a bridged WebSocket
connection) is answered by the worker holding the connection: the request is forwarded through
that worker's push channel (fastgw.bridge.channel) and answered when the worker answers, the
connection waiting meanwhile without blocking the loop. A request body (Content-Length; chunked
bodies are refused with 411) is read whole, up to MAX_BODY.
"""
from __future__ import annotations

import dataclasses
import errno
import hmac
import ipaddress
import selectors
import socket
import time
from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.bridge.channel import MAX_PUSH, OP_BINARY, OP_CLOSE, OP_INFO, OP_TEXT
from fastgw.cache.admin import cache_purge, cache_view
from fastgw.config.model import Address
from fastgw.log import log_exception
from fastgw.metrics.collector import MetricsEndpoint, stats_view
from fastgw.server.sockets import make_plain_listener
from fastgw.server.statuspage import STATUS_PAGE

if TYPE_CHECKING:
    from fastgw.server.master import Master

MAX_REQUEST = 16 * 1024
"""Bytes of request head (and whatever body came with it) read before answering 431."""
EXCHANGE_TIMEOUT = 5.0
"""Seconds a connection has to send its request and take the answer."""
MAX_CONNECTIONS = 32
MAX_BODY = MAX_PUSH
"""Bytes of request body read (a push's message); a bigger one is answered 413."""
CONNECTIONS_PREFIX = b"/connections/"

ENDPOINTS: dict[bytes, tuple[bytes, ...]] = {
    b"/": (b"GET", b"HEAD"),
    b"/healthz": (b"GET", b"HEAD"),
    b"/metrics": (b"GET", b"HEAD"),
    b"/stats": (b"GET", b"HEAD"),
    b"/routes": (b"GET", b"HEAD"),
    b"/upstreams": (b"GET", b"HEAD"),
    b"/ratelimits": (b"GET", b"HEAD"),
    b"/config": (b"GET", b"HEAD"),
    b"/reload": (b"POST",),
    b"/cache": (b"GET", b"HEAD"),
    b"/cache/purge": (b"POST",),
}
"""Path → the methods it answers; another method gets 405 with `Allow`."""


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "deadline", "writing", "waiting")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = b""
        self.deadline = deadline
        self.writing = False
        self.waiting = False
        """Its request was handed on (a push): what else it sends is ignored until the answer."""


class AdminServer:
    def __init__(
        self, address: Address, sel: selectors.BaseSelector, master: Master, token: str | None = None
    ) -> None:
        self.address = address
        self.sock = make_plain_listener(address)
        self.sel = sel
        self.master = master
        self._token: bytes | None = None
        self.set_token(token)
        self.conns: dict[socket.socket, _Conn] = {}
        self.metrics = MetricsEndpoint(master)
        sel.register(self.sock, selectors.EVENT_READ, self._accept)

    def set_token(self, token: str | None) -> None:
        """The bearer token every request must carry from now on (None: no authentication)."""
        self._token = token.encode() if token else None

    def fds(self) -> set[int]:
        return {self.sock.fileno(), *(c.fileno() for c in self.conns)}

    def close(self) -> None:
        for conn in list(self.conns):
            self._drop(conn)
        try:
            self.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()

    def sweep(self, now: float) -> None:
        """Closes connections whose exchange has taken longer than EXCHANGE_TIMEOUT."""
        for sock, conn in list(self.conns.items()):
            if now >= conn.deadline:
                self._drop(sock)

    def _accept(self, sock: Any, mask: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        except OSError as exc:
            # Out of descriptors: free one, or the listener stays readable and the loop spins.
            if exc.errno in (errno.EMFILE, errno.ENFILE) and self.conns:
                self._drop(min(self.conns.values(), key=lambda c: c.deadline).sock)
            return
        if len(self.conns) >= MAX_CONNECTIONS:
            self._drop(min(self.conns.values(), key=lambda c: c.deadline).sock)
        conn.setblocking(False)
        self.conns[conn] = _Conn(conn, time.monotonic() + EXCHANGE_TIMEOUT)
        self.sel.register(conn, selectors.EVENT_READ, self._read)

    def _drop(self, sock: socket.socket) -> None:
        self.conns.pop(sock, None)
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _read(self, sock: Any, mask: int) -> None:
        conn = self.conns.get(sock)
        if conn is None:
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._drop(sock)
            return
        if not data:
            self._drop(sock)
            return
        if conn.waiting:
            return
        buf = conn.inbuf
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_REQUEST:
                self._reply(conn, 431, {"error": "request head too large"})
            return
        lines = bytes(buf[:end]).split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
            self._reply(conn, 400, {"error": "bad request line"})
            return
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self._reply(conn, 400, {"error": "bad header line"})
                return
            headers[name.strip().lower()] = value.strip()
        if b"transfer-encoding" in headers:
            self._reply(conn, 411, {"error": "send the body with a Content-Length"})
            return
        length_text = headers.get(b"content-length", b"0")
        if not length_text.isdigit():
            self._reply(conn, 400, {"error": "bad Content-Length"})
            return
        length = int(length_text)
        if length > MAX_BODY:
            self._reply(conn, 413, {"error": f"request body larger than {MAX_BODY} bytes"})
            return
        if len(buf) - (end + 4) < length:
            return  # the rest of the body is on its way
        body = bytes(buf[end + 4 : end + 4 + length])
        method, target = request_line[0], request_line[1]
        path, _, query = target.partition(b"?")
        try:
            if path.startswith(CONNECTIONS_PREFIX):
                self._connection(conn, method, path[len(CONNECTIONS_PREFIX):], headers, body)
                return
            self._dispatch(conn, method, path, query, headers)
        except Exception as exc:
            # The master's loop must outlive any bug behind an endpoint.
            log_exception(f"admin {method.decode('latin-1')} {path.decode('latin-1')}", exc)
            self._reply(conn, 500, {"error": "internal error (see the gateway's log)"})

    def _connection(self, conn: _Conn, method: bytes, cid: bytes, headers: Mapping[bytes, bytes], body: bytes) -> None:
        """`/connections/{id}`: POST sends the body to a bridged connection as one message (binary
        when the Content-Type is application/octet-stream, else text), DELETE closes it (1000),
        GET describes it; answered by the worker that holds it (see the module docstring)."""
        head_only = method == b"HEAD"
        if not self._authorized(headers):
            self._reply(conn, 401, {"error": "missing or wrong bearer token"},
                        extra=(("WWW-Authenticate", 'Bearer realm="fastgw admin"'),), head_only=head_only)
            return
        if method == b"POST":
            ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            op = OP_BINARY if ctype == b"application/octet-stream" else OP_TEXT
        elif method == b"DELETE":
            op = OP_CLOSE
        elif method in (b"GET", b"HEAD"):
            op = OP_INFO
        else:
            self._reply(conn, 405, {"error": "method not allowed (allowed: GET, HEAD, POST, DELETE)"},
                        extra=(("Allow", "GET, HEAD, POST, DELETE"),), head_only=head_only)
            return
        conn.waiting = True

        def answer(status: int, payload: dict[str, object]) -> None:
            if self.conns.get(conn.sock) is conn:
                conn.waiting = False
                self._reply(conn, status, payload, head_only=head_only)

        self.master.push(cid.decode("latin-1"), op, body if op != OP_INFO else b"", answer)

    def _authorized(self, headers: Mapping[bytes, bytes]) -> bool:
        if self._token is None:
            return True
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)

    def _dispatch(
        self, conn: _Conn, method: bytes, path: bytes, query: bytes, headers: Mapping[bytes, bytes]
    ) -> None:
        head_only = method == b"HEAD"
        if path == b"/" and method in ENDPOINTS[b"/"]:
            self._send(conn, 200, STATUS_PAGE, "text/html; charset=utf-8", head_only=head_only)
            return
        if not self._authorized(headers):
            self._reply(conn, 401, {"error": "missing or wrong bearer token"},
                        extra=(("WWW-Authenticate", 'Bearer realm="fastgw admin"'),), head_only=head_only)
            return
        methods = ENDPOINTS.get(path)
        if methods is None:
            self._reply(conn, 404, {"error": "not found", "endpoints": sorted(p.decode() for p in ENDPOINTS)},
                        head_only=head_only)
            return
        if method not in methods:
            allow = ", ".join(m.decode() for m in methods)
            self._reply(conn, 405, {"error": f"method not allowed (allowed: {allow})"},
                        extra=(("Allow", allow),), head_only=head_only)
            return
        master = self.master
        if path == b"/healthz":
            self._reply(conn, 200, master.status(), head_only=head_only)
        elif path == b"/routes":
            self._reply(conn, 200, {"routes": routes_table(master)}, head_only=head_only)
        elif path == b"/upstreams":
            self._reply(conn, 200, {"upstreams": upstreams_table(master)}, head_only=head_only)
        elif path == b"/ratelimits":
            self._reply(conn, 200, ratelimits_table(master), head_only=head_only)
        elif path == b"/config":
            self._reply(conn, 200, config_view(master), head_only=head_only)
        elif path == b"/metrics":
            body, content_type = self.metrics.render(headers.get(b"accept", b"").decode("latin-1"))
            self._send(conn, 200, body, content_type, head_only=head_only)
        elif path == b"/stats":
            self._reply(conn, 200, stats_view(master), head_only=head_only)
        elif path == b"/cache":
            status, payload = cache_view(master, query)
            self._reply(conn, status, payload, head_only=head_only)
        elif path == b"/cache/purge":
            status, payload = cache_purge(master, query)
            self._reply(conn, status, payload)
        elif path == b"/reload":
            request = master.request_reload()
            self._reply(conn, 202, {"reload": "requested", "request": request,
                                    "generation": master.status()["generation"]})

    def _reply(
        self, conn: _Conn, status: int, payload: object, *, extra: tuple[tuple[str, str], ...] = (),
        head_only: bool = False,
    ) -> None:
        body = orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n"
        self._send(conn, status, body, "application/json", extra=extra, head_only=head_only)

    def _send(
        self, conn: _Conn, status: int, body: bytes, content_type: str, *, extra: tuple[tuple[str, str], ...] = (),
        head_only: bool = False,
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in extra),
        ]
        conn.outbuf = ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body)
        conn.inbuf = bytearray()
        self._write(conn.sock, selectors.EVENT_WRITE)

    def _write(self, sock: Any, mask: int) -> None:
        conn = self.conns.get(sock)
        if conn is None:
            return
        try:
            sent = sock.send(conn.outbuf)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(sock)
            return
        conn.outbuf = conn.outbuf[sent:]
        if not conn.outbuf:
            # Lingering close: closing with unread input (a request body) would send a reset that
            # can destroy the answer before the client reads it. So half-close, then read and
            # discard until the client closes too (or the exchange's deadline passes).
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._drop(sock)
                return
            self.sel.modify(sock, selectors.EVENT_READ, self._linger)
        elif not conn.writing:
            conn.writing = True
            self.sel.modify(sock, selectors.EVENT_WRITE, self._write)

    def _linger(self, sock: Any, mask: int) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)


def routes_table(master: Master) -> list[dict[str, object]]:
    return [
        {
            "index": r.index,
            "path": r.match.path,
            "prefix": r.match.prefix,
            "methods": list(r.match.methods) if r.match.methods else None,
            "host": r.match.host,
            "conditions": [dataclasses.asdict(c) for c in r.match.conditions],
            "upstream": r.upstream or None,
            "upstreams": [dataclasses.asdict(w) for w in r.upstreams] or None,
            "respond": r.respond.status if r.respond else None,
            "redirect": dataclasses.asdict(r.redirect) if r.redirect else None,
            "strip_prefix": r.strip_prefix,
            "rate_limit": list(r.rate_limit),
        }
        for r in master.config.routes
    ]


def ratelimits_table(master: Master) -> dict[str, object]:
    """The configured limits with their counters (summed over the serving generation's workers)
    and the occupancy of the host's bucket table (a scan of the table: fine for an admin request,
    not for a tight polling loop)."""
    cur = master.current
    buckets = cur.buckets if cur is not None else None
    counters = buckets.totals() if buckets is not None else {}
    limits: dict[str, object] = {}
    for name, limit in master.config.rate_limits.items():
        view: dict[str, object] = {
            "rate": limit.rate_text, "burst": limit.burst, "key": limit.key, "scope": limit.scope,
            "enforce": limit.enforce,
        }
        if limit.scope == "cluster" and limit.redis is not None:
            view |= {"redis": redact_url(limit.redis), "on_redis_error": limit.on_redis_error,
                     "redis_timeout": limit.redis_timeout}
        view["counters"] = counters.get(name)
        limits[name] = view
    return {"limits": limits, "table": buckets.stats() if buckets is not None else None}


def upstreams_table(master: Master) -> dict[str, object]:
    """Settings and live target state of the serving generation (see `UpstreamShared.describe`)."""
    gen = master.current
    shared = gen.shared if gen is not None else None
    live = {pid for pid, w in gen.workers.items() if w.ready} if gen is not None else set()
    table: dict[str, object] = {}
    for name, up in master.config.upstreams.items():
        targets = (
            shared.describe(up, live)
            if shared is not None
            else [{"address": str(t.address), "weight": t.weight} for t in up.targets]
        )
        table[name] = {
            "balance": up.balance,
            "hash_key": str(up.hash_key) if up.hash_key else None,
            "targets": targets,
            "keepalive": up.keepalive,
            "timeouts": {"connect": up.timeouts.connect, "read": up.timeouts.read},
            "health": dataclasses.asdict(up.health) if up.health else None,
            "outlier": dataclasses.asdict(up.outlier) if up.outlier else None,
            "retries": dataclasses.asdict(up.retries),
        }
    return table


SECRET_FIELDS = frozenset({"token", "secret", "client_secret", "password"})
"""Config fields whose values `GET /config` never shows."""
REDACTED = "***"


def redact_url(url: str) -> str:
    """`scheme://***@host/...`: the URL without its user and password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = f"{REDACTED}@{authority.rpartition('@')[2]}"
    return f"{scheme}://{authority}{slash}{path}"


def config_view(master: Master) -> dict[str, Any]:
    """The serving configuration as JSON (defaults filled in, durations in seconds, sizes in
    bytes), with secrets replaced by `***` and passwords cut out of URLs."""
    view = _jsonable(master.config)
    assert isinstance(view, dict)
    return {"generation": master.status()["generation"], "config": view}


def _jsonable(value: Any, key: str = "") -> Any:
    if key in SECRET_FIELDS and value is not None:
        return REDACTED
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Address):
            return str(value)
        return {f.name: _jsonable(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (dict, MappingProxyType)):
        return {str(k): _jsonable(v, str(k)) for k, v in value.items()}
    if isinstance(value, (tuple, list, frozenset, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    if isinstance(value, str) and "://" in value and "@" in value:
        return redact_url(value)
    return value
