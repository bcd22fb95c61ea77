"""The auth agent: one process per host (per worker generation, like the health checker),
forked and supervised by the master, for the auth work that must happen once per host rather than
once per worker (DESIGN §2, §8):

- **JWKS URLs**: each distinct URL is fetched at start (unless the previous generation's
  document, copied into this one's shared memory, is younger than `jwks_refresh`), then every
  `jwks_refresh`, and when a worker meets an unknown `kid` (a refresh request in the shared
  slot), at most once per 30 s. A failed fetch keeps the last good document and is retried
  sooner (5 s, doubling up to the refresh interval). Documents are parsed here first: a document
  with no usable key is a failed fetch, not an empty key set.
- **Token introspection** (RFC 7662): workers send tokens over the generation's Unix socket; the
  agent answers from its cache (active tokens until `exp`, at most `cache_ttl`; inactive ones for
  `inactive_ttl`; keyed by the token's SHA-256, bounded), coalesces concurrent introspections of
  one token into one call, and otherwise POSTs to the server with the client's credentials
  (HTTP Basic, RFC 6749 §2.3.1). No answer and nothing cached: an error, which workers turn into
  503 (fail closed); for one second after a failure to reach the server, other tokens get the
  same error without another call, so that a down server is not hammered.

HTTP calls go through httpx (connection pooling, timeouts, TLS verification); nothing here parses
HTTP itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
import time
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from fastgw.backoff import Backoff
from fastgw.config.model import IntrospectionAuth
from fastgw.log import log_exception, process_log

from .jwks import MAX_JWKS, parse_jwks
from .jwt import REFETCH_INTERVAL
from .shared import AuthShared, JwksSlot, UrlSource

__all__ = ["Introspector", "JwksFetcher", "run_agent"]

RETRY_FIRST = 5.0
POLL = 0.05
DOWN_FOR = 1.0
MAX_INTROSPECTION_BODY = 64 * 1024


def _client(ca: str | None, timeout: float) -> httpx.AsyncClient:
    verify: Any = ssl.create_default_context(cafile=ca) if ca else True
    return httpx.AsyncClient(verify=verify, timeout=timeout, follow_redirects=False, trust_env=False)


class JwksFetcher:
    """Keeps one JWKS URL's slot up to date."""

    def __init__(self, source: UrlSource, slot: JwksSlot, log: Any = process_log) -> None:
        self.source = source
        self.slot = slot
        self.log = log
        self.client = _client(source.ca, source.timeout)
        self.failures = 0
        self.backoff = Backoff(RETRY_FIRST, source.refresh)

    async def run(self) -> None:
        slot, source = self.slot, self.source
        due = slot.last_ok + source.refresh if slot.last_ok else 0.0
        seen = slot.requested
        while True:
            now = time.monotonic()
            requested = slot.requested
            asked = requested != seen
            seen = requested
            if now >= due or (asked and now - slot.last_attempt >= REFETCH_INTERVAL):
                ok = await self.fetch()
                if ok:
                    self.backoff.reset()
                    due = time.monotonic() + source.refresh
                else:
                    due = time.monotonic() + self.backoff.failed()
                seen = slot.requested
            await asyncio.sleep(POLL)

    async def fetch(self) -> bool:
        url = self.source.url
        status = 0
        why = ""
        try:
            async with self.client.stream("GET", url, headers={"accept": "application/json"}) as resp:
                status = resp.status_code
                if status == 200:
                    body = b""
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS:
                            raise ValueError(f"document over {MAX_JWKS // 1024} KiB")
                    keys = parse_jwks(body)
                    first = self.slot.last_ok == 0.0
                    changed = first or self.slot.read()[1] != body
                    self.slot.write(body, time.monotonic())
                    if self.failures or changed:
                        self.log(f"jwks {url}: {len(keys)} key(s){' (changed)' if changed and not first else ''}")
                    self.failures = 0
                    return True
                why = f"status {status}"
        except httpx.HTTPError as exc:
            why = str(exc) or type(exc).__name__
        except ValueError as exc:
            why = str(exc)
        self.slot.failed(status, time.monotonic())
        self.failures += 1
        kept = "keeping the last good keys" if self.slot.last_ok else "no keys yet"
        self.log(f"jwks {url}: fetch failed ({why}); {kept}")
        return False


