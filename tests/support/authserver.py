"""A small real authorization server for end-to-end tests of auth:
`python -m tests.support.authserver --port 0 [--cert C --key K [--client-ca CA]]`.

It prints `PORT <n>` once listening and serves, over HTTP/1.1 (stdlib `http.server`, one thread
per connection, so a delayed answer never holds another):
- `GET /jwks`: the JWKS document set by `PUT /control/jwks` (its body), or 503 while `down`;
- `POST /introspect`: RFC 7662 introspection: HTTP Basic `gw:gw-secret` required (else 401);
  the `token` form field is looked up in the table set by `PUT /control/tokens` (JSON
  `{token: response}`; an unknown token is `{"active": false}`); waits `delay` ms first; 503
  while `down`;
- `GET /echo...` (for TLS to upstreams): JSON with the request's headers, the SNI name the client
  sent and the subject CN of its client certificate;
- `PUT /control/mode` (JSON `{"down": bool, "delay_ms": int}`), `GET /stats`: counts of JWKS
  fetches (`jwks`, `jwks_ok`) and introspection calls (`introspect`, and per token `tokens`).
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

CLIENT_ID = "gw"
CLIENT_SECRET = "gw-secret"


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jwks = b'{"keys": []}'
        self.tokens: dict[str, Any] = {}
        self.down = False
        self.delay_ms = 0
        self.stats: dict[str, Any] = {"jwks": 0, "jwks_ok": 0, "introspect": 0, "tokens": {}}


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:
        if self.path.startswith("/jwks"):
            with STATE.lock:
                STATE.stats["jwks"] += 1
                STATE.stats.setdefault("paths", {})[self.path] = STATE.stats.get("paths", {}).get(self.path, 0) + 1
                down, doc = STATE.down, STATE.jwks
                if not down:
                    STATE.stats["jwks_ok"] += 1
            self._send(503, b'{"error": "down"}') if down else self._send(200, doc)
        elif self.path == "/stats":
            with STATE.lock:
                self._send(200, json.dumps(STATE.stats).encode())
        elif self.path.startswith("/echo"):
            sslobj = getattr(self.connection, "getpeercert", None)
            cn = None
            if sslobj is not None:
                cert = self.connection.getpeercert()  # type: ignore[attr-defined]
                for rdn in (cert or {}).get("subject", ()):
                    for key, value in rdn:
                        if key == "commonName":
                            cn = value
            body = {
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "sni": getattr(self.server, "last_sni", None),
                "client_cn": cn,
                "tls": sslobj is not None,
            }
            self._send(200, json.dumps(body).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        body = self._body()
        if self.path != "/introspect":
            self._send(404, b"{}")
            return
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._send(401, b'{"error": "invalid_client"}')
            return
        token = parse_qs(body.decode()).get("token", [""])[0]
        with STATE.lock:
            STATE.stats["introspect"] += 1
            STATE.stats["tokens"][token] = STATE.stats["tokens"].get(token, 0) + 1
            down, delay = STATE.down, STATE.delay_ms
            answer = STATE.tokens.get(token, {"active": False})
        if delay:
            time.sleep(delay / 1000)
        if down:
            self._send(503, b'{"error": "down"}')
            return
        self._send(200, json.dumps(answer).encode())

    def do_PUT(self) -> None:
        body = self._body()
        with STATE.lock:
            if self.path == "/control/jwks":
                STATE.jwks = body
            elif self.path == "/control/tokens":
                STATE.tokens = json.loads(body)
            elif self.path == "/control/mode":
                mode = json.loads(body)
                STATE.down = bool(mode.get("down", False))
                STATE.delay_ms = int(mode.get("delay_ms", 0))
            elif self.path == "/control/reset":
                STATE.stats = {"jwks": 0, "jwks_ok": 0, "introspect": 0, "tokens": {}}
            else:
                self._send(404, b"{}")
                return
        self._send(200, b"{}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        if args.client_ca:
            ctx.load_verify_locations(args.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED

        def remember(sslobj: Any, name: str | None, _ctx: Any) -> None:
            server.last_sni = name  # type: ignore[attr-defined]

        ctx.sni_callback = remember
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
