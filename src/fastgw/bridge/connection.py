"""One bridged WebSocket connection: the handler that owns the client connection after the
gateway's own 101 (`Reply.switching`, see `_proxy_src/request.pyx`).

Frames are read and written by wsproto (its frame layer, `wsproto.connection.Connection`: the
handshake was the gateway's), never by hand. Each complete message from the client becomes a POST
to the route's upstream through the worker's internal client (`rt.client`: balancer, retries,
timeouts and health as for any request), and the answer's body goes back as one message.

States: PENDING (made by the responder, waiting for the exchange's `connection_made`) → OPEN →
CLOSING (the gateway sent its close frame and waits, at most CLOSE_WAIT, for the client's) →
ENDED (the TCP connection is gone, or the worker is exiting). `_end` runs exactly once, and makes
the disconnect call.

Bounds, all per connection:
- a message (either way, and an answer body) is at most `max_message` bytes: a bigger one from
  the client closes with 1009 as it arrives, without being held whole;
- at most `max_in_flight` POSTs at once; beyond, further messages wait and the client's socket is
  no longer read (TCP flow control pushes back), so what waits is at most one read's worth;
- while the client does not read (its socket's buffer is full: `pause_writing`), messages to it
  wait in a queue of at most `max_queued`: answers always (they are bounded by `max_in_flight`),
  pushes only below that bound (else the push is refused: 429); reading stops meanwhile too;
- `idle_timeout` of silence both ways closes with 1000; a drain's grace period ends with 1001.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from fastgw.upstream.client import UpstreamError

if TYPE_CHECKING:
    from .hub import BridgeHub
    from .responder import BridgeRoute

__all__ = ["BridgeConnection"]

CLOSE_WAIT = 2.0
"""Seconds the gateway waits for the client's close frame after sending its own."""
_TEXT = b"text/plain; charset=utf-8"
_BINARY = b"application/octet-stream"
_JSON = b"application/json"

PENDING, OPEN, CLOSING, ENDED = range(4)

_MESSAGES = {
    "timeout": "upstream timed out",
    "connect_error": "could not connect to the upstream",
    "reset": "upstream closed the connection",
    "protocol_error": "upstream answer is not valid HTTP",
    "no_target": "no healthy upstream target",
}


