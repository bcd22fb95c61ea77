"""A real WebSocket backend for end-to-end tests, built on the `websockets` library's server:
`python -m tests.support.wsbackend --port 0` prints `PORT <n>` once listening.

Paths: `/ws/echo` echoes every message (text as text, binary as binary; pings are answered by the
library); `/ws/close/CODE` closes with CODE after the first message; `/ws/refuse` answers the
upgrade with 403 (a refused upgrade); `/ws/hello` sends one message first. Any other path without
an upgrade gets a plain 200 (`GET /plain`), so a test can go on with HTTP on one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response


async def _handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    if path.startswith("/ws/close/"):
        code = int(path.rsplit("/", 1)[1])
        await ws.recv()
        await ws.close(code, "bye")
        return
    if path.startswith("/ws/hello"):
        await ws.send(f"hello from {os.getpid()}")
    async for message in ws:
        await ws.send(message)


def _process_request(conn: ServerConnection, request: Request) -> Response | None:
    if request.path.startswith("/ws/refuse"):
        return conn.respond(403, "upgrade refused\n")
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return conn.respond(200, f"plain {request.path}\n")
    return None


async def _main(port: int) -> None:
    async with serve(_handler, "127.0.0.1", port, process_request=_process_request, max_size=None) as server:
        sock = next(iter(server.sockets))
        print(f"PORT {sock.getsockname()[1]}", flush=True)
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default="ws")
    args = ap.parse_args()
    asyncio.run(_main(args.port))


if __name__ == "__main__":
    main()
