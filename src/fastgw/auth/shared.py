"""What the auth agent (one process per host, `fastgw.auth.agent`) shares with the workers of a
generation: created by the master before forking them (DESIGN §2).

- **JWKS documents fetched from URLs**, in anonymous shared memory: one slot per distinct URL
  with a header (a sequence number, the workers' refresh requests, the agent's fetch
  attempts and times) and the last good document. Shared memory rather than files: it is set up
  by the master like every other host-wide state, needs no directory, permissions or cleanup,
  and a reload copies it into the next generation so that new workers start with the keys the
  old ones had, without a fetch. The agent writes a document under a sequence lock (odd while
  writing); a worker copies it out and retries if the number changed meanwhile, then parses it
  only when the number differs from the last it parsed (a worker checks every 0.25 s, and at
  once when it waits for a refetch).
- **The introspection socket**: a listening Unix stream socket in the abstract namespace (no
  file to clean up), created by the master so that it outlives an agent that is restarted;
  workers connect to it by name and the agent accepts only peers of its own user id
  (SO_PEERCRED).

Times are `time.monotonic()` seconds: CLOCK_MONOTONIC is one clock for every process of the host.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass

from fastgw.config.model import AuthSpec, IntrospectionAuth, JwtAuth

from .jwks import MAX_JWKS

__all__ = ["AuthShared", "JwksSlot", "UrlSource", "agent_needed"]

_HEAD = struct.Struct("<QQQddIi")
"""seq, refresh requests, fetch attempts finished, last attempt, last success (monotonic s; 0:
never), document size, status of the last attempt (HTTP status, 0: no answer)."""
_HEAD_SIZE = 64
_STRIDE = _HEAD_SIZE + MAX_JWKS
_SEQ, _REQUESTED, _ATTEMPTS = 0, 8, 16


SourceKey = tuple[str, str | None]
"""A JWKS URL and the CA its server is verified against (None: the system's CAs)."""


@dataclass(frozen=True, slots=True)
class UrlSource:
    """One JWKS URL to fetch, with the tightest settings of the auths that use it. Auths that
    name the same URL with different `jwks_ca` have a source each: keys fetched from a server
    verified against one CA are never trusted by an auth that trusts another."""

    url: str
    refresh: float
    timeout: float
    ca: str | None

    @property
    def key(self) -> SourceKey:
        return (self.url, self.ca)


def source_key(spec: JwtAuth) -> SourceKey:
    assert spec.jwks_url is not None
    return (spec.jwks_url, spec.jwks_ca)


def url_sources(auth: Mapping[str, AuthSpec]) -> list[UrlSource]:
    found: dict[SourceKey, UrlSource] = {}
    for spec in auth.values():
        if isinstance(spec, JwtAuth) and spec.jwks_url is not None:
            key = source_key(spec)
            old = found.get(key)
            refresh = spec.jwks_refresh if old is None else min(old.refresh, spec.jwks_refresh)
            timeout = spec.jwks_timeout if old is None else min(old.timeout, spec.jwks_timeout)
            found[key] = UrlSource(spec.jwks_url, refresh, timeout, spec.jwks_ca)
    return list(found.values())


def agent_needed(auth: Mapping[str, AuthSpec]) -> bool:
    """An agent runs when some auth fetches a JWKS URL or introspects tokens."""
    return any(
        (isinstance(spec, JwtAuth) and spec.jwks_url is not None) or isinstance(spec, IntrospectionAuth)
        for spec in auth.values()
    )


class JwksSlot:
    """One URL's area of the shared memory, as the agent writes it and a worker reads it."""

    __slots__ = ("mm", "off")

    def __init__(self, mm: mmap.mmap, index: int) -> None:
        self.mm = mm
        self.off = index * _STRIDE

    def _head(self) -> tuple[int, int, int, float, float, int, int]:
        return _HEAD.unpack_from(self.mm, self.off)  # type: ignore[return-value]

    @property
    def seq(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, self.off + _SEQ)[0])

    @property
    def requested(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, self.off + _REQUESTED)[0])

    @property
    def attempts(self) -> int:
        return int(struct.unpack_from("<Q", self.mm, self.off + _ATTEMPTS)[0])

    @property
    def last_attempt(self) -> float:
        return self._head()[3]

    @property
    def last_ok(self) -> float:
        return self._head()[4]

    @property
    def status(self) -> int:
        return self._head()[6]

    def request_refresh(self) -> None:
        """A worker asks for a fetch (an unknown kid, or no keys yet). Two workers bumping at
        once may lose one increment: the agent only needs to see a change."""
        struct.pack_into("<Q", self.mm, self.off + _REQUESTED, self.requested + 1)

    def read(self) -> tuple[int, bytes | None]:
        """(sequence number, document or None when none was fetched yet), consistent."""
        for _ in range(1000):
            seq = self.seq
            if seq & 1:
                time.sleep(0)
                continue
            head = self._head()
            size = head[5]
            data = bytes(self.mm[self.off + _HEAD_SIZE: self.off + _HEAD_SIZE + size]) if head[4] else None
            if self.seq == seq:
                return seq, data
        raise RuntimeError("the JWKS slot stayed busy")

    # -- the agent's side --------------------------------------------------------------------------

    def write(self, data: bytes, now: float) -> None:
        """A new good document (already parsed by the agent)."""
        seq, requested, attempts, _, _, _, _ = self._head()
        struct.pack_into("<Q", self.mm, self.off + _SEQ, seq + 1)
        self.mm[self.off + _HEAD_SIZE: self.off + _HEAD_SIZE + len(data)] = data
        _HEAD.pack_into(self.mm, self.off, seq + 1, self.requested, attempts + 1, now, now, len(data), 200)
        struct.pack_into("<Q", self.mm, self.off + _SEQ, seq + 2)

    def failed(self, status: int, now: float) -> None:
        """An attempt that gave no usable document: the last good one stays."""
        seq = self.seq
        struct.pack_into("<Q", self.mm, self.off + _SEQ, seq + 1)
        _, requested, attempts, _, last_ok, size, _ = self._head()
        _HEAD.pack_into(self.mm, self.off, seq + 1, self.requested, attempts + 1, now, last_ok, size, status)
        struct.pack_into("<Q", self.mm, self.off + _SEQ, seq + 2)

    def copy_from(self, other: JwksSlot) -> None:
        seq, data = other.read()
        head = other._head()
        self.mm[self.off: self.off + _HEAD_SIZE] = other.mm[other.off: other.off + _HEAD_SIZE]
        if data is not None:
            self.mm[self.off + _HEAD_SIZE: self.off + _HEAD_SIZE + len(data)] = data
        _HEAD.pack_into(self.mm, self.off, seq, 0, 0, head[3], head[4], len(data or b""), head[6])


class AuthShared:
    """A generation's auth state shared by its agent and workers."""

    def __init__(self, auth: Mapping[str, AuthSpec], previous: AuthShared | None = None) -> None:
        self.auth = auth
        self.sources = url_sources(auth)
        self.index = {s.key: i for i, s in enumerate(self.sources)}
        self.mm = mmap.mmap(-1, max(1, len(self.sources)) * _STRIDE)
        self.slots = [JwksSlot(self.mm, i) for i in range(len(self.sources))]
        if previous is not None:
            for key, i in self.index.items():
                j = previous.index.get(key)
                if j is not None:
                    self.slots[i].copy_from(previous.slots[j])
        self.needed = agent_needed(auth)
        self.socket_name = ""
        self.listener: socket.socket | None = None
        if any(isinstance(s, IntrospectionAuth) for s in auth.values()):
            self.socket_name = f"\0fastgw-auth-{os.getpid()}-{os.urandom(8).hex()}"
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.socket_name)
            self.listener.listen(128)

    def slot(self, key: SourceKey) -> JwksSlot:
        return self.slots[self.index[key]]

    def fds(self) -> set[int]:
        return {self.listener.fileno()} if self.listener is not None else set()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