class Introspector:
    """Introspection of the tokens of one `type: introspection` auth, for the whole host."""

    def __init__(self, spec: IntrospectionAuth, log: Any = process_log) -> None:
        self.spec = spec
        self.log = log
        self.client = _client(spec.ca, spec.timeout)
        basic = f"{quote(spec.client_id, safe='')}:{quote(spec.client_secret, safe='')}"
        self.authorization = "Basic " + base64.b64encode(basic.encode()).decode()
        self.cache: dict[bytes, dict[str, Any]] = {}
        self.inflight: dict[bytes, asyncio.Task[dict[str, Any]]] = {}
        self.down_until = 0.0
        self.calls = 0

    async def introspect(self, token: str) -> dict[str, Any]:
        digest = hashlib.sha256(token.encode()).digest()
        hit = self.cache.get(digest)
        if hit is not None:
            if hit["until"] > time.time():
                return hit
            del self.cache[digest]
        task = self.inflight.get(digest)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._call(token, digest))
            self.inflight[digest] = task
            task.add_done_callback(lambda _t: self.inflight.pop(digest, None))
        return await asyncio.shield(task)

    async def _call(self, token: str, digest: bytes) -> dict[str, Any]:
        spec = self.spec
        if time.monotonic() < self.down_until:
            return {"error": "the authorization server failed a moment ago"}
        self.calls += 1
        try:
            resp = await self.client.post(
                spec.url,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"authorization": self.authorization, "accept": "application/json"},
            )
            body = resp.content
        except httpx.HTTPError as exc:
            self.down_until = time.monotonic() + DOWN_FOR
            return {"error": f"{spec.url}: {exc or type(exc).__name__}"}
        if resp.status_code != 200 or len(body) > MAX_INTROSPECTION_BODY:
            self.down_until = time.monotonic() + DOWN_FOR
            return {"error": f"{spec.url} answered {resp.status_code}"}
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return {"error": f"{spec.url} answered with something that is not JSON"}
        if not isinstance(doc, dict) or not isinstance(doc.get("active"), bool):
            return {"error": f'{spec.url} answered without a boolean "active"'}
        now = time.time()
        result: dict[str, Any]
        exp = doc.get("exp")
        nbf = doc.get("nbf")
        active = doc["active"] is True
        if active and isinstance(exp, (int, float)) and exp <= now:
            active = False
        if active and isinstance(nbf, (int, float)) and nbf > now:
            active = False
        if active:
            until = now + spec.cache_ttl
            if isinstance(exp, (int, float)):
                until = min(until, float(exp))
            claims = {k: v for k, v in doc.items() if k != "active"}
            result = {"active": True, "claims": claims, "until": until}
        else:
            result = {"active": False, "until": now + spec.inactive_ttl}
        if spec.cache_size:
            if len(self.cache) >= spec.cache_size:
                del self.cache[next(iter(self.cache))]
            self.cache[digest] = result
        return result


class Agent:
    def __init__(self, shared: AuthShared) -> None:
        self.shared = shared
        self.fetchers = [JwksFetcher(source, shared.slot(source.key)) for source in shared.sources]
        self.introspectors = {
            name: Introspector(spec) for name, spec in shared.auth.items() if isinstance(spec, IntrospectionAuth)
        }
        self.uid = os.getuid()

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(f.run()) for f in self.fetchers]
        server = None
        if self.shared.listener is not None:
            server = await asyncio.start_unix_server(self._serve, sock=self.shared.listener)
        try:
            if tasks:
                await asyncio.gather(*tasks)
            else:
                await asyncio.Event().wait()
        finally:
            if server is not None:
                server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock: socket.socket = writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        if uid != self.uid:
            writer.close()
            return
        tasks: set[asyncio.Task[None]] = set()
        try:
            while line := await reader.readline():
                task = asyncio.ensure_future(self._answer(line, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            msg = orjson.loads(line)
            rid = msg["id"]
            introspector = self.introspectors[msg["auth"]]
            token = msg["token"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        try:
            result = await introspector.introspect(token)
        except Exception as exc:  # never leave a worker waiting: it answers 503 on an error
            log_exception("introspection", exc)
            result = {"error": "internal error"}
        if not writer.is_closing():
            writer.write(orjson.dumps({"id": rid, **result}) + b"\n")


async def run_agent(shared: AuthShared) -> None:
    """The auth agent process's work (`fastgw.server.children` runs it in the process the master
    forks for the generation, and stops it)."""
    await Agent(shared).run()
