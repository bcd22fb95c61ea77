"""`python -m bench.curves.sink --port N`: an upload sink for the body curve. It reads each
request's whole body (Content-Length) and only then answers `200` with an empty body, keeping the
connection; the bytes are counted, never stored.

Why not the nginx backend: nginx's `return 200` answers as soon as the head is read and discards
the body afterwards, so a client (and a proxy in between) sees the answer before it has sent the
body, and an upload's throughput would be measured on an answer that did not wait for it. Chunked
request bodies are not needed by the curve and not supported (answered 411).
"""

from __future__ import annotations

import argparse
import asyncio
import re

import uvloop

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_NO_LENGTH = b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_MAX_HEAD = 64 * 1024


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.head = bytearray()
        self.left = -1  # body bytes still to read; -1 while reading a head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.left < 0:
                self.head += view
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.head) > _MAX_HEAD:
                        self.transport.close()
                    return
                m = _LENGTH.search(self.head, 0, end + 2)
                if m is None and b"transfer-encoding" in self.head[:end].lower():
                    self.transport.write(_NO_LENGTH)
                    self.transport.close()
                    return
                self.left = int(m.group(1)) if m else 0
                view = memoryview(bytes(self.head[end + 4 :]))
                self.head.clear()
            take = min(self.left, len(view))
            self.left -= take
            view = view[take:]
            if self.left == 0:
                self.transport.write(_OK)
                self.left = -1


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.curves.sink")
    p.add_argument("--port", type=int, required=True)
    uvloop.run(serve(p.parse_args().port))


if __name__ == "__main__":
    main()
