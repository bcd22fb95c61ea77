"""The master's side of the push channels (channel.py): one per worker of a generation with a bridge
route, made before the fork; the admin API's `/connections/{id}` requests go through `send`.

It runs in the master's selector loop, so nothing here waits: a frame is written as far as the
socket takes it (the rest when it is writable again), answers are read as they come, and a request
a worker has not answered within ANSWER_TIMEOUT is answered 504 by `sweep`. A worker that exits
closes its end: its pending requests are answered 404 (its connections are gone with it).
"""
from __future__ import annotations

import itertools
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson

from fastgw.log import process_log

from .channel import MAX_BUFFERED, FrameReader, decode_answer, encode_request, parse_id

__all__ = ["ANSWER_TIMEOUT", "PushRouter"]

ANSWER_TIMEOUT = 2.0
"""Seconds a worker has to answer a push (it answers at once unless its loop is stuck)."""

Answer = Callable[[int, dict[str, Any]], None]
"""Called once with the HTTP status and JSON answer of a request."""


class _Link:
    __slots__ = ("sock", "generation", "slot", "pid", "out", "reader", "writing")

    def __init__(self, sock: socket.socket, generation: int, slot: int, pid: int) -> None:
        self.sock = sock
        self.generation = generation
        self.slot = slot
        self.pid = pid
        self.out = bytearray()
        self.reader = FrameReader()
        self.writing = False


class PushRouter:
    """Call order: `channel()` before a fork gives the pair; `attach(pid, ...)` in the master after
    it; `send(...)` per admin request; `sweep(now)` every loop turn; `detach(pid)` when the worker
    is reaped (its socket's EOF does the same earlier)."""

    def __init__(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        self.links: dict[int, _Link] = {}
        """pid → link."""
        self.pending: dict[int, tuple[Answer, float, int]] = {}
        """request number → (answer, deadline, pid)."""
        self._numbers = itertools.count(1)

    @staticmethod
    def channel() -> tuple[socket.socket, socket.socket]:
        """(master's end, worker's end)."""
        master, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        master.setblocking(False)
        return master, worker

    def attach(self, pid: int, sock: socket.socket, generation: int, slot: int) -> None:
        link = _Link(sock, generation, slot, pid)
        self.links[pid] = link
        self.sel.register(sock, selectors.EVENT_READ, lambda f, m, link=link: self._on_event(link, m))

    def fds(self) -> set[int]:
        """Descriptors a forked child must close."""
        return {link.sock.fileno() for link in self.links.values()}

    def send(self, cid: str, op: int, payload: bytes, answer: Answer, live: Callable[[int], bool]) -> None:
        """Forwards one request for connection `cid`; `answer` is called exactly once (at once
        when no live worker holds that id). `live(pid)`: whether that worker still runs."""
        named = parse_id(cid)
        link = None
        if named is not None:
            link = next((lk for lk in self.links.values()
                         if (lk.generation, lk.slot) == named and live(lk.pid)), None)
        if link is None:
            answer(404, {"error": "no such connection (unknown, or closed)"})
            return
        if len(link.out) > MAX_BUFFERED:
            answer(503, {"error": "the worker holding this connection is not reading pushes; try again"})
            return
        number = next(self._numbers)
        self.pending[number] = (answer, time.monotonic() + ANSWER_TIMEOUT, link.pid)
        link.out += encode_request(number, op, cid.encode("ascii"), payload)
        self._flush(link)

    def sweep(self, now: float) -> None:
        late = [n for n, (_, deadline, _) in self.pending.items() if now >= deadline]
        for number in late:
            answer, _, _ = self.pending.pop(number)
            answer(504, {"error": "the worker holding this connection did not answer in time"})

    def detach(self, pid: int) -> None:
        link = self.links.pop(pid, None)
        if link is None:
            return
        try:
            self.sel.unregister(link.sock)
        except (KeyError, ValueError):
            pass
        link.sock.close()
        for number in [n for n, (_, _, p) in self.pending.items() if p == pid]:
            answer, _, _ = self.pending.pop(number)
            answer(404, {"error": "no such connection (its worker exited)"})

    def close(self) -> None:
        for pid in list(self.links):
            self.detach(pid)

    def _on_event(self, link: _Link, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(link)
        if mask & selectors.EVENT_READ:
            self._read(link)

    def _read(self, link: _Link) -> None:
        try:
            data = link.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.detach(link.pid)
            return
        try:
            frames = link.reader.feed(data)
        except ValueError as exc:
            process_log(f"push channel of worker {link.pid}: {exc}; closing it")
            self.detach(link.pid)
            return
        for number, body in frames:
            entry = self.pending.pop(number, None)
            if entry is None:
                continue  # answered 504 already
            status, payload = decode_answer(body)
            try:
                value = orjson.loads(payload)
            except orjson.JSONDecodeError:
                value = {"error": "invalid answer from the worker"}
            entry[0](status, value if isinstance(value, dict) else {"answer": value})

    def _flush(self, link: _Link) -> None:
        if link.out:
            try:
                sent = link.sock.send(link.out)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.detach(link.pid)
                return
            del link.out[:sent]
        want = bool(link.out)
        if want != link.writing:
            link.writing = want
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self.sel.modify(link.sock, events, lambda f, m, link=link: self._on_event(link, m))
