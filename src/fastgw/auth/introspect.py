"""OAuth2 token introspection (RFC 7662), the worker's side: `IntrospectionAuthenticator`.

A worker never calls the authorization server itself: it asks the host's auth agent
(`fastgw.auth.agent`) over a Unix socket, so that the result cache and the coalescing of
concurrent introspections of one token hold for the whole host, not per worker. The worker keeps
a small cache of its own (the agent's answer says until when it is good), so that a token seen
before costs no message at all, and coalesces its own concurrent requests for one token into one
message.

Messages are JSON lines. Worker -> agent: `{"id": N, "auth": NAME, "token": TOKEN}`. Agent ->
worker: `{"id": N, "active": true, "claims": {...}, "until": WALL_TIME}`, `{"id": N, "active":
false, "until": ...}` or `{"id": N, "error": "..."}` (no answer from the server, nothing cached:
the request fails closed with 503).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable
from typing import Any

import orjson

from fastgw._proxy import Reply
from fastgw.config.model import IntrospectionAuth
from fastgw.log import process_log

from .tokens import AMBIGUOUS, Refusals, TokenReader, header_safe, valid_b64token

__all__ = ["AgentClient", "IntrospectionAuthenticator"]

AGENT_TIMEOUT_EXTRA = 1.0
"""Seconds a worker waits for the agent beyond the auth's own `timeout`."""


class _AgentProtocol(asyncio.Protocol):
    def __init__(self, client: AgentClient) -> None:
        self.client = client
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line:
                self.client.answer(orjson.loads(line))

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(self)


class AgentClient:
    """One worker's connection to the agent, opened on first use and again after it is lost."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.loop = loop
        self.proto: _AgentProtocol | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self._connecting: asyncio.Task[_AgentProtocol] | None = None

    async def _connect(self) -> _AgentProtocol:
        if self.proto is not None:
            return self.proto
        if self._connecting is None or self._connecting.done():
            self._connecting = self.loop.create_task(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _AgentProtocol:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # A Unix socket connects at once, or fails at once with a full backlog (EAGAIN).
            sock.setblocking(False)
            sock.connect(self.name)
            _, proto = await self.loop.create_unix_connection(lambda: _AgentProtocol(self), sock=sock)
        except OSError:
            sock.close()
            raise
        self.proto = proto
        return proto

    async def ask(self, auth: str, token: bytes, timeout: float) -> dict[str, Any]:
        try:
            proto = await self._connect()
        except OSError as exc:
            return {"error": f"auth agent unreachable: {exc.strerror or exc}"}
        self.next_id += 1
        rid = self.next_id
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pending[rid] = fut
        assert proto.transport is not None
        proto.transport.write(orjson.dumps({"id": rid, "auth": auth, "token": token.decode("ascii")}) + b"\n")
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return {"error": "no answer from the auth agent in time"}
        finally:
            self.pending.pop(rid, None)

    def answer(self, msg: dict[str, Any]) -> None:
        fut = self.pending.get(msg.get("id", -1))
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def lost(self, proto: _AgentProtocol) -> None:
        if self.proto is proto:
            self.proto = None
        for fut in self.pending.values():
            if not fut.done():
                fut.set_result({"error": "the auth agent closed the connection"})


class IntrospectionAuthenticator:
    """`authenticate(req)`: None on a cached active token, else an awaitable of None or a
    refusal (401 for an inactive or malformed token, 503 when the authorization server cannot be
    asked and the token is not cached)."""

    __slots__ = (
        "spec", "name", "read", "refusals", "client", "cache", "cache_size", "inflight", "forward",
        "consumer_claim", "timeout", "_logged",
    )

    def __init__(self, spec: IntrospectionAuth, client: AgentClient | None) -> None:
        self.spec = spec
        self.name = spec.name
        self.read = TokenReader(spec.sources)
        self.refusals = Refusals()
        self.client = client
        self.cache: dict[bytes, tuple[float, Any, Any, bytes]] = {}
        self.cache_size = spec.cache_size
        self.inflight: dict[bytes, asyncio.Future[Any]] = {}
        self.forward = tuple((claim, header.encode("latin-1")) for claim, header in spec.forward_claims)
        self.consumer_claim = spec.consumer_claim
        self.timeout = spec.timeout + AGENT_TIMEOUT_EXTRA
        self._logged = 0.0

    def authenticate(self, req: Any) -> Reply | None | Awaitable[Reply | None]:
        token = self.read(req)
        if token is None:
            return self.refusals.missing
        if token is AMBIGUOUS:
            return self.refusals.ambiguous
        entry = self.cache.get(token)
        if entry is not None:
            if entry[0] > time.time():
                return self._apply(req, entry)
            del self.cache[token]
        if len(token) > self.spec.max_token or not valid_b64token(token):
            return self.refusals.invalid
        if self.client is None:
            return self.refusals.unavailable
        return self._introspect(req, token)

    def _apply(self, req: Any, entry: tuple[float, Any, Any, bytes]) -> Reply | None:
        if entry[1] is None:
            return self.refusals.invalid
        req.claims = entry[1]
        req.identity = entry[2]
        if entry[3]:
            req.add_upstream_lines(entry[3])
        return None

    async def _introspect(self, req: Any, token: bytes) -> Reply | None:
        fut = self.inflight.get(token)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self.inflight[token] = fut
            try:
                fut.set_result(await self._ask(token))
            finally:
                del self.inflight[token]
        entry = await asyncio.shield(fut) if not fut.done() else fut.result()
        if entry is None:
            return self.refusals.unavailable
        return self._apply(req, entry)

    async def _ask(self, token: bytes) -> Any:
        assert self.client is not None
        msg = await self.client.ask(self.name, token, self.timeout)
        if "error" in msg:
            now = time.monotonic()
            if now - self._logged >= 10.0:
                self._logged = now
                process_log(f"auth {self.name}: introspection failed: {msg['error']} (answering 503)")
            return None
        until = float(msg.get("until", 0.0))
        if msg.get("active") is True and isinstance(msg.get("claims"), dict):
            claims = msg["claims"]
            identity = None
            for name in (self.consumer_claim, "sub", "username", "client_id"):
                value = claims.get(name)
                if isinstance(value, str) and value:
                    identity = value
                    break
            lines = b"".join(
                name + b": " + header_safe(claims[claim]) + b"\r\n"
                for claim, name in self.forward if claims.get(claim) is not None
            )
            entry: tuple[float, Any, Any, bytes] = (until, claims, identity, lines)
        else:
            entry = (until, None, None, b"")
        if self.cache_size and until > time.time():
            cache = self.cache
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
            cache[token] = entry
        return entry