class BridgeConnection:
    __slots__ = (
        "route", "hub", "id", "rid", "headers", "host", "key_request", "transport", "ws", "state", "parts",
        "size", "in_flight", "waiting", "queue", "write_paused", "read_paused", "last_active", "opened",
        "close_deadline", "seq", "calls", "close_code", "close_reason", "ended", "connected", "__weakref__",
    )

    def __init__(
        self, route: BridgeRoute, hub: BridgeHub, cid: str, rid: bytes, headers: list[tuple[bytes, bytes]],
        host: bytes | None, key_request: Any, connected: bool,
    ) -> None:
        self.route = route
        self.hub = hub
        self.id = cid
        self.rid = rid
        self.headers = headers
        """What every call carries: connection id, forwarded addresses, vouched identity headers,
        the handshake headers of `forward_headers`."""
        self.host = host
        self.key_request = key_request
        self.transport: Any = None
        self.ws = Connection(ConnectionType.SERVER)
        self.state = PENDING
        self.parts: list[str | bytes] = []
        self.size = 0
        self.in_flight = 0
        self.waiting: deque[str | bytes] = deque()
        self.queue: deque[bytes] = deque()
        self.write_paused = False
        self.read_paused = False
        self.last_active = 0.0
        self.opened = 0.0
        self.close_deadline = 0.0
        self.seq = 0
        self.calls: set[asyncio.Task[Any]] = set()
        self.close_code = 1006
        self.close_reason = ""
        self.ended = False
        self.connected = connected
        """The connect call was made (and accepted): a disconnect call is owed."""

    @property
    def open(self) -> bool:
        return self.state == OPEN

    # the handler contract (Reply.switching)

    def connection_made(self, transport: Any, req: Any) -> None:
        self.transport = transport
        self.state = OPEN
        self.opened = self.last_active = self.hub.rt.clock.now
        self.hub.add(self)

    def data_received(self, data: bytes) -> None:
        if self.state == ENDED:
            return
        self.last_active = self.hub.rt.clock.now
        ws = self.ws
        try:
            ws.receive_data(data)
        except LocalProtocolError:
            return  # the close handshake is complete: nothing more is read
        for event in ws.events():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                self._part(event)
            elif kind is Ping:
                self._write(ws.send(event.response()))
            elif kind is CloseConnection:
                self._closed_by_client(event)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        queue = self.queue
        transport = self.transport
        while queue and not self.write_paused and transport is not None:
            transport.write(queue.popleft())
        if not self.write_paused:
            self._maybe_resume_reading()

    def sweep(self, now: float) -> None:
        state = self.state
        if state == OPEN:
            if now - self.last_active > self.route.idle_timeout:
                self.close(1000, "idle timeout")
        elif state == CLOSING and now > self.close_deadline and self.transport is not None:
            self.transport.abort()

    def close_going_away(self) -> None:
        """The end of a drain's grace period: 1001, and the connection ends now (the worker exits)."""
        if self.state == OPEN:
            self.close(1001, "going away")
        if self.transport is not None:
            self.transport.close()
        self._end()

    # messages from the client

    def _part(self, event: Any) -> None:
        if self.state != OPEN:
            return
        data = event.data
        self.size += len(data) if type(data) is bytes or type(data) is bytearray else len(data.encode("utf-8"))
        if self.size > self.route.max_message:
            self.close(1009, f"message larger than {self.route.max_message} bytes")
            return
        if event.message_finished and not self.parts:
            message = data
        else:
            self.parts.append(data)
            if not event.message_finished:
                return
            message = "".join(self.parts) if type(data) is str else b"".join(self.parts)  # type: ignore[arg-type]
            self.parts = []
        self.size = 0
        if type(message) is bytearray:
            message = bytes(message)
        if self.in_flight < self.route.max_in_flight:
            self._start(message)
        else:
            self.waiting.append(message)
            self._pause_reading()

    def _start(self, message: str | bytes) -> None:
        self.in_flight += 1
        if self.in_flight >= self.route.max_in_flight:
            self._pause_reading()
        task = self.hub.spawn(self._call(message))
        self.calls.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[Any]) -> None:
        self.calls.discard(task)
        self.in_flight -= 1
        if self.state != OPEN:
            return
        if self.waiting:
            self._start(self.waiting.popleft())
        else:
            self._maybe_resume_reading()

    async def _call(self, message: str | bytes) -> None:
        route = self.route
        text = type(message) is str
        body = message.encode("utf-8") if text else message  # type: ignore[union-attr]
        key = route.route_key_of(message) if text else b"$default"  # type: ignore[arg-type]
        self.seq += 1
        rid = b"%s.%d" % (self.rid, self.seq)
        headers = [*self.headers, (b"x-route-key", key), (b"x-request-id", rid),
                   (b"content-type", _TEXT if text else _BINARY)]
        try:
            response = await self.hub.rt.client.request(
                route.group, b"POST", route.path, headers, body, timeout=route.timeout,
                max_body=route.max_message, host=self.host, key_request=self.key_request,
            )
        except UpstreamError as exc:
            self.hub.rt.upstream_error(exc.target, exc.kind, exc.message, rid)
            if exc.kind == "too_large":
                self._failed(502, "too_large", f"upstream answer larger than {route.max_message} bytes", rid)
            else:
                self._failed(exc.status, exc.kind, _MESSAGES.get(exc.kind, exc.message), rid)
            return
        if not 200 <= response.status < 300:
            self._failed(502, "status", f"upstream answered {response.status}", rid)
            return
        answer = response.body
        if not answer:
            return
        ctype = response.header(b"content-type")
        if ctype is not None and ctype.split(b";", 1)[0].strip().lower() == _BINARY:
            self._send(answer, True)
            return
        try:
            self._send(answer.decode("utf-8"), True)
        except UnicodeDecodeError:
            self._failed(502, "invalid_text", "upstream answer is not UTF-8 text (send binary as "
                         "application/octet-stream)", rid)

    def _failed(self, status: int, code: str, message: str, rid: bytes) -> None:
        """A call that got no usable answer: an error message, or a close (`on_error: close`)."""
        if self.state != OPEN:
            return
        if self.route.close_on_error:
            self.close(1011, f"upstream failed: {message}".encode()[:120].decode("utf-8", "ignore"))
            return
        error = {"error": {"status": status, "code": code, "message": message, "request_id": rid.decode("latin-1")}}
        self._send(orjson.dumps(error).decode("ascii"), True)

    # messages to the client

    def push(self, data: str | bytes) -> int:
        """A push from the backend: 202 written, 203 queued (the client reads slowly), 429 the
        queue is full, 404 the connection is closing."""
        return self._send(data, False)

    def _send(self, data: str | bytes, always: bool) -> int:
        if self.state != OPEN:
            return 404
        frame = self.ws.send(TextMessage(data=data) if type(data) is str else BytesMessage(data=data))
        self.last_active = self.hub.rt.clock.now
        if self.write_paused:
            if not always and len(self.queue) >= self.route.max_queued:
                return 429
            self.queue.append(frame)
            return 203
        self.transport.write(frame)
        return 202

    def _write(self, data: bytes) -> None:
        if self.transport is not None and data:
            self.transport.write(data)

    # closing

    def close(self, code: int, reason: str) -> None:
        """Starts the close handshake (no more messages either way)."""
        if self.state != OPEN:
            return
        self.state = CLOSING
        self.close_code, self.close_reason = code, reason
        self.close_deadline = self.hub.rt.clock.now + CLOSE_WAIT
        self.waiting.clear()
        self._cancel_calls()
        if self.queue and self.transport is not None:
            self.transport.writelines(self.queue)  # what was owed goes before the close frame
            self.queue.clear()
        try:
            self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
        except LocalProtocolError:
            if self.transport is not None:
                self.transport.close()

    def _closed_by_client(self, event: CloseConnection) -> None:
        ws = self.ws
        if self.state == OPEN:
            self.close_code, self.close_reason = event.code, event.reason or ""
        if ws.state in (ConnectionState.REMOTE_CLOSING, ConnectionState.OPEN):
            # The client closes (REMOTE_CLOSING), or sent what wsproto refused (OPEN: a protocol
            # error, 1002/1007/...): answer with the same code, then close.
            try:
                self._write(ws.send(event.response()))
            except LocalProtocolError:
                pass
        self.state = CLOSING
        self.waiting.clear()
        self._cancel_calls()
        if self.transport is not None:
            self.transport.close()

    def _cancel_calls(self) -> None:
        for task in tuple(self.calls):
            task.cancel()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.state = ENDED
        self.hub.remove(self)
        self._cancel_calls()
        self.queue.clear()
        if self.connected and self.route.disconnect_path is not None:
            self.hub.spawn(self._disconnect())

    async def _disconnect(self) -> None:
        route = self.route
        body = orjson.dumps({"code": self.close_code, "reason": self.close_reason})
        rid = b"%s.end" % self.rid
        headers = [*self.headers, (b"x-route-key", b"$disconnect"), (b"x-request-id", rid),
                   (b"content-type", _JSON)]
        try:
            await self.hub.rt.client.request(
                route.group, b"POST", route.disconnect_path, headers, body, timeout=route.timeout, max_body=4096,
                host=self.host, key_request=self.key_request,
            )
        except UpstreamError as exc:
            self.hub.rt.upstream_error(exc.target, exc.kind, f"disconnect call: {exc.message}", rid)

    def __del__(self) -> None:
        # A handshake whose connect call was accepted, but whose client went away before the 101
        # could be sent: the exchange drops the handler unused, and the backend is still owed its
        # disconnect call.
        if self.state == PENDING and self.connected and not self.ended and self.route.disconnect_path is not None:
            self.ended = True
            try:
                self.hub.spawn(self._disconnect())
            except RuntimeError:
                pass

    # flow control

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if self.read_paused and not self.write_paused and self.in_flight < self.route.max_in_flight \
                and not self.waiting and self.state == OPEN:
            self.read_paused = False
            self.transport.resume_reading()

    def info(self) -> dict[str, Any]:
        now = self.hub.rt.clock.now
        return {
            "id": self.id,
            "open_for": round(now - self.opened, 3),
            "idle_for": round(now - self.last_active, 3),
            "in_flight": self.in_flight,
            "waiting": len(self.waiting),
            "queued": len(self.queue),
            "request_id": self.rid.decode("latin-1"),
        }
