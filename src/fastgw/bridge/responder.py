"""The responder of a `websocket: {bridge: ...}` route: the gateway answers the WebSocket handshake
itself, then the connection is a `BridgeConnection`.

Per handshake: the request must be a WebSocket upgrade (else 426), version 13 (else 426 with
`Sec-WebSocket-Version: 13`) with a valid `Sec-WebSocket-Key` (else 400). With a `connect_path`,
a POST goes there first (with the handshake's query string), and only a 2xx lets the connection
open: a 4xx answer refuses the handshake with that status, anything else with 502 (504 on a
timeout, 503 without a usable target). Then `101 Switching Protocols` with the
`Sec-WebSocket-Accept` wsproto computes, and the connection's id in `X-Connection-Id`.
No subprotocol and no extension (permessage-deflate) is negotiated.

Every call of the connection carries `X-Connection-Id`, `X-Route-Key` (`$connect`,
`$disconnect`, or the message's), `X-Request-ID` (the handshake's, plus `.N` per message and
`.end` for the disconnect), `X-Forwarded-For` and `X-Forwarded-Host` of the handshake, the
headers the route's auth vouches for (forwarded claims, consumer), and the handshake headers named
in `forward_headers`.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from wsproto.utilities import generate_accept_token

from fastgw._proxy import Reply, Request
from fastgw.config.model import BRIDGE_IDLE_TIMEOUT, Route
from fastgw.pipeline import RequestPhase
from fastgw.upstream.client import UpstreamError

from .connection import BridgeConnection

__all__ = ["BridgeResponder", "BridgeRoute", "route_bridge_responder"]

_ROUTE_KEY_CHARS = frozenset(range(0x21, 0x7F))
MAX_ROUTE_KEY = 128
_DEFAULT = b"$default"


class BridgeRoute:
    """A route's bridge settings, compiled once per worker."""

    __slots__ = (
        "group", "path", "connect_path", "disconnect_path", "route_key", "max_message", "max_in_flight",
        "max_queued", "timeout", "close_on_error", "forward", "idle_timeout", "own_host", "hash_by_path", "vouched",
    )

    def __init__(self, rt: Any, route: Route) -> None:
        ws = route.websocket
        assert ws is not None and ws.bridge is not None
        bridge = ws.bridge
        self.group = rt.groups[bridge.upstream]
        upstream = rt.config.upstreams[bridge.upstream]
        self.path = bridge.path.encode("ascii")
        self.connect_path = bridge.connect_path.encode("ascii") if bridge.connect_path else None
        self.disconnect_path = bridge.disconnect_path.encode("ascii") if bridge.disconnect_path else None
        self.route_key = tuple(bridge.route_key.split(".")) if bridge.route_key else None
        self.max_message = bridge.max_message
        self.max_in_flight = bridge.max_in_flight
        self.max_queued = bridge.max_queued
        self.timeout = bridge.timeout
        self.close_on_error = bridge.on_error == "close"
        vouched = set(rt.config.auth_headers)
        self.forward = tuple(n.encode("latin-1") for n in bridge.forward_headers if n not in vouched)
        """Handshake headers sent along; never one the gateway vouches for (it sends its own)."""
        self.idle_timeout = ws.idle_timeout or BRIDGE_IDLE_TIMEOUT
        self.own_host = upstream.host_header is not None
        self.hash_by_path = upstream.balance == "hash" and upstream.hash_key is not None \
            and upstream.hash_key.kind == "path"

    def route_key_of(self, message: str) -> bytes:
        """The route key of a text message: the `route_key` field of its JSON object when that is
        a string or number of visible ASCII (at most MAX_ROUTE_KEY bytes), else `$default`."""
        keys = self.route_key
        if keys is None or not message.lstrip(" \t\r\n").startswith("{"):
            return _DEFAULT
        try:
            value: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return _DEFAULT
        for key in keys:
            if not isinstance(value, dict):
                return _DEFAULT
            value = value.get(key)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return _DEFAULT
        raw = str(value).encode("utf-8")
        if not raw or len(raw) > MAX_ROUTE_KEY or raw.translate(None, bytes(_ROUTE_KEY_CHARS)):
            return _DEFAULT
        return raw


