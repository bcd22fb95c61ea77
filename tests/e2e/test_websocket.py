"""WebSocket routes end to end: a real client library (`websockets`) through the gateway to a real
WebSocket server (tests/support/wsbackend.py): the upgrade forwarded, then a byte tunnel both ways
with flow control; refused upgrades relayed as plain responses with the connection going on as
HTTP; h2c never forwarded; auth on the handshake; tunnels kept across a reload until the grace
period ends, then closed with 1001; and what 1,000 idle tunnels cost."""

from __future__ import annotations

import asyncio
import os
import resource
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.client import Conn, raw_request
from tests.support.procs import Backend, Gateway, free_port, gateway_config, start_backend

pytestmark = pytest.mark.e2e

KEY = "k-0123456789abcdef"


@pytest.fixture(scope="module")
def wsb() -> Iterator[Backend]:
    with start_backend("ws", module="tests.support.wsbackend") as b:
        yield b


def _config(backend: Backend, wsb: Backend, **extra: Any) -> dict[str, Any]:
    cfg = gateway_config(backend.port, **{"workers": 1, **extra})
    cfg["upstreams"]["ws"] = {"targets": [f"127.0.0.1:{wsb.port}"], "timeouts": {"connect": "1s", "read": "5s"}}
    cfg["auth"] = {"keys": {"type": "api_key", "keys": {"alice": KEY}}}
    cfg["routes"] = [
        {"match": {"prefix": "/ws/secret"}, "upstream": "ws", "websocket": True, "auth": "keys"},
        {"match": {"prefix": "/ws"}, "upstream": "ws", "websocket": True},
        {"match": {"prefix": "/plain"}, "upstream": "ws"},
        {"match": {"prefix": "/"}, "upstream": "backend"},
    ]
    return cfg


