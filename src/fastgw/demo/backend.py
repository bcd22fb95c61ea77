"""A demo backend: answers every request with JSON saying who it is and what it received (the
start of the body included, so that a WebSocket bridge's message comes back as its answer)."""
from __future__ import annotations

import asyncio
import sys

import httptools
import orjson
import uvloop

MAX_ECHO = 1024
"""Bytes of a request body the answer shows."""


class DemoBackend(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        if len(self.body) < MAX_ECHO:
            self.body += body[: MAX_ECHO - len(self.body)]

    def on_message_complete(self) -> None:
        assert self.transport is not None
        body = orjson.dumps(
            {
                "service": self.name,
                "method": self.parser.get_method().decode(),
                "path": self.url.decode("latin-1"),
                "x-forwarded-for": self.headers.get("x-forwarded-for"),
                "x-request-id": self.headers.get("x-request-id"),
                "x-gateway": self.headers.get("x-gateway"),
                "x-consumer": self.headers.get("x-consumer"),
                **({"body": self.body.decode("utf-8", "replace")} if self.body else {}),
            }
        ) + b"\n"
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nserver: demo\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        if not self.parser.should_keep_alive():
            self.transport.close()


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    loop = uvloop.new_event_loop()
    try:
        server = loop.run_until_complete(loop.create_server(lambda: DemoBackend(name), "127.0.0.1", port))
    except OSError as exc:
        sys.stderr.write(f"demo backend {name}: cannot listen on 127.0.0.1:{port}: {exc.strerror}\n")
        raise SystemExit(1) from None
    try:
        loop.run_until_complete(server.serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