class BridgeResponder:
    """The RESPOND filter of a bridge route (see the module docstring)."""

    request_phase = RequestPhase.RESPOND
    __slots__ = ("route", "hub", "rt")

    def __init__(self, rt: Any, route: Route) -> None:
        self.route = BridgeRoute(rt, route)
        self.hub = rt.bridge
        self.rt = rt

    def on_request(self, req: Request) -> Any:
        refusal, key = _handshake(req)
        if refusal is not None:
            return refusal
        assert key is not None
        cid = self.hub.new_id()
        headers = self._headers(req, cid)
        route = self.route
        host = None if route.own_host else req.host
        key_request = None if route.hash_by_path else req
        if route.connect_path is None:
            conn = BridgeConnection(route, self.hub, cid, req.rid, headers, host, key_request, False)
            return _switch(key, cid, conn)
        return self._connect(req, key, cid, headers, host, key_request)

    async def _connect(
        self, req: Request, key: bytes, cid: str, headers: list[tuple[bytes, bytes]], host: bytes | None,
        key_request: Any,
    ) -> Reply:
        route = self.route
        assert route.connect_path is not None
        target = route.connect_path
        if req.query:
            target += (b"&" if b"?" in target else b"?") + req.query[1:]
        call_headers = [*headers, (b"x-route-key", b"$connect"), (b"x-request-id", req.rid)]
        try:
            response = await self.rt.client.request(
                route.group, b"POST", target, call_headers, b"", timeout=route.timeout, max_body=64 * 1024,
                host=host, key_request=key_request,
            )
        except UpstreamError as exc:
            self.rt.upstream_error(exc.target, exc.kind, f"connect call: {exc.message}", req.rid)
            return Reply.error(exc.status, "the connection could not be set up: the upstream failed")
        except ValueError:
            return Reply.error(400, "the handshake's query cannot be sent upstream")
        status = response.status
        if 400 <= status < 500:
            return Reply.error(status, "connection refused by the upstream")
        if not 200 <= status < 300:
            return Reply.error(502, f"connection refused: the upstream answered {status}")
        conn = BridgeConnection(route, self.hub, cid, req.rid, headers, host, key_request, True)
        return _switch(key, cid, conn)

    def _headers(self, req: Request, cid: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-connection-id", cid.encode("ascii")), (b"x-forwarded-for", req.client_address)]
        if req.host is not None:
            headers.append((b"x-forwarded-host", req.host))
        lines = req.upstream_lines
        if lines:
            # What auth vouches for (forwarded claims, consumer), as the exchange would send it.
            for line in lines.split(b"\r\n"):
                name, sep, value = line.partition(b": ")
                if sep:
                    headers.append((name, value))
        for name in self.route.forward:
            for value in req.header_values(name):
                headers.append((name, value))
        return headers


def _handshake(req: Request) -> tuple[Reply | None, bytes | None]:
    """(a refusal, None), or (None, the client's Sec-WebSocket-Key)."""
    upgrade = req.header(b"upgrade")
    connection = req.header(b"connection")
    if req.method != b"GET" or req.version != "1.1" or upgrade is None or upgrade.strip().lower() != b"websocket" \
            or connection is None or b"upgrade" not in connection.lower():
        return Reply.error(426, "this route takes WebSocket connections only",
                           [(b"upgrade", b"websocket"), (b"sec-websocket-version", b"13")]), None
    version = req.header(b"sec-websocket-version")
    if version is None or version.strip() != b"13":
        return Reply.error(426, "WebSocket version 13 is required", [(b"sec-websocket-version", b"13")]), None
    key = req.header(b"sec-websocket-key")
    try:
        valid = key is not None and len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        return Reply.error(400, "invalid Sec-WebSocket-Key"), None
    assert key is not None
    return None, key.strip()


def _switch(key: bytes, cid: str, conn: BridgeConnection) -> Reply:
    return Reply.switching(
        [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
         (b"sec-websocket-accept", generate_accept_token(key)), (b"x-connection-id", cid.encode("ascii"))],
        conn,
    )


def route_bridge_responder(rt: Any, route: Route) -> BridgeResponder | None:
    """The chain builder: the route's responder, or None when the route does not bridge."""
    if route.websocket is None or route.websocket.bridge is None or getattr(rt, "bridge", None) is None:
        return None
    return BridgeResponder(rt, route)
