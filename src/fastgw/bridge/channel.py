"""The push channel: how the master hands a push (`POST /connections/{id}` on the admin listener)
to the one worker that holds the connection, and gets its answer back.

Why this shape. Bridged connections live in the workers; the admin API lives in the master, which
never touches a request and must never wait on anything (its selector loop also supervises the
workers). So:

- A **connection id names its worker**: `GENERATION.SLOT.TOKEN`, where TOKEN is 128 random bits
  (`secrets.token_urlsafe(16)`). The master routes by the first two fields without asking anyone
  (the old generation's workers keep their connections until a reload's grace period ends, so the
  generation is part of the name); only the worker can tell whether TOKEN is one of its
  connections, so an id cannot be guessed, and a wrong one costs a dictionary miss.
- **One unix socket pair per worker**, made by the master right before it forks that worker
  (`socket.socketpair`, SOCK_STREAM): nothing on the filesystem, no address another process could
  connect to, no permissions to get right; only the master and that worker hold its ends, and the
  worker's end closing (it exited) is an EOF the master sees at once. A stream, not datagrams, so
  that a message of any allowed size fits (a SOCK_SEQPACKET datagram is bounded by the socket's
  send buffer) and order is kept.
- The master writes without blocking: frames queue on its side when the socket is full (bounded,
  MAX_BUFFERED; beyond it a push is refused with 503) and go out when it is writable again.

Frames, both ways: a 4-byte length of the rest, a 4-byte request number (the master's, echoed
back), then for a request `op` (1 byte: OP_TEXT, OP_BINARY, OP_CLOSE, OP_INFO), the id's length
(1 byte), the id and the payload; for an answer a 2-byte HTTP status and a JSON object.
"""
from __future__ import annotations

import struct

__all__ = [
    "MAX_BUFFERED", "MAX_FRAME", "MAX_PUSH", "OP_BINARY", "OP_CLOSE", "OP_INFO", "OP_TEXT", "FrameReader",
    "encode_answer", "encode_request", "parse_id",
]

MAX_PUSH = 1024 * 1024
"""The largest push body the admin API takes (a connection's own `max_message` may be smaller)."""
MAX_FRAME = MAX_PUSH + 512
MAX_BUFFERED = 8 * MAX_PUSH
"""Bytes the master queues for one worker before refusing pushes to it (a worker that stopped
reading its channel is stuck, and its heartbeat check will replace it)."""

OP_TEXT = ord("T")
OP_BINARY = ord("B")
OP_CLOSE = ord("C")
OP_INFO = ord("I")

_HEAD = struct.Struct("!II")
_REQUEST = struct.Struct("!BB")
_STATUS = struct.Struct("!H")


def encode_request(number: int, op: int, cid: bytes, payload: bytes = b"") -> bytes:
    body = _REQUEST.pack(op, len(cid)) + cid + payload
    return _HEAD.pack(len(body), number) + body


def decode_request(body: bytes) -> tuple[int, bytes, bytes]:
    """(op, id, payload) of a request frame's body."""
    op, n = _REQUEST.unpack_from(body)
    return op, body[2 : 2 + n], body[2 + n :]


def encode_answer(number: int, status: int, payload: bytes) -> bytes:
    body = _STATUS.pack(status) + payload
    return _HEAD.pack(len(body), number) + body


def decode_answer(body: bytes) -> tuple[int, bytes]:
    return _STATUS.unpack_from(body)[0], body[2:]


class FrameReader:
    """Splits a byte stream into (number, body) frames; a frame longer than MAX_FRAME is a broken
    peer (ValueError)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= _HEAD.size:
            length, number = _HEAD.unpack_from(buf, pos)
            if length > MAX_FRAME:
                raise ValueError(f"push channel frame of {length} bytes")
            end = pos + _HEAD.size + length
            if len(buf) < end:
                break
            out.append((number, bytes(buf[pos + _HEAD.size : end])))
            pos = end
        if pos:
            del buf[:pos]
        return out


def parse_id(cid: str) -> tuple[int, int] | None:
    """(generation, slot) named by a connection id, or None when it is not one."""
    gen, sep, rest = cid.partition(".")
    slot, sep2, token = rest.partition(".")
    if not (sep and sep2 and gen.isdigit() and slot.isdigit() and 16 <= len(token) <= 64) or len(gen) > 9 \
            or len(slot) > 6:
        return None
    if not all(c.isalnum() or c in "-_" for c in token) or not token.isascii():
        return None
    return int(gen), int(slot)
