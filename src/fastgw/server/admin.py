"""The admin API, served by the master on its own loopback listener (DESIGN §5).

Requests are tiny and rare, so they are handled inline in the master's selector loop with a
bounded read; nothing here can block the loop for long.
"""
from __future__ import annotations

import dataclasses
import selectors
import socket
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.config.model import Address
from fastgw.server.sockets import make_plain_listener

if TYPE_CHECKING:
    from fastgw.server.master import Master

_MAX_REQUEST = 16 * 1024


class AdminServer:
    def __init__(self, address: Address, sel: selectors.BaseSelector, master: Master) -> None:
        self.sock = make_plain_listener(address)
        self.sel = sel
        self.master = master
        self.conns: dict[socket.socket, bytearray] = {}
        sel.register(self.sock, selectors.EVENT_READ, self._accept)

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

    def _accept(self, sock: Any, mask: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.conns[conn] = bytearray()
        self.sel.register(conn, selectors.EVENT_READ, self._read)

    def _drop(self, conn: socket.socket) -> None:
        self.conns.pop(conn, None)
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _read(self, conn: Any, mask: int) -> None:
        buf = self.conns.get(conn)
        if buf is None:
            return
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_REQUEST:
                self._reply(conn, 431, {"error": "request too large"})
            return
        line = bytes(buf[: buf.find(b"\r\n")]).split(b" ")
        if len(line) != 3:
            self._reply(conn, 400, {"error": "bad request line"})
            return
        method, target = line[0], line[1].split(b"?", 1)[0]
        self._dispatch(conn, method, target)

    def _dispatch(self, conn: socket.socket, method: bytes, target: bytes) -> None:
        master = self.master
        if target == b"/healthz" and method in (b"GET", b"HEAD"):
            self._reply(conn, 200, master.status())
        elif target == b"/routes" and method == b"GET":
            self._reply(conn, 200, {"routes": routes_table(master)})
        elif target == b"/upstreams" and method == b"GET":
            self._reply(conn, 200, {"upstreams": upstreams_table(master)})
        elif target == b"/ratelimits" and method == b"GET":
            self._reply(conn, 200, ratelimits_table(master))
        elif target == b"/reload" and method == b"POST":
            master.request_reload()
            self._reply(conn, 202, {"reload": "requested", "generation": master.status()["generation"]})
        elif target in (b"/healthz", b"/routes", b"/upstreams", b"/ratelimits", b"/reload"):
            self._reply(conn, 405, {"error": "method not allowed"})
        else:
            self._reply(conn, 404, {"error": "not found"})

    def _reply(self, conn: socket.socket, status: int, payload: object) -> None:
        body = orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n"
        head = (
            f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.sendall(head + body)
        except OSError:
            pass
        self._drop(conn)


def routes_table(master: Master) -> list[dict[str, object]]:
    return [
        {
            "index": r.index,
            "path": r.match.path,
            "prefix": r.match.prefix,
            "methods": list(r.match.methods) if r.match.methods else None,
            "host": r.match.host,
            "upstream": r.upstream,
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
            scheme, _, rest = limit.redis.partition("://")
            authority, slash, path = rest.partition("/")
            if "@" in authority:
                authority = "***@" + authority.rpartition("@")[2]
            view |= {"redis": f"{scheme}://{authority}{slash}{path}", "on_redis_error": limit.on_redis_error,
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
            "outlier": dataclasses.asdict(up.outlier),
            "retries": dataclasses.asdict(up.retries),
        }
    return table
