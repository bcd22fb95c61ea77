"""The echo backend of `python -m bench websocket`: a WebSocket server that sends every message
back, written to cost as little as possible per message so that it is not what the bench measures
(`python -m bench.curves.wsecho --port 0` prints `PORT <n>` once listening; `--procs N` forks N
processes on one SO_REUSEPORT port).

It answers the handshake (any path) and then echoes each frame as it comes, unmasked, with the
client's FIN bit and opcode: fragments come back as fragments, so a message comes back whole
without being gathered. Pings get pongs, a close gets a close. Unmasking is websockets' C
`apply_mask`. Bench-only code: the gateway's own WebSocket frames are wsproto's (fastgw.bridge).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import socket

import uvloop
from websockets.speedups import apply_mask  # type: ignore[import-not-found]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
MAX_HEAD = 16 * 1024


def _header(first: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big")
    return bytes((first, 127)) + n.to_bytes(8, "big")


class Echo(asyncio.Protocol):
    __slots__ = ("transport", "buf", "open")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    transport.close()
                return
            key = b""
            for line in bytes(buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.open = True
            del buf[: end + 4]
        out = []
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            n = second & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            masked = second & 0x80
            start = pos + head + (4 if masked else 0)
            if size - start < n:
                break
            payload = bytes(buf[start : start + n])
            if masked:
                payload = apply_mask(payload, bytes(buf[pos + head : pos + head + 4]))
            opcode = first & 0x0F
            if opcode == 8:
                out.append(_header(0x88, n) + payload)
                transport.writelines(out)
                transport.close()
                buf.clear()
                return
            out.append(_header(0x8A if opcode == 9 else first, n))
            out.append(payload)
            pos = start + n
        if pos:
            del buf[:pos]
        if out:
            transport.writelines(out)


async def _serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, sock=sock, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--procs", type=int, default=1)
    args = ap.parse_args()
    socks = []
    port = args.port
    for _ in range(max(1, args.procs)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        sock.listen(4096)
        socks.append(sock)
    print(f"PORT {port}", flush=True)
    for sock in socks[1:]:
        if os.fork() == 0:
            uvloop.run(_serve(sock))
            os._exit(0)
    uvloop.run(_serve(socks[0]))


if __name__ == "__main__":
    main()
