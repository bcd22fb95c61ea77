"""A worker's bridged connections: their ids, the push channel from the master, and the calls
(connect, message, disconnect) still running when the worker stops.

One `BridgeHub` per worker (`Runtime.bridge`), made only when some route has a bridge. Call
order: `listen(sock)` once the loop runs (the worker's end of its push channel, see channel.py);
`new_id()` per accepted handshake, then `add`/`remove` as connections open and end; `spawn` for
every call a connection makes; `flush(timeout)` when the worker stops, so that disconnect calls
made by the last connections' 1001 closes get out before the process exits.
"""
from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.log import log_exception, process_log

from .channel import OP_BINARY, OP_CLOSE, OP_INFO, OP_TEXT, FrameReader, decode_request, encode_answer

if TYPE_CHECKING:
    from .connection import BridgeConnection

__all__ = ["BridgeHub", "attach_bridge"]


class BridgeHub:
    __slots__ = ("rt", "prefix", "connections", "tasks", "channel")

    def __init__(self, rt: Any, generation: int, slot: int) -> None:
        self.rt = rt
        self.prefix = f"{generation}.{slot}."
        """What every id made here starts with: the master routes pushes by it (channel.py)."""
        self.connections: dict[str, BridgeConnection] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.channel: _Channel | None = None

    def new_id(self) -> str:
        return self.prefix + secrets.token_urlsafe(16)

    def add(self, conn: BridgeConnection) -> None:
        self.connections[conn.id] = conn

    def remove(self, conn: BridgeConnection) -> None:
        if self.connections.get(conn.id) is conn:
            del self.connections[conn.id]

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        task = self.rt.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def listen(self, sock: socket.socket) -> None:
        """Serves the master's push requests from the worker's end of the channel."""
        sock.setblocking(False)
        await self.rt.loop.connect_accepted_socket(lambda: _Channel(self), sock)

    def handle(self, op: int, cid: bytes, payload: bytes) -> tuple[int, dict[str, Any]]:
        """One request from the master: (HTTP status, JSON answer)."""
        try:
            key = cid.decode("ascii")
        except UnicodeDecodeError:
            key = ""
        conn = self.connections.get(key)
        if conn is None or not conn.open:
            return 404, {"error": "no such connection (unknown, or closed)"}
        if op == OP_TEXT or op == OP_BINARY:
            if len(payload) > conn.route.max_message:
                return 413, {"error": f"message larger than the route's max_message ({conn.route.max_message} bytes)"}
            data: str | bytes = payload
            if op == OP_TEXT:
                try:
                    data = payload.decode("utf-8")
                except UnicodeDecodeError:
                    return 400, {"error": "a text message must be UTF-8 (send binary as application/octet-stream)"}
            status = conn.push(data)
            if status == 429:
                return 429, {"error": f"the client is not reading: {conn.route.max_queued} messages already wait"}
            if status == 404:
                return 404, {"error": "no such connection (unknown, or closed)"}
            return 202, {"queued": status == 203}
        if op == OP_CLOSE:
            # A close reason is at most 123 bytes of UTF-8.
            conn.close(1000, payload[:120].decode("utf-8", "ignore") or "closed by the backend")
            return 202, {"closing": True}
        if op == OP_INFO:
            return 200, conn.info()
        return 400, {"error": "unknown operation"}

    async def flush(self, timeout: float) -> None:
        """Waits (at most `timeout` seconds) for the calls still running."""
        tasks = [t for t in self.tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def close(self) -> None:
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.close()


class _Channel(asyncio.Protocol):
    """The worker's end of its push channel: answers each request frame at once."""

    def __init__(self, hub: BridgeHub) -> None:
        self.hub = hub
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.hub.channel = self

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            frames = self.reader.feed(data)
        except ValueError as exc:
            process_log(f"push channel: {exc}; closing it")
            self.transport.abort()
            return
        out = []
        for number, body in frames:
            try:
                op, cid, payload = decode_request(body)
                status, answer = self.hub.handle(op, cid, payload)
            except Exception as exc:
                log_exception("push channel", exc)
                status, answer = 500, {"error": "internal error (see the gateway's log)"}
            out.append(encode_answer(number, status, orjson.dumps(answer)))
        if out:
            self.transport.writelines(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.channel = None


def attach_bridge(rt: Any, generation: int, slot: int) -> BridgeHub | None:
    """The worker's hub when some route bridges WebSocket, else None."""
    if not any(r.websocket is not None and r.websocket.bridge is not None for r in rt.config.routes):
        return None
    return BridgeHub(rt, generation, slot)
