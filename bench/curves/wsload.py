"""The load generator of `python -m bench websocket`: N WebSocket connections, each in a closed loop
of echo round trips (send a message, wait for its echo, send the next), for a fixed time.

Built not to be the bottleneck (wrk cannot speak WebSocket): the handshake and the message frame
are encoded once (one masked frame, the same bytes every time: a client must mask, and the mask
need not change), connections are raw uvloop protocols, and a reply is recognised by counting
bytes (the echo of an n-byte message is a frame of known length), so a round trip costs one read
and one write, no parsing. `--procs P` splits the connections over P processes (fork), each with
its own loop. `--window K` keeps K messages in flight per connection instead of one.

`python -m bench.curves.wsload --port N --path /ws -c 64 -d 5` prints one JSON object: round trips,
seconds measured, round trips per second, latency percentiles (µs, from a 1-µs histogram merged
over the processes) and errors. The run starts once every connection has finished its handshake.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections import Counter, deque
from typing import Any

import uvloop

CONNECT_BATCH = 200
"""Connections opened at once (more would overflow the listen backlogs)."""
HANDSHAKE_TIMEOUT = 30.0


def frame(size: int) -> bytes:
    """A masked binary frame with a `size`-byte payload (FIN set)."""
    mask = os.urandom(4)
    payload = os.urandom(size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if size < 126:
        head = bytes((0x82, 0x80 | size))
    elif size < 65536:
        head = bytes((0x82, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x82, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + masked


def reply_length(size: int) -> int:
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


class Stats:
    def __init__(self) -> None:
        self.round_trips = 0
        self.errors = 0
        self.latency: Counter[int] = Counter()
        self.measuring = False
        self.running = True


class Client(asyncio.Protocol):
    __slots__ = ("stats", "handshake", "frame", "reply", "window", "transport", "head", "open", "got", "sent",
                 "ready")

    def __init__(self, stats: Stats, handshake: bytes, frame: bytes, reply: int, window: int,
                 ready: asyncio.Future[None]) -> None:
        self.stats = stats
        self.handshake = handshake
        self.frame = frame
        self.reply = reply
        self.window = window
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.open = False
        self.got = 0
        self.sent: deque[float] = deque()
        self.ready = ready

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.handshake)

    def start(self) -> None:
        now = time.perf_counter()
        for _ in range(self.window):
            self.sent.append(now)
        assert self.transport is not None
        self.transport.write(self.frame * self.window)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.stats.errors += 1
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(f"handshake refused: {self.head[:60]!r}"))
                return
            self.open = True
            extra = len(self.head) - end - 4
            self.head = b""
            if not self.ready.done():
                self.ready.set_result(None)
            if not extra:
                return
            self.got += extra
        else:
            self.got += len(data)
        stats = self.stats
        reply = self.reply
        now = time.perf_counter()
        done = 0
        while self.got >= reply and self.sent:
            self.got -= reply
            t0 = self.sent.popleft()
            done += 1
            if stats.measuring:
                stats.round_trips += 1
                stats.latency[int((now - t0) * 1e6)] += 1
        if done and stats.running:
            for _ in range(done):
                self.sent.append(now)
            assert self.transport is not None
            self.transport.write(self.frame * done if done > 1 else self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stats.running:
            self.stats.errors += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection lost before the handshake"))


async def _run(host: str, port: int, path: str, connections: int, duration: float, size: int,
               window: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats = Stats()
    key = base64.b64encode(os.urandom(16))
    handshake = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ").encode() + key + b"\r\n\r\n"
    data = frame(size)
    reply = reply_length(size)
    clients: list[Client] = []
    for first in range(0, connections, CONNECT_BATCH):
        batch = []
        for _ in range(first, min(connections, first + CONNECT_BATCH)):
            ready: asyncio.Future[None] = loop.create_future()
            batch.append(loop.create_connection(
                lambda ready=ready: Client(stats, handshake, data, reply, window, ready), host, port))
        for _, client in await asyncio.gather(*batch):
            clients.append(client)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients[first:])), HANDSHAKE_TIMEOUT)
    for client in clients:
        client.start()
    stats.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    stats.measuring = False
    elapsed = time.perf_counter() - started
    stats.running = False
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    return {"round_trips": stats.round_trips, "seconds": elapsed, "errors": stats.errors,
            "latency": {str(k): v for k, v in stats.latency.items()}}


def _child(args: argparse.Namespace, connections: int, fd: int) -> None:
    try:
        result = uvloop.run(_run(args.host, args.port, args.path, connections, args.duration, args.size,
                                 args.window))
    except Exception as exc:  # reported to the parent, which fails the run
        result = {"error": f"{type(exc).__name__}: {exc}"}
    with os.fdopen(fd, "w") as out:
        json.dump(result, out)


def percentile(hist: Counter[int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    rank = q / 100 * total
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/ws")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-d", "--duration", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=32, help="message payload bytes (default 32)")
    ap.add_argument("--window", type=int, default=1, help="messages in flight per connection (default 1)")
    ap.add_argument("--procs", type=int, default=1, help="load processes (default 1)")
    args = ap.parse_args(argv)
    procs = max(1, min(args.procs, args.connections))
    shares = [args.connections // procs + (1 if i < args.connections % procs else 0) for i in range(procs)]
    children = []
    for share in shares:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _child(args, share, w)
            finally:
                os._exit(0)
        os.close(w)
        children.append((pid, r))
    results = []
    for pid, r in children:
        with os.fdopen(r) as f:
            text = f.read()
        os.waitpid(pid, 0)
        results.append(json.loads(text) if text else {"error": "a load process died"})
    errors = [res["error"] for res in results if "error" in res]
    if errors:
        print(json.dumps({"error": "; ".join(errors)}))
        return 1
    hist: Counter[int] = Counter()
    for res in results:
        hist.update({int(k): v for k, v in res["latency"].items()})
    round_trips = sum(res["round_trips"] for res in results)
    seconds = max(res["seconds"] for res in results)
    print(json.dumps({
        "round_trips": round_trips,
        "seconds": round(seconds, 3),
        "rps": round_trips / seconds if seconds else 0.0,
        "errors": sum(res["errors"] for res in results),
        "latency_us": {q: percentile(hist, float(q)) for q in ("50", "90", "99", "99.9")},
        "connections": args.connections, "size": args.size, "window": args.window, "procs": procs,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