@pytest.fixture(scope="module")
def gw(backend: Backend, wsb: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(_config(backend, wsb), tmp_path_factory.mktemp("ws")) as g:
        yield g


def run(coro: Any, timeout: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_echo_text_binary_large_and_fragmented(gw: Gateway) -> None:
    async def scenario() -> list[Any]:
        async with connect(f"ws://127.0.0.1:{gw.port}/ws/echo", max_size=None) as ws:
            out = []
            await ws.send("hello")
            out.append(await ws.recv())
            await ws.send(b"\x00\x01binary")
            out.append(await ws.recv())
            big = os.urandom(3 * 1024 * 1024)  # bigger than any socket buffer: flow control both ways
            await ws.send(big)
            out.append(await ws.recv() == big)
            await ws.send(["frag", "mented", " message"])  # one message in three frames
            out.append(await ws.recv())
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)
            out.append("pong")
            return out

    assert run(scenario()) == ["hello", b"\x00\x01binary", True, "fragmented message", "pong"]


def test_close_codes_pass_through(gw: Gateway) -> None:
    async def scenario() -> tuple[int | None, str | None]:
        async with connect(f"ws://127.0.0.1:{gw.port}/ws/close/4001") as ws:
            await ws.send("go")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.close_code, ws.close_reason

    assert run(scenario()) == (4001, "bye")


def test_refused_upgrade_is_relayed_and_the_connection_goes_on_as_http(gw: Gateway) -> None:
    upgrade = (
        "GET /ws/refuse HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with Conn(gw.port) as conn:
        conn.send(upgrade.encode() + b"GET /plain/after HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        refused = conn.read_response()
        assert refused.status == 403, refused.summary()
        after = conn.read_response()
        assert after.status == 200 and after.body == b"plain /plain/after\n", after.summary()


def test_h2c_upgrades_are_never_forwarded(gw: Gateway) -> None:
    request = (
        b"GET /echo/h2c HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    result = raw_request(gw.port, request, 5.0, responses=1)
    assert result.status == 200, result.summary()
    names = {n.lower() for n, _ in result.responses[0].json()["headers"]}
    assert not names & {"upgrade", "http2-settings", "connection"}, names


def test_an_upgrade_on_a_route_without_websocket_is_plain_http(gw: Gateway) -> None:
    async def scenario() -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{gw.port}/plain/x"):
                pass
        return info.value.response.status_code

    assert run(scenario()) == 200  # answered as HTTP: no 101


def test_auth_applies_to_the_handshake(gw: Gateway) -> None:
    async def scenario() -> tuple[int, str]:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{gw.port}/ws/secret/echo"):
                pass
        async with connect(f"ws://127.0.0.1:{gw.port}/ws/secret/echo", additional_headers={"X-API-Key": KEY}) as ws:
            await ws.send("authorized")
            return info.value.response.status_code, await ws.recv()

    assert run(scenario()) == (401, "authorized")


@pytest.mark.timeout(60)
def test_a_tunnel_lives_through_a_reload_until_the_grace_period_ends(
    backend: Backend, wsb: Backend, tmp_path: Path
) -> None:
    with Gateway(_config(backend, wsb, grace_period="2s"), tmp_path) as g:

        async def scenario() -> tuple[str, str, int | None]:
            async with connect(f"ws://127.0.0.1:{g.port}/ws/echo") as ws:
                await ws.send("before")
                before = await ws.recv()
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, g.reload)  # a new generation; the old worker drains
                await ws.send("during")
                during = await ws.recv()
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)  # the old worker's grace period ends
                return before, during, ws.close_code

        assert run(scenario(), 30) == ("before", "during", 1001)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_thousand_idle_tunnels_cost_a_bounded_amount_each(backend: Backend, wsb: Backend, tmp_path: Path) -> None:
    """Memory per idle tunnel, as the worker's resident set grows with 1,000 of them open. The
    bound (64 KiB) is what a tunnel may cost at most; the figure goes into bench/RESULTS.md."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    with Gateway(_config(backend, wsb, workers=1), tmp_path) as g:
        worker = g.workers[0]

        def rss() -> int:
            for line in Path(f"/proc/{worker}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
            raise AssertionError("no VmRSS")

        async def scenario() -> tuple[int, int]:
            async with connect(f"ws://127.0.0.1:{g.port}/ws/echo") as warm:
                await warm.send("warm")
                await warm.recv()
            before = rss()
            sockets = []
            for _batch in range(10):
                opened = await asyncio.gather(*(connect(f"ws://127.0.0.1:{g.port}/ws/echo") for _ in range(100)))
                sockets.extend(opened)
            for ws in sockets[::100]:  # they work
                await ws.send("x")
                assert await ws.recv() == "x"
            after = rss()
            await asyncio.gather(*(ws.close() for ws in sockets))
            return before, after

        before, after = run(scenario(), 100)
        per_tunnel = (after - before) / 1000
        mib = 2**20
        print(f"\n1,000 idle tunnels: RSS {before / mib:.1f} -> {after / mib:.1f} MiB, {per_tunnel / 1024:.1f} KiB")
        assert per_tunnel < 64 * 1024, per_tunnel


def test_wss_through_a_tls_listener(backend: Backend, wsb: Backend, tmp_path: Path) -> None:
    """A tunnel over the compiled TLS layer: messages both ways, and one bigger than any socket
    buffer, so that both sides of the tunnel pause and resume reading through TLS."""
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    port = free_port()
    cfg = _config(backend, wsb, listen=[{"address": f"127.0.0.1:{port}", "tls": {"cert": str(cert), "key": str(key)}}])
    client = ssl.create_default_context()
    ca.configure_trust(client)

    async def scenario() -> list[Any]:
        async with connect(f"wss://localhost:{port}/ws/echo", ssl=client, max_size=None) as ws:
            out = []
            await ws.send("hello")
            out.append(await ws.recv())
            big = os.urandom(3 * 1024 * 1024)
            await ws.send(big)
            out.append(await ws.recv() == big)
            return out

    with Gateway(cfg, tmp_path):
        assert run(scenario()) == ["hello", True]
